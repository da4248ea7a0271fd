package wire

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cometkit/cometkit/session"
)

// appendPublishTail appends what follows a publish frame's sequence number:
// ":" offset ":" topic length in UTF-16 code units ":" topic data.
func appendPublishTail(dst []byte, offset uint64, topic, data string) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, offset, 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(UTF16Len(topic)), 10)
	dst = append(dst, ':')
	dst = append(dst, topic...)
	return append(dst, data...)
}

// parsePublish reads what follows a publish frame's "p".
func parsePublish(rest string) (seq, offset uint64, topic, data string, err error) {
	fields := [3]uint64{}
	for i := range fields {
		num, after, ok := strings.Cut(rest, ":")
		if !ok {
			return 0, 0, "", "", fmt.Errorf("%w: publish frame with fewer than 4 fields", ErrMalformed)
		}
		if fields[i], err = parseUint(num); err != nil {
			return 0, 0, "", "", err
		}
		rest = after
	}
	seq, offset, topicUnits := fields[0], fields[1], fields[2]
	if seq == 0 || topicUnits == 0 || topicUnits > uint64(len(rest)) {
		return 0, 0, "", "", fmt.Errorf("%w: publish frame with sequence number 0 or bad topic length", ErrMalformed)
	}
	end := utf16Offset(rest, int(topicUnits))
	if end < 0 {
		return 0, 0, "", "", fmt.Errorf("%w: publish topic length %d past the frame", ErrMalformed, topicUnits)
	}
	return seq, offset, rest[:end], rest[end:], nil
}

// MessageFrame is the frame that carries m: a message, a publish (m came
// from a topic), or a gap or left notice.
func MessageFrame(m session.Message) Frame {
	switch sh := m.Shared; {
	case sh == nil:
		return Frame{Kind: KindMessage, Seq: m.Seq, Data: m.Data}
	case sh.Gap:
		return Frame{Kind: KindGap, Seq: m.Seq, Topic: sh.Topic}
	case sh.Left:
		return Frame{Kind: KindLeft, Seq: m.Seq, Topic: sh.Topic}
	default:
		return Frame{Kind: KindPublish, Seq: m.Seq, Offset: sh.Offset, Topic: sh.Topic, Data: m.Data}
	}
}

// The encodings a session.Shared keeps, one slot per wire format. Each holds
// the frame's tail: everything after its kind and sequence number, which is
// the same for every session (only the sequence number differs).
const (
	slotText = iota // as is; Units = its length in UTF-16 code units
	slotJSON        // escaped for a JSON string, quotes left out (event stream)
	slotJS          // escaped for a JavaScript string in a script (JSONP)
)

func sharedTail(sh *session.Shared) []byte {
	if sh.Gap || sh.Left {
		return append([]byte{':'}, sh.Topic...)
	}
	return appendPublishTail(nil, sh.Offset, sh.Topic, sh.Data)
}

func encodeText(sh *session.Shared) session.Encoding {
	b := sharedTail(sh)
	return session.Encoding{Bytes: b, Units: UTF16Len(string(b))}
}

func encodeJSON(sh *session.Shared) session.Encoding {
	return session.Encoding{Bytes: appendJSONInner(nil, string(sh.Encoded(slotText, encodeText).Bytes))}
}

func encodeJS(sh *session.Shared) session.Encoding {
	return session.Encoding{Bytes: appendJSInner(nil, string(sh.Encoded(slotText, encodeText).Bytes))}
}

// appendHead appends a message frame's kind and sequence number.
func appendHead(dst []byte, m session.Message) []byte {
	kind := KindMessage
	if sh := m.Shared; sh != nil {
		switch {
		case sh.Gap:
			kind = KindGap
		case sh.Left:
			kind = KindLeft
		default:
			kind = KindPublish
		}
	}
	dst = append(dst, byte(kind))
	return strconv.AppendUint(dst, m.Seq, 10)
}

// AppendMessage appends m's frame (no batch prefix): what a WebSocket
// message carries. A shared message's tail is encoded once for all sessions.
func AppendMessage(dst []byte, m session.Message) []byte {
	dst = appendHead(dst, m)
	if m.Shared == nil {
		dst = append(dst, ':')
		return append(dst, m.Data...)
	}
	return append(dst, m.Shared.Encoded(slotText, encodeText).Bytes...)
}

// AppendBatchMessage appends m as a batch frame: its length in UTF-16 code
// units, ":", the frame, LF. A shared message's tail and its length are
// computed once for all sessions.
func AppendBatchMessage(dst []byte, m session.Message) []byte {
	if m.Shared == nil {
		return AppendBatchFrame(dst, Frame{Kind: KindMessage, Seq: m.Seq, Data: m.Data})
	}
	enc := m.Shared.Encoded(slotText, encodeText)
	units := 1 + decimalLen(m.Seq) + enc.Units
	dst = strconv.AppendInt(dst, int64(units), 10)
	dst = append(dst, ':')
	dst = appendHead(dst, m)
	dst = append(dst, enc.Bytes...)
	return append(dst, '\n')
}

// AppendMessageJSON appends m's frame as a JSON string literal, for an event
// stream's data line. A shared message's tail is escaped once for all sessions.
func AppendMessageJSON(dst []byte, m session.Message) []byte {
	dst = append(dst, '"')
	dst = appendHead(dst, m)
	if m.Shared == nil {
		dst = append(dst, ':')
		dst = appendJSONInner(dst, m.Data)
	} else {
		dst = append(dst, m.Shared.Encoded(slotJSON, encodeJSON).Bytes...)
	}
	return append(dst, '"')
}

// AppendBatchMessageJS appends m as a batch frame escaped for the inside of a
// JavaScript string literal (no quotes): a JSONP answer is a batch in one
// such literal. A shared message's tail is escaped once for all sessions.
func AppendBatchMessageJS(dst []byte, m session.Message) []byte {
	if m.Shared == nil {
		return appendJSInner(dst, string(AppendBatchMessage(nil, m)))
	}
	enc := m.Shared.Encoded(slotText, encodeText)
	units := 1 + decimalLen(m.Seq) + enc.Units
	dst = strconv.AppendInt(dst, int64(units), 10)
	dst = append(dst, ':')
	dst = appendHead(dst, m)
	dst = append(dst, m.Shared.Encoded(slotJS, encodeJS).Bytes...)
	return append(dst, '\\', 'n')
}

// AppendBatchFrameJS appends f as a batch frame escaped for the inside of a
// JavaScript string literal (no quotes).
func AppendBatchFrameJS(dst []byte, f Frame) []byte {
	return appendJSInner(dst, string(AppendBatchFrame(nil, f)))
}

func decimalLen(n uint64) int {
	l := 1
	for n >= 10 {
		n /= 10
		l++
	}
	return l
}
