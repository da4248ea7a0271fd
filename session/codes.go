package session

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Code is why a session (or one transport connection of it) ended. The values
// follow WebSocket close codes (RFC 6455 §7.4) so that the WebSocket transport
// can put them on the wire unchanged; cometkit's own codes live in 4000–4099.
// This table is the one place the codes are defined; docs/PROTOCOL.md mirrors it.
type Code int

const (
	// CodeNormal: the application or the client closed the session on purpose.
	CodeNormal Code = 1000
	// CodeGoingAway: the server is shutting down. The client should connect
	// again (to another node if there is one) and resume.
	CodeGoingAway Code = 1001
	// CodeProtocolError: the peer broke the protocol (a malformed frame, an
	// acknowledgement of a message never sent).
	CodeProtocolError Code = 1002
	// CodeInvalidPayload: a message was not valid UTF-8.
	CodeInvalidPayload Code = 1007
	// CodePolicyViolation: the peer did something the server's policy forbids.
	CodePolicyViolation Code = 1008
	// CodeMessageTooBig: a message was larger than the configured limit.
	CodeMessageTooBig Code = 1009
	// CodeInternalError: the server failed; the client may try a new session.
	CodeInternalError Code = 1011

	// CodeSessionTimeout: no transport was attached for the disconnect
	// timeout, so the server closed the session and freed what it held.
	CodeSessionTimeout Code = 4000
	// CodeSessionUnknown: the server has no such session (it expired, was
	// closed long ago, or never existed). The client cannot resume: it must
	// start a new session and the application must resynchronise (a "reset").
	CodeSessionUnknown Code = 4004
	// CodeResumeFailed: the client asked to resume from a position the
	// session cannot serve (a garbage Last-Event-ID, or messages it never
	// acknowledged are no longer held). Like 4004, the client must reset.
	CodeResumeFailed Code = 4005
	// CodeQueueOverflow: the replay queue of unacknowledged messages hit its
	// count or byte bound; the client was not keeping up.
	CodeQueueOverflow Code = 4008
	// CodeSlowConsumer: the client fell too far behind a broadcast.
	CodeSlowConsumer Code = 4009

	// CodeReplaced ends one transport connection, not the session: a newer
	// connection of the same session took over (a second poll, a new stream).
	CodeReplaced Code = 4010
	// CodeRecycled ends one transport connection, not the session: a stream
	// reached its byte or time cap and the client should open a fresh one.
	CodeRecycled Code = 4011
)

var codeNames = map[Code]string{
	CodeNormal:          "normal",
	CodeGoingAway:       "going away",
	CodeProtocolError:   "protocol error",
	CodeInvalidPayload:  "invalid payload",
	CodePolicyViolation: "policy violation",
	CodeMessageTooBig:   "message too big",
	CodeInternalError:   "internal error",
	CodeSessionTimeout:  "session timeout",
	CodeSessionUnknown:  "session unknown",
	CodeResumeFailed:    "resume failed",
	CodeQueueOverflow:   "queue overflow",
	CodeSlowConsumer:    "slow consumer",
	CodeReplaced:        "replaced",
	CodeRecycled:        "recycled",
}

// String names the code for logs.
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("code %d", int(c))
}

// SessionEnding reports whether a code ends the whole session, as opposed to
// one transport connection of it (CodeReplaced, CodeRecycled).
func (c Code) SessionEnding() bool {
	return c != CodeReplaced && c != CodeRecycled
}

// MaxReasonBytes bounds a close reason, as RFC 6455 bounds a close frame's.
const MaxReasonBytes = 123

// ErrBadCloseCode is returned for a close code outside 1000–4999, or one
// that ends only a connection (CodeReplaced, CodeRecycled).
var ErrBadCloseCode = errors.New("session: bad close code")

// CheckCloseCode reports whether code may close a session.
func CheckCloseCode(code Code) error {
	if code < 1000 || code > 4999 || !code.SessionEnding() {
		return fmt.Errorf("%w: %d", ErrBadCloseCode, int(code))
	}
	return nil
}

// cleanReason makes a reason valid UTF-8 of at most MaxReasonBytes.
func cleanReason(r string) string {
	r = strings.ToValidUTF8(r, "\uFFFD")
	if len(r) <= MaxReasonBytes {
		return r
	}
	r = r[:MaxReasonBytes]
	for !utf8.ValidString(r) {
		r = r[:len(r)-1]
	}
	return r
}

// CloseError is the error Send and Recv return once the session has closed;
// it carries who closed it and why, so the application can tell a client's
// goodbye from a timeout or an overflow.
type CloseError struct {
	Code   Code
	Reason string
	// ByClient is true when the client sent the close.
	ByClient bool
}

func (e *CloseError) Error() string {
	who := "server"
	if e.ByClient {
		who = "client"
	}
	if e.Reason == "" {
		return fmt.Sprintf("session closed by %s: %d %s", who, int(e.Code), e.Code)
	}
	return fmt.Sprintf("session closed by %s: %d %s: %s", who, int(e.Code), e.Code, e.Reason)
}

// ErrClosed matches every *CloseError with errors.Is, for callers that only
// need to know the session is gone.
var ErrClosed = errors.New("session closed")

// Is makes errors.Is(err, ErrClosed) true for a CloseError.
func (e *CloseError) Is(target error) bool { return target == ErrClosed }

// Errors returned by Send.
var (
	// ErrQueueFull means the replay queue had no room: the message was not
	// queued and (under OverflowClose) the session is now closed.
	ErrQueueFull = errors.New("session: replay queue full")
	// ErrTooLarge means the message exceeds Config.MaxMessageBytes; the
	// session is unaffected.
	ErrTooLarge = errors.New("session: message too large")
	// ErrInvalidUTF8 means the message is not valid UTF-8, which no text
	// transport can carry; the session is unaffected.
	ErrInvalidUTF8 = errors.New("session: message is not valid UTF-8")
)
