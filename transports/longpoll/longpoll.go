// Package longpoll carries a session over plain HTTP requests: a GET held
// until there is something to say (the poll), and a POST for what the client
// says (the send). Each also has a JSONP form for browsers that cannot make
// cross-origin requests any other way (IE6/7), and every answer is text/plain
// or JavaScript with no custom header, so IE8/9's XDomainRequest can read it.
package longpoll

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cometkit/cometkit/internal/httpx"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

// Name is the transport's name in negotiation and in Session.Transport.
const Name = "longpoll"

// Options configure the transport; zero fields take defaults.
type Options struct {
	// MaxBatchBytes bounds the message data in one poll answer (default 256 KiB);
	// more waits for the next poll.
	MaxBatchBytes int
	// MaxBodyBytes bounds a send's body (default 1 MiB); larger is refused with 413.
	MaxBodyBytes int64
	// MaxFrames bounds the frames in one send (default 4096).
	MaxFrames int
	// Logger receives one line per refused request (default slog.Default()).
	Logger *slog.Logger
}

// Transport serves the poll and send requests of sessions.
type Transport struct {
	opts Options
}

// New returns a Transport with opts' zero fields defaulted.
func New(opts Options) *Transport {
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 256 << 10
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxFrames <= 0 {
		opts.MaxFrames = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Transport{opts: opts}
}

// poller is one held poll request as the session sees it.
type poller struct {
	note chan struct{} // capacity 1: a Wake or a Kick since the last look
	kick atomic.Pointer[session.CloseError]
}

func (p *poller) Name() string { return Name }

func (p *poller) Wake() {
	select {
	case p.note <- struct{}{}:
	default:
	}
}

func (p *poller) Kick(code session.Code, reason string) {
	p.kick.CompareAndSwap(nil, &session.CloseError{Code: code, Reason: reason})
	p.Wake()
}

// ServePoll answers a poll: GET ?ack=N[&callback=F]. The client acknowledges
// every message up to N; the answer carries the messages after N, or a
// heartbeat when there were none for the heartbeat interval, or an end frame
// when a newer poll of the same session took over.
func (lp *Transport) ServePoll(w http.ResponseWriter, r *http.Request, ep session.Endpoint) {
	callback, ok := lp.callback(w, r)
	if !ok {
		return
	}
	rawAck, _ := httpx.Query(r.URL.RawQuery, "ack")
	ack, err := parseAck(rawAck)
	if err != nil {
		lp.refuse(w, r, http.StatusBadRequest, "bad_ack", err.Error())
		return
	}
	ctx := r.Context()
	if err := ep.Ack(ctx, ack); err != nil {
		lp.refuse(w, r, http.StatusBadRequest, "bad_ack", err.Error())
		return
	}
	p := &poller{note: make(chan struct{}, 1)}
	if err := ep.Attach(p); err != nil {
		var ce *session.CloseError
		if !errors.As(err, &ce) {
			ce = &session.CloseError{Code: session.CodeInternalError, Reason: err.Error()}
		}
		lp.writeFrames(w, callback, nil, closeFrame(wire.KindClose, ce))
		return
	}
	var buf []session.Message
	for {
		b, err := ep.Pull(ctx, p, ack, lp.opts.MaxBatchBytes, buf[:0])
		if errors.Is(err, session.ErrDetached) {
			lp.writeFrames(w, callback, nil, kickFrame(lp.kickReason(p)))
			return
		}
		if err != nil {
			ep.Detach(p)
			lp.opts.Logger.Error("longpoll: pull failed", "session", ep.ID(), "err", err)
			lp.refuse(w, r, http.StatusInternalServerError, "internal", "could not read the session's queue")
			return
		}
		if !b.Empty() {
			// Detach before writing: once the client reads this answer its
			// session is unattached, and the disconnect timeout is running.
			ep.Detach(p)
			var extra []wire.Frame
			if b.Heartbeat {
				extra = append(extra, wire.Frame{Kind: wire.KindHeartbeat})
			}
			if b.Close != nil {
				extra = append(extra, closeFrame(wire.KindClose, b.Close))
			}
			lp.writeFrames(w, callback, b.Messages, extra...)
			return
		}
		buf = b.Messages
		select {
		case <-p.note:
			if ce := p.kick.Load(); ce != nil {
				lp.writeFrames(w, callback, nil, kickFrame(ce))
				return
			}
		case <-ctx.Done():
			ep.Detach(p)
			return
		}
	}
}

func (lp *Transport) kickReason(p *poller) *session.CloseError {
	if ce := p.kick.Load(); ce != nil {
		return ce
	}
	return &session.CloseError{Code: session.CodeReplaced, Reason: "replaced by a newer connection"}
}

// ServeSend accepts what the client says: POST with a batch as the body
// (any content type; for a form post, the field d), or for JSONP a GET with
// the batch in d and a callback. The answer is an ack frame with the highest
// message sequence number accepted, and a close frame if the session is over.
func (lp *Transport) ServeSend(w http.ResponseWriter, r *http.Request, ep session.Endpoint) {
	callback, ok := lp.callback(w, r)
	if !ok {
		return
	}
	var body string
	switch r.Method {
	case http.MethodGet:
		if callback == "" {
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			lp.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "send by GET is only for JSONP (callback=)")
			return
		}
		body, _ = httpx.Query(r.URL.RawQuery, "d")
		if int64(len(body)) > lp.opts.MaxBodyBytes {
			lp.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
				"d exceeds "+strconv.FormatInt(lp.opts.MaxBodyBytes, 10)+" bytes")
			return
		}
	case http.MethodPost:
		var err error
		body, err = lp.readBody(w, r)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				lp.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
					"body exceeds "+strconv.FormatInt(lp.opts.MaxBodyBytes, 10)+" bytes")
				return
			}
			lp.refuse(w, r, http.StatusBadRequest, "bad_body", "reading body: "+err.Error())
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") && isForm(ct) {
			form, err := url.ParseQuery(body)
			if err != nil {
				lp.refuse(w, r, http.StatusBadRequest, "bad_body", "form body: "+err.Error())
				return
			}
			if !form.Has("d") {
				lp.refuse(w, r, http.StatusBadRequest, "bad_body", "a form-encoded send carries its batch in the field d")
				return
			}
			body = form.Get("d")
		}
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		lp.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "send takes POST (or GET for JSONP)")
		return
	}
	frames, err := wire.ParseBatch(body, lp.opts.MaxFrames)
	if err != nil {
		lp.refuse(w, r, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	ctx := r.Context()
	var (
		msgs     = make([]session.Message, 0, len(frames))
		ack      uint64
		hasAck   bool
		clientCl *wire.Frame
	)
	for i := range frames {
		switch f := frames[i]; f.Kind {
		case wire.KindMessage:
			msgs = append(msgs, session.Message{Seq: f.Seq, Data: f.Data})
		case wire.KindAck:
			ack, hasAck = max(ack, f.Seq), true
		case wire.KindClose:
			if err := session.CheckCloseCode(session.Code(f.Code)); err != nil {
				lp.refuse(w, r, http.StatusBadRequest, "bad_close_code", err.Error())
				return
			}
			clientCl = &frames[i]
		case wire.KindHeartbeat:
		default:
			lp.refuse(w, r, http.StatusBadRequest, "malformed", "a client may not send frame kind "+string(rune(f.Kind)))
			return
		}
	}
	if hasAck {
		if err := ep.Ack(ctx, ack); err != nil {
			lp.refuse(w, r, http.StatusBadRequest, "bad_ack", err.Error())
			return
		}
	}
	acked, err := ep.Receive(ctx, msgs)
	if err != nil {
		lp.sendFailed(w, r, ep, callback, acked, err)
		return
	}
	if clientCl != nil {
		_ = ep.ClientClose(session.Code(clientCl.Code), clientCl.Data) // code checked above
	}
	lp.writeFrames(w, callback, nil, wire.Frame{Kind: wire.KindAck, Seq: acked})
}

// sendFailed answers a send whose messages the session did not all take.
func (lp *Transport) sendFailed(w http.ResponseWriter, r *http.Request, ep session.Endpoint, callback string, acked uint64, err error) {
	var ce *session.CloseError
	switch {
	case errors.As(err, &ce):
		lp.writeFrames(w, callback, nil, wire.Frame{Kind: wire.KindAck, Seq: acked}, closeFrame(wire.KindClose, ce))
	case errors.Is(err, session.ErrTooLarge):
		lp.refuseSend(w, r, http.StatusRequestEntityTooLarge, "message_too_large", err.Error(), acked)
		return
	case errors.Is(err, session.ErrSeqGap):
		lp.refuseSend(w, r, http.StatusBadRequest, "sequence_gap", err.Error(), acked)
		return
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away while the inbox was full; it will resend
		// whatever is above the ack it never saw, and duplicates are skipped.
		return
	default:
		lp.opts.Logger.Error("longpoll: receive failed", "session", ep.ID(), "err", err)
		lp.refuse(w, r, http.StatusInternalServerError, "internal", "could not accept messages")
	}
}

// bodyBufs holds buffers for reading sends: a body is copied into the
// string the session keeps, so the buffer can serve the next send.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody reads a send's body, refusing one over MaxBodyBytes with an
// *http.MaxBytesError.
func (lp *Transport) readBody(w http.ResponseWriter, r *http.Request) (string, error) {
	n := r.ContentLength
	if n < 0 || n > lp.opts.MaxBodyBytes || n > 64<<10 {
		// Unknown length, too large, or large enough to read as it comes.
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lp.opts.MaxBodyBytes))
		return string(raw), err
	}
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	buf := *bp
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
		*bp = buf
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// isForm reports whether a send's Content-Type is a form's.
func isForm(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/x-www-form-urlencoded"
}

// Refuse answers a poll or send that cannot reach its session (unknown, or
// expired) with a close frame, as a batch or JSONP like any other answer.
// The status is 200: XDomainRequest and script tags cannot read the body of
// any other, and the frame says what happened.
func (lp *Transport) Refuse(w http.ResponseWriter, r *http.Request, code session.Code, reason string) {
	callback, ok := lp.callback(w, r)
	if !ok {
		return
	}
	lp.writeFrames(w, callback, nil, closeFrame(wire.KindClose, &session.CloseError{Code: code, Reason: reason}))
}

// kickFrame tells a poll's client why its poll ended early: an end frame
// when only this connection ended (go on polling), a close frame when the
// whole session did.
func kickFrame(ce *session.CloseError) wire.Frame {
	if ce.Code.SessionEnding() {
		return closeFrame(wire.KindClose, ce)
	}
	return closeFrame(wire.KindEnd, ce)
}

func closeFrame(kind wire.Kind, ce *session.CloseError) wire.Frame {
	return wire.Frame{Kind: kind, Code: int(ce.Code), Data: ce.Reason}
}

// writeFrames writes msgs then extra as a batch, or as a JSONP call.
func (lp *Transport) writeFrames(w http.ResponseWriter, callback string, msgs []session.Message, extra ...wire.Frame) {
	body, contentType := appendAnswer(nil, callback, msgs, extra)
	httpx.Answer(w.Header(), contentType, len(body))
	_, _ = w.Write(body)
}

const (
	typeBatch = "text/plain; charset=utf-8"
	typeJSONP = "application/javascript; charset=utf-8"
)

// appendAnswer appends the body of a poll or send answer to dst: msgs then
// extra as a batch, or as a JSONP call; and says its content type.
func appendAnswer(dst []byte, callback string, msgs []session.Message, extra []wire.Frame) ([]byte, string) {
	size := 0
	for _, m := range msgs {
		size += len(m.Data) + 32
	}
	for _, f := range extra {
		size += len(f.Data) + 32
	}
	var batch []byte
	if callback == "" {
		batch = slices.Grow(dst, size)
	} else {
		batch = make([]byte, 0, size)
	}
	for _, m := range msgs {
		batch = wire.AppendBatchFrame(batch, wire.Frame{Kind: wire.KindMessage, Seq: m.Seq, Data: m.Data})
	}
	for _, f := range extra {
		batch = wire.AppendBatchFrame(batch, f)
	}
	if callback == "" {
		return batch, typeBatch
	}
	out := slices.Grow(dst, len(batch)+len(batch)/8+len(callback)+16)
	out = append(out, "/**/"...)
	out = append(out, callback...)
	out = append(out, '(')
	out = wire.AppendJSString(out, string(batch))
	out = append(out, ");"...)
	return out, typeJSONP
}

// callback returns the validated JSONP callback name, "" when none was
// asked for; it answers 400 and returns false for a hostile one.
func (lp *Transport) callback(w http.ResponseWriter, r *http.Request) (string, bool) {
	cb, ok := httpx.Query(r.URL.RawQuery, "callback")
	if !ok {
		return "", true
	}
	if !ValidCallback(cb) {
		lp.refuse(w, r, http.StatusBadRequest, "bad_callback",
			"JSONP callback must match ^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")
		return "", false
	}
	return cb, true
}

// ValidCallback reports whether name may be used as a JSONP callback:
// ^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$. Anything else could inject script.
func ValidCallback(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '$' ||
			i > 0 && (c >= '0' && c <= '9' || c == '.')
		if !ok {
			return false
		}
	}
	return true
}

func parseAck(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := wire.ParseFrame("a" + s)
	if err != nil {
		return 0, err
	}
	return f.Seq, nil
}

func (lp *Transport) refuse(w http.ResponseWriter, r *http.Request, status int, name, message string) {
	lp.opts.Logger.Info("longpoll: refused", "status", status, "error", name, "message", message,
		"remote", r.RemoteAddr, "path", r.URL.Path)
	httpx.WriteError(w, status, httpx.ErrorBody{Error: name, Message: message})
}

// refuseSend refuses part of a send: the messages up to acked were accepted
// before the bad one, and the error body says so.
func (lp *Transport) refuseSend(w http.ResponseWriter, r *http.Request, status int, name, message string, acked uint64) {
	lp.opts.Logger.Info("longpoll: refused", "status", status, "error", name, "message", message,
		"acked", acked, "remote", r.RemoteAddr, "path", r.URL.Path)
	httpx.WriteError(w, status, httpx.ErrorBody{Error: name, Message: message, Ack: &acked})
}
