package session

import (
	"context"
	"fmt"
)

// Message is one outbound application message and its sequence number.
// Sequence numbers start at 1 and increase by one per message per session.
type Message struct {
	Seq  uint64
	Data string
	// Shared is set on a message published to a topic (or a gap notice of
	// one): its topic and offset, and its encodings shared with every other
	// session it went to. Nil for a message sent to this session alone.
	Shared *Shared
}

// Log holds a session's outbound messages from Append until the client
// acknowledges them, so that they can be replayed when the client comes back
// on this or any other transport. It is an interface so that a later adapter
// can keep the log outside the process (in Redis) for scale-out.
//
// A Log is used by one session, which serialises its calls.
type Log interface {
	// Append stores m under the next sequence number (m.Seq is ignored). It
	// returns ErrQueueFull (wrapped) when the log's count or byte bound would
	// be exceeded.
	Append(ctx context.Context, m Message) (seq uint64, err error)
	// Ack discards every message with a sequence number ≤ seq.
	Ack(ctx context.Context, seq uint64) error
	// Read appends to dst the messages with sequence number > after, oldest
	// first, stopping before maxBytes of data is exceeded (at least one message
	// is returned if any is waiting).
	Read(ctx context.Context, after uint64, maxBytes int, dst []Message) ([]Message, error)
	// Last is the sequence number of the newest message ever appended (0 if none).
	Last() uint64
	// First is the sequence number of the oldest message held, or Last()+1
	// when none is. A log that drops messages nobody acknowledged (by age,
	// say) shows it here, and the session then refuses to resume past them.
	First() uint64
	// Len is the count and total data bytes of the messages held.
	Len() (count, bytes int)
	// Free releases what the log holds; the log is not used afterwards.
	Free()
}

// MemLog is the in-process Log: a bounded queue of unacknowledged messages.
type MemLog struct {
	maxCount, maxBytes int
	msgs               []Message // msgs[head:] are held, oldest first
	head               int
	bytes              int
	last               uint64
}

// NewMemLog returns a log bounded by a message count and a byte total.
func NewMemLog(maxCount, maxBytes int) *MemLog {
	return &MemLog{maxCount: maxCount, maxBytes: maxBytes}
}

// Append implements Log.
func (l *MemLog) Append(_ context.Context, m Message) (uint64, error) {
	held := len(l.msgs) - l.head
	if held+1 > l.maxCount || l.bytes+len(m.Data) > l.maxBytes {
		return 0, fmt.Errorf("%w: %d messages, %d bytes held (bounds %d, %d)",
			ErrQueueFull, held, l.bytes, l.maxCount, l.maxBytes)
	}
	if l.head > 0 && l.head >= len(l.msgs)/2 {
		// Compact so the backing array does not grow while the window slides.
		n := copy(l.msgs, l.msgs[l.head:])
		clear(l.msgs[n:])
		l.msgs = l.msgs[:n]
		l.head = 0
	}
	l.last++
	m.Seq = l.last
	l.msgs = append(l.msgs, m)
	l.bytes += len(m.Data)
	return l.last, nil
}

// Ack implements Log.
func (l *MemLog) Ack(_ context.Context, seq uint64) error {
	for l.head < len(l.msgs) && l.msgs[l.head].Seq <= seq {
		l.bytes -= len(l.msgs[l.head].Data)
		l.msgs[l.head] = Message{}
		l.head++
	}
	if l.head == len(l.msgs) {
		l.msgs = l.msgs[:0]
		l.head = 0
		if cap(l.msgs) > 64 {
			l.msgs = nil // an idle session keeps no large array
		}
	}
	return nil
}

// Read implements Log.
func (l *MemLog) Read(_ context.Context, after uint64, maxBytes int, dst []Message) ([]Message, error) {
	if after >= l.last {
		return dst, nil
	}
	held := l.msgs[l.head:]
	// Sequence numbers are dense, so the first wanted message is found by arithmetic.
	i := 0
	if len(held) > 0 && after >= held[0].Seq {
		i = int(after - held[0].Seq + 1)
	}
	size := 0
	for ; i < len(held); i++ {
		size += len(held[i].Data)
		if size > maxBytes && len(dst) > 0 {
			break
		}
		dst = append(dst, held[i])
	}
	return dst, nil
}

// Last implements Log.
func (l *MemLog) Last() uint64 { return l.last }

// First implements Log.
func (l *MemLog) First() uint64 {
	if l.head < len(l.msgs) {
		return l.msgs[l.head].Seq
	}
	return l.last + 1
}

// Len implements Log.
func (l *MemLog) Len() (int, int) { return len(l.msgs) - l.head, l.bytes }

// Free implements Log.
func (l *MemLog) Free() {
	l.msgs, l.head, l.bytes = nil, 0, 0
}
