package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Entry is one message published to a topic. Offsets increase along a
// topic's history, so a subscriber that knows the last offset it had can
// ask for what followed.
type Entry struct {
	Topic   string
	Offset  uint64
	Payload string
	// Gap, on an entry with no payload, says the broker lost messages of the
	// topic before Offset that it could not recover (its connection was down
	// longer than the history reaches): subscribers have a hole.
	Gap bool
}

// Broker carries topic messages to every node of a deployment and keeps each
// topic's recent history. It is the seam between the hub and whatever spans
// the nodes: MemoryBroker within one process; a Redis adapter across many.
type Broker interface {
	// Publish appends payload to the topic's history and delivers it to the
	// topic's subscribers on every node; it returns the entry's offset.
	Publish(ctx context.Context, topic, payload string) (uint64, error)
	// Subscribe calls deliver for each entry published to topic from now on,
	// in offset order, until cancel is called. deliver must not block.
	Subscribe(ctx context.Context, topic string, deliver func(Entry)) (cancel func(), err error)
	// History returns the topic's entries after the offset, oldest first, at
	// most limit. It fails with ErrHistoryGone when entries after the offset
	// were already dropped, or the offset is past the newest entry (it is
	// not one of this history's), so a caller can tell the client to
	// resynchronise rather than lose messages silently.
	History(ctx context.Context, topic string, after uint64, limit int) ([]Entry, error)
}

// ErrHistoryGone means the history no longer reaches back to the offset asked for.
var ErrHistoryGone = errors.New("broker: history no longer holds that offset")

// MemoryBroker is the Broker of a single process: topics in memory, history
// bounded by count and age.
type MemoryBroker struct {
	// MaxHistory bounds each topic's history (default 1,000 entries).
	MaxHistory int
	// MaxAge drops history older than this (default 5 minutes).
	MaxAge time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu     sync.Mutex
	topics map[string]*memTopic
}

type memTopic struct {
	last    uint64
	history []memEntry // oldest first
	dropped uint64     // highest offset dropped from history
	subs    map[int]func(Entry)
	nextSub int
}

type memEntry struct {
	Entry
	at time.Time
}

func (b *MemoryBroker) topic(name string) *memTopic {
	if b.topics == nil {
		b.topics = map[string]*memTopic{}
	}
	t := b.topics[name]
	if t == nil {
		// Offsets start after the time the topic is made here, as
		// milliseconds << 22 (as the Redis broker's do): a client that
		// followed the topic in an earlier process holds a smaller offset
		// that this history does not reach back to, and is told so (a gap)
		// rather than matched against different messages.
		base := uint64(b.now().UnixMilli()) << 22
		t = &memTopic{subs: map[int]func(Entry){}, last: base, dropped: base}
		b.topics[name] = t
	}
	return t
}

func (b *MemoryBroker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// trim drops what is over the count or the age bound.
func (b *MemoryBroker) trim(t *memTopic) {
	maxN, maxAge := b.MaxHistory, b.MaxAge
	if maxN <= 0 {
		maxN = 1000
	}
	if maxAge <= 0 {
		maxAge = 5 * time.Minute
	}
	cut := 0
	oldest := b.now().Add(-maxAge)
	for cut < len(t.history) && (len(t.history)-cut > maxN || t.history[cut].at.Before(oldest)) {
		t.dropped = t.history[cut].Offset
		cut++
	}
	if cut > 0 {
		t.history = append(t.history[:0:0], t.history[cut:]...)
	}
}

// Publish implements Broker. Subscribers are called in the caller's
// goroutine, in offset order (the lock is held: deliver must not block).
func (b *MemoryBroker) Publish(ctx context.Context, topic, payload string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topic(topic)
	t.last++
	e := Entry{Topic: topic, Offset: t.last, Payload: payload}
	t.history = append(t.history, memEntry{Entry: e, at: b.now()})
	b.trim(t)
	for _, deliver := range t.subs {
		deliver(e)
	}
	return e.Offset, nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(ctx context.Context, topic string, deliver func(Entry)) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topic(topic)
	id := t.nextSub
	t.nextSub++
	t.subs[id] = deliver
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(t.subs, id)
		if len(t.subs) == 0 && len(t.history) == 0 {
			delete(b.topics, topic)
		}
	}, nil
}

// History implements Broker.
func (b *MemoryBroker) History(ctx context.Context, topic string, after uint64, limit int) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topic(topic)
	b.trim(t)
	if after < t.dropped {
		return nil, fmt.Errorf("%w: topic %q from %d, oldest kept %d", ErrHistoryGone, topic, after, t.dropped+1)
	}
	if after > t.last {
		// Not an offset of this history (another process's, or made up):
		// nothing here can say what the client missed.
		return nil, fmt.Errorf("%w: topic %q from %d, newest is %d", ErrHistoryGone, topic, after, t.last)
	}
	var out []Entry
	for _, e := range t.history {
		if e.Offset > after && (limit <= 0 || len(out) < limit) {
			out = append(out, e.Entry)
		}
	}
	return out, nil
}
