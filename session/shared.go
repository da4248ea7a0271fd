package session

import "sync/atomic"

// EncodingSlots is how many wire encodings a Shared message can keep: one per
// wire format that needs its own escaping or length (the transports' wire
// package numbers them).
const EncodingSlots = 4

// Shared is what one message published to a topic has in common across every
// session it goes to: its topic, its offset in the topic's history (so the
// client can say where it was, after a reset or on another node), and its
// encodings, each made once per wire format by the first session that needs
// it and then reused by all the others. A broadcast to 10,000 sessions is
// thus escaped once for event streams, once for JSONP, and so on — never
// once per session. Only the few bytes that differ per session (its
// sequence number) are written per session.
//
// A Shared must not be changed once it is offered to a session.
type Shared struct {
	// Topic is the topic the message was published to.
	Topic string
	// Offset is the message's position in the topic's history; for a gap
	// notice, 0.
	Offset uint64
	// Gap marks a notice instead of a message: the client missed messages of
	// Topic that are gone and must resynchronise that topic. Data is empty.
	Gap bool
	// Left marks a notice that the session no longer follows Topic: the
	// client forgets its offset there. Data is empty.
	Left bool
	// Data is the message text (the same string as the Message's Data).
	Data string

	enc [EncodingSlots]atomic.Pointer[Encoding]
}

// Encoding is one cached wire encoding of a Shared message.
type Encoding struct {
	Bytes []byte
	// Units is a length the format needs beside the bytes (for the
	// long-polling batch: the frame's length in UTF-16 code units).
	Units int
}

// Encoded returns the encoding kept in slot, made by encode the first time it
// is asked for. Two sessions asking at once may both encode; one result is
// kept, and both are equal.
func (sh *Shared) Encoded(slot int, encode func(*Shared) Encoding) *Encoding {
	if e := sh.enc[slot].Load(); e != nil {
		return e
	}
	e := encode(sh)
	if sh.enc[slot].CompareAndSwap(nil, &e) {
		return &e
	}
	return sh.enc[slot].Load()
}

// Notice reports whether m is a notice about a topic (a gap, or leaving it)
// rather than a message with application data: a transport with no framing
// of its own (a raw WebSocket) skips it.
func (m Message) Notice() bool { return m.Shared != nil && (m.Shared.Gap || m.Shared.Left) }
