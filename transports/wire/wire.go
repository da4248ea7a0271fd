// Package wire encodes and decodes cometkit's session frames: the small text
// format every transport carries (docs/PROTOCOL.md, "Frames"). It is plain
// text with decimal numbers and no JSON, so that a browser with no JSON
// object (IE6/7) parses it with indexOf and substring.
package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is a frame's first character.
type Kind byte

// Frame kinds.
const (
	// KindMessage carries one application message and its sequence number.
	KindMessage Kind = 'm'
	// KindAck acknowledges every message of the other side up to Seq.
	KindAck Kind = 'a'
	// KindHeartbeat says the connection is alive and nothing else is waiting.
	KindHeartbeat Kind = 'h'
	// KindClose says the session has ended, with a code and reason.
	KindClose Kind = 'c'
	// KindEnd ends this transport connection but not the session (a newer
	// poll took over, a stream was recycled): connect again and resume.
	KindEnd Kind = 'x'
	// KindPublish carries a message published to a topic: its sequence
	// number in the session, its offset in the topic, the topic, the text.
	// The client keeps the offset, to ask for what it missed after a reset.
	KindPublish Kind = 'p'
	// KindGap tells the client that messages of a topic were lost to it
	// (history gone): it must resynchronise that topic. It has a sequence
	// number, so it arrives in order with the messages around it.
	KindGap Kind = 'g'
	// KindLeft tells the client that the session no longer follows a topic:
	// it forgets its offset there (a later session must not replay what was
	// published after it left). Numbered like a message.
	KindLeft Kind = 'u'
	// KindOpen is the first frame of a connection that negotiated its
	// session itself (.../negotiate/websocket or .../negotiate/eventstream):
	// Data is the negotiate answer, a JSON object. Server to client only.
	KindOpen Kind = 'o'
)

// MaxReasonBytes bounds a close reason, as RFC 6455 bounds a close frame's.
const MaxReasonBytes = 123

// Frame is one decoded frame. Seq is set for messages, publishes, gaps and
// acks, Code for closes and ends; Data is a message's text or a close's
// reason; Topic and Offset are set for publishes (Topic also for gaps).
type Frame struct {
	Kind   Kind
	Seq    uint64
	Code   int
	Data   string
	Topic  string
	Offset uint64
}

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("wire: malformed")

// AppendFrame appends f's encoding (without batch length prefix) to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	dst = append(dst, byte(f.Kind))
	switch f.Kind {
	case KindMessage:
		dst = strconv.AppendUint(dst, f.Seq, 10)
		dst = append(dst, ':')
		dst = append(dst, f.Data...)
	case KindPublish:
		dst = strconv.AppendUint(dst, f.Seq, 10)
		dst = appendPublishTail(dst, f.Offset, f.Topic, f.Data)
	case KindGap, KindLeft:
		dst = strconv.AppendUint(dst, f.Seq, 10)
		dst = append(dst, ':')
		dst = append(dst, f.Topic...)
	case KindAck:
		dst = strconv.AppendUint(dst, f.Seq, 10)
	case KindOpen:
		dst = append(dst, f.Data...)
	case KindClose, KindEnd:
		dst = strconv.AppendInt(dst, int64(f.Code), 10)
		dst = append(dst, ':')
		dst = append(dst, TruncateReason(f.Data)...)
	}
	return dst
}

// AppendBatchFrame appends f to a batch: its length in UTF-16 code units,
// a colon, the frame, and a newline.
func AppendBatchFrame(dst []byte, f Frame) []byte {
	start := len(dst)
	dst = AppendFrame(dst, f)
	// Encode the frame in place first, then insert its length in front.
	n := UTF16Len(string(dst[start:]))
	var num [24]byte
	prefix := strconv.AppendInt(num[:0], int64(n), 10)
	prefix = append(prefix, ':')
	dst = append(dst, prefix...) // grow by len(prefix)
	copy(dst[start+len(prefix):], dst[start:len(dst)-len(prefix)])
	copy(dst[start:], prefix)
	return append(dst, '\n')
}

// TruncateReason cuts a close reason to MaxReasonBytes on a rune boundary.
func TruncateReason(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	s = s[:MaxReasonBytes]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// UTF16Len is the length of s in UTF-16 code units, as JavaScript's
// String.length counts it. s must be valid UTF-8.
func UTF16Len(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c < 0x80:
			i++
		case c < 0xE0:
			i += 2
		case c < 0xF0:
			i += 3
		default:
			i += 4
			n++ // outside the BMP: a surrogate pair
		}
		n++
	}
	return n
}

// utf16Offset returns the byte offset in s after n UTF-16 code units, or -1
// if s is shorter or n ends inside a surrogate pair.
func utf16Offset(s string, n int) int {
	i := 0
	for n > 0 {
		if i >= len(s) {
			return -1
		}
		c := s[i]
		switch {
		case c < 0x80:
			i++
		case c < 0xE0:
			i += 2
		case c < 0xF0:
			i += 3
		default:
			if n == 1 {
				return -1
			}
			i += 4
			n--
		}
		n--
	}
	if i > len(s) {
		return -1
	}
	return i
}

// ParseFrame decodes one frame (no batch prefix). s must be valid UTF-8.
func ParseFrame(s string) (Frame, error) {
	if s == "" {
		return Frame{}, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	f := Frame{Kind: Kind(s[0])}
	rest := s[1:]
	var err error
	switch f.Kind {
	case KindMessage:
		num, data, ok := strings.Cut(rest, ":")
		if !ok {
			return Frame{}, fmt.Errorf("%w: message frame without ':'", ErrMalformed)
		}
		if f.Seq, err = parseUint(num); err != nil {
			return Frame{}, err
		}
		if f.Seq == 0 {
			return Frame{}, fmt.Errorf("%w: message sequence number 0", ErrMalformed)
		}
		f.Data = data
	case KindPublish:
		if f.Seq, f.Offset, f.Topic, f.Data, err = parsePublish(rest); err != nil {
			return Frame{}, err
		}
	case KindGap, KindLeft:
		num, topic, ok := strings.Cut(rest, ":")
		if !ok {
			return Frame{}, fmt.Errorf("%w: %c frame without ':'", ErrMalformed, f.Kind)
		}
		if f.Seq, err = parseUint(num); err != nil {
			return Frame{}, err
		}
		if f.Seq == 0 || topic == "" {
			return Frame{}, fmt.Errorf("%w: %c frame with sequence number 0 or no topic", ErrMalformed, f.Kind)
		}
		f.Topic = topic
	case KindAck:
		if f.Seq, err = parseUint(rest); err != nil {
			return Frame{}, err
		}
	case KindOpen:
		if !strings.HasPrefix(rest, "{") {
			return Frame{}, fmt.Errorf("%w: open frame without a JSON object", ErrMalformed)
		}
		f.Data = rest
	case KindHeartbeat:
		if rest != "" {
			return Frame{}, fmt.Errorf("%w: heartbeat frame with content", ErrMalformed)
		}
	case KindClose, KindEnd:
		num, reason, ok := strings.Cut(rest, ":")
		if !ok {
			return Frame{}, fmt.Errorf("%w: close frame without ':'", ErrMalformed)
		}
		code, err := parseUint(num)
		if err != nil {
			return Frame{}, err
		}
		if code < 1000 || code > 4999 {
			return Frame{}, fmt.Errorf("%w: close code %d outside 1000-4999", ErrMalformed, code)
		}
		if len(reason) > MaxReasonBytes {
			return Frame{}, fmt.Errorf("%w: close reason of %d bytes", ErrMalformed, len(reason))
		}
		f.Code, f.Data = int(code), reason
	default:
		return Frame{}, fmt.Errorf("%w: unknown frame kind %q", ErrMalformed, s[0])
	}
	return f, nil
}

// parseUint reads a canonical decimal: digits only, no leading zero, ≤ 2^64−1.
func parseUint(s string) (uint64, error) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%w: bad number %q", ErrMalformed, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: bad number %q", ErrMalformed, s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad number %q", ErrMalformed, s)
	}
	return n, nil
}

// ParseBatch decodes a batch: zero or more `length:frame\n`. It fails on the
// first malformed frame, on invalid UTF-8, or past maxFrames frames.
func ParseBatch(s string, maxFrames int) ([]Frame, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: batch is not valid UTF-8", ErrMalformed)
	}
	var frames []Frame
	for len(s) > 0 {
		if len(frames) >= maxFrames {
			return nil, fmt.Errorf("%w: more than %d frames", ErrMalformed, maxFrames)
		}
		num, rest, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("%w: frame without length", ErrMalformed)
		}
		n, err := parseUint(num)
		if err != nil {
			return nil, err
		}
		if n > uint64(len(rest)) { // a code unit takes at least one byte
			return nil, fmt.Errorf("%w: frame length %d past end of batch", ErrMalformed, n)
		}
		end := utf16Offset(rest, int(n))
		if end < 0 || end >= len(rest) || rest[end] != '\n' {
			return nil, fmt.Errorf("%w: frame of length %d not followed by newline", ErrMalformed, n)
		}
		f, err := ParseFrame(rest[:end])
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
		s = rest[end+1:]
	}
	return frames, nil
}

// AppendJSONString appends s as a JSON string literal with only the escapes
// JSON requires (", \, control characters): for an event stream's data
// line, which may contain no CR or LF. s must be valid UTF-8.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONInner(dst, s)
	return append(dst, '"')
}

// AppendJSString appends s as a JavaScript string literal that is safe inside
// an HTML <script> (no "</script>", no U+2028/U+2029 line breaks): for JSONP.
// It is valid JSON too. s must be valid UTF-8.
func AppendJSString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSInner(dst, s)
	return append(dst, '"')
}

func appendJSONInner(dst []byte, s string) []byte { return appendEscaped(dst, s, false) }

func appendJSInner(dst []byte, s string) []byte { return appendEscaped(dst, s, true) }

// appendEscaped appends s escaped for the inside of a JSON string literal;
// forScript also escapes what a script element or an old JavaScript parser
// would take as markup or a line break (<, >, &, U+2028, U+2029). Escaping
// goes character by character, so escaping the pieces of a text one by one
// gives the same as escaping the whole.
func appendEscaped(dst []byte, s string, forScript bool) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x20 && c != '"' && c != '\\' && (!forScript || (c != '<' && c != '>' && c != '&' && c != 0xE2)):
			continue
		case c == 0xE2:
			// U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
			if i+2 >= len(s) || s[i+1] != 0x80 || (s[i+2] != 0xA8 && s[i+2] != 0xA9) {
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[s[i+2]-0xA0])
			i += 2
			start = i + 1
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	return append(dst, s[start:]...)
}
