// Package redisbroker is a cometkit server.Broker on Redis, for a deployment
// of several nodes: a topic published on any node reaches the sessions
// subscribed to it on every node, and each topic's recent history is kept so
// that a client which moves to another node catches up by offset.
//
// It is its own module because github.com/redis/go-redis/v9 needs a newer Go
// than the core module asks for.
//
// How: a Lua script appends the message to the topic's Redis stream
// (history, bounded by count and age) and PUBLISHes its ID and payload on
// the topic's channel, in one atomic step, so live delivery is Pub/Sub (one
// connection per node, topics added and dropped at will, no polling) and the
// stream is the record. A node's subscription connection that drops is
// re-established by go-redis; on every (re)subscribe the node reads the
// stream from the last offset it delivered, so messages published while it
// was cut off are delivered late rather than lost, in order, none twice.
// This is the shape of centrifuge's Redis engine.
package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cometkit/cometkit/server"
)

// Options configure a Broker; zero fields take defaults.
type Options struct {
	// Prefix starts every key and channel (default "cometkit:").
	Prefix string
	// MaxHistory bounds each topic's history (default 1,000 entries).
	MaxHistory int
	// MaxAge drops history older than this (default 5 minutes); a topic
	// idle that long is removed.
	MaxAge time.Duration
	// Logger receives a line when the subscription connection is lost or a
	// catch-up read fails (default slog.Default()).
	Logger *slog.Logger
}

// Broker implements server.Broker on Redis. Create it with New; Close it.
type Broker struct {
	rdb  redis.UniversalClient
	opts Options
	ps   *redis.PubSub
	done chan struct{}

	mu     sync.Mutex
	topics map[string]*topic // by channel name
}

type topic struct {
	name  string
	last  uint64 // last offset delivered to this node's subscribers
	subs  map[int]func(server.Entry)
	next  int
	ready bool // the first (re)subscribe has been seen and caught up
}

// New returns a Broker on rdb and starts its subscription loop.
func New(rdb redis.UniversalClient, opts Options) *Broker {
	if opts.Prefix == "" {
		opts.Prefix = "cometkit:"
	}
	if opts.MaxHistory <= 0 {
		opts.MaxHistory = 1000
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Broker{rdb: rdb, opts: opts, done: make(chan struct{}), topics: map[string]*topic{}}
	b.ps = rdb.Subscribe(context.Background())
	go b.loop(b.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024)))
	return b
}

// Close stops the subscription loop and its connection.
func (b *Broker) Close() error {
	err := b.ps.Close()
	<-b.done
	return err
}

func (b *Broker) streamKey(t string) string  { return b.opts.Prefix + "s:" + t }
func (b *Broker) channel(t string) string    { return b.opts.Prefix + "c:" + t }
func (b *Broker) trimmedKey(t string) string { return b.opts.Prefix + "t:" + t }

// publish appends to the stream, trims it by count and age (recording the
// last ID trimmed, so a catch-up can tell a hole), and publishes "ID payload".
var publish = redis.NewScript(`
local id = redis.call('XADD', KEYS[1], '*', 'p', ARGV[1])
local max, minid, ttl = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local n = redis.call('XLEN', KEYS[1])
if n > max then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - max)
  redis.call('SET', KEYS[3], old[#old][1], 'PX', ttl)
  redis.call('XTRIM', KEYS[1], 'MAXLEN', '=', max)
end
local aged = redis.call('XRANGE', KEYS[1], '-', '(' .. minid, 'COUNT', 1000)
if #aged > 0 then
  redis.call('SET', KEYS[3], aged[#aged][1], 'PX', ttl)
  redis.call('XTRIM', KEYS[1], 'MINID', minid)
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PUBLISH', KEYS[2], id .. ' ' .. ARGV[1])
return id
`)

// ErrUnavailable wraps every failure to reach Redis. Publish does not retry:
// the caller (the application) decides whether to try again, tell its user,
// or drop the message.
var ErrUnavailable = errors.New("redisbroker: redis unavailable")

// Publish implements server.Broker.
func (b *Broker) Publish(ctx context.Context, t, payload string) (uint64, error) {
	minID := strconv.FormatInt(time.Now().Add(-b.opts.MaxAge).UnixMilli(), 10)
	ttl := b.opts.MaxAge.Milliseconds()
	id, err := publish.Run(ctx, b.rdb, []string{b.streamKey(t), b.channel(t), b.trimmedKey(t)},
		payload, b.opts.MaxHistory, minID, ttl).Text()
	if err != nil {
		return 0, fmt.Errorf("%w: publishing to %q: %v", ErrUnavailable, t, err)
	}
	return parseID(id)
}

// Subscribe implements server.Broker. The subscription starts at the
// topic's newest offset when the node subscribes to its channel.
func (b *Broker) Subscribe(ctx context.Context, t string, deliver func(server.Entry)) (func(), error) {
	ch := b.channel(t)
	b.mu.Lock()
	tp := b.topics[ch]
	first := tp == nil
	if first {
		tp = &topic{name: t, subs: map[int]func(server.Entry){}}
		b.topics[ch] = tp
	}
	id := tp.next
	tp.next++
	tp.subs[id] = deliver
	b.mu.Unlock()
	if first {
		// Start from the newest offset now; the subscribe confirmation then
		// catches up from it, covering what is published in between.
		last, err := b.newest(ctx, t)
		if err == nil {
			b.mu.Lock()
			tp.last = last
			b.mu.Unlock()
			err = b.ps.Subscribe(ctx, ch)
		}
		if err != nil {
			b.mu.Lock()
			delete(tp.subs, id)
			if len(tp.subs) == 0 && b.topics[ch] == tp {
				delete(b.topics, ch)
			}
			b.mu.Unlock()
			return nil, fmt.Errorf("%w: subscribing to %q: %v", ErrUnavailable, t, err)
		}
	}
	return func() { b.unsubscribe(ch, tp, id) }, nil
}

func (b *Broker) unsubscribe(ch string, tp *topic, id int) {
	b.mu.Lock()
	delete(tp.subs, id)
	empty := len(tp.subs) == 0 && b.topics[ch] == tp
	if empty {
		delete(b.topics, ch)
	}
	b.mu.Unlock()
	if empty {
		_ = b.ps.Unsubscribe(context.Background(), ch)
	}
}

// newest is the offset of the topic's newest entry (0 if none).
func (b *Broker) newest(ctx context.Context, t string) (uint64, error) {
	xs, err := b.rdb.XRevRangeN(ctx, b.streamKey(t), "+", "-", 1).Result()
	if err != nil || len(xs) == 0 {
		return 0, err
	}
	return parseID(xs[0].ID)
}

// History implements server.Broker.
func (b *Broker) History(ctx context.Context, t string, after uint64, limit int) ([]server.Entry, error) {
	trimmed, err := b.rdb.Get(ctx, b.trimmedKey(t)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: history of %q: %v", ErrUnavailable, t, err)
	}
	if trimmed != "" {
		if last, _ := parseID(trimmed); after < last {
			return nil, fmt.Errorf("%w: topic %q from %d, trimmed up to %d", server.ErrHistoryGone, t, after, last)
		}
	}
	start := "-"
	if after > 0 {
		start = "(" + formatID(after)
	}
	var xs []redis.XMessage
	if limit > 0 {
		xs, err = b.rdb.XRangeN(ctx, b.streamKey(t), start, "+", int64(limit)).Result()
	} else {
		xs, err = b.rdb.XRange(ctx, b.streamKey(t), start, "+").Result()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: history of %q: %v", ErrUnavailable, t, err)
	}
	if len(xs) == 0 && after > 0 {
		// No stream at all: expired with its topic, or never written. If
		// the client had an offset, what followed it may be gone.
		if n, err := b.rdb.Exists(ctx, b.streamKey(t)).Result(); err == nil && n == 0 {
			return nil, fmt.Errorf("%w: topic %q has no history left", server.ErrHistoryGone, t)
		}
		// An offset past the newest entry is not one of this history's.
		newest, err := b.rdb.XRevRangeN(ctx, b.streamKey(t), "+", "-", 1).Result()
		if err != nil {
			return nil, fmt.Errorf("%w: history of %q: %v", ErrUnavailable, t, err)
		}
		if len(newest) == 1 {
			if last, _ := parseID(newest[0].ID); after > last {
				return nil, fmt.Errorf("%w: topic %q from %d, newest is %d", server.ErrHistoryGone, t, after, last)
			}
		}
	}
	out := make([]server.Entry, 0, len(xs))
	for _, x := range xs {
		off, err := parseID(x.ID)
		if err != nil {
			return nil, err
		}
		p, _ := x.Values["p"].(string)
		out = append(out, server.Entry{Topic: t, Offset: off, Payload: p})
	}
	return out, nil
}

// loop delivers published messages, and after every (re)subscribe catches
// the topic up from its stream.
func (b *Broker) loop(ch <-chan interface{}) {
	defer close(b.done)
	for m := range ch {
		switch m := m.(type) {
		case *redis.Subscription:
			b.opts.Logger.Debug("redisbroker: subscription", "kind", m.Kind, "channel", m.Channel)
			if m.Kind == "subscribe" {
				b.catchUp(m.Channel)
			}
		case *redis.Message:
			id, payload, ok := strings.Cut(m.Payload, " ")
			off, err := parseID(id)
			if !ok || err != nil {
				b.opts.Logger.Error("redisbroker: malformed message", "channel", m.Channel)
				continue
			}
			b.mu.Lock()
			if tp := b.topics[m.Channel]; tp != nil && tp.ready {
				b.give(tp, server.Entry{Topic: tp.name, Offset: off, Payload: payload})
			}
			b.mu.Unlock()
		}
	}
}

// catchUp reads the stream after the last offset delivered here: on the
// first subscribe, what was published while subscribing; after a lost
// connection, what was published while it was down.
func (b *Broker) catchUp(ch string) {
	b.mu.Lock()
	tp := b.topics[ch]
	var name string
	var after uint64
	if tp != nil {
		name, after = tp.name, tp.last
	}
	b.mu.Unlock()
	if tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hist, err := b.History(ctx, name, after, 0)
	if errors.Is(err, server.ErrHistoryGone) {
		// What was published while we were cut off is no longer kept: tell
		// the subscribers they have a hole, then go on from the newest.
		b.opts.Logger.Warn("redisbroker: messages lost while the subscription was down",
			"topic", name, "after", after, "err", err)
		newest, nerr := b.newest(ctx, name)
		if nerr == nil {
			b.mu.Lock()
			for _, deliver := range tp.subs {
				deliver(server.Entry{Topic: name, Offset: newest, Gap: true})
			}
			tp.last = max(tp.last, newest)
			b.mu.Unlock()
		}
		hist, err = nil, nerr
	}
	if err != nil {
		b.opts.Logger.Warn("redisbroker: catching up after (re)subscribing failed; messages may be missing",
			"topic", name, "after", after, "err", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range hist {
		b.give(tp, e)
	}
	tp.ready = true
}

// give delivers an entry to the topic's subscribers once, in order; b.mu is held.
func (b *Broker) give(tp *topic, e server.Entry) {
	if e.Offset <= tp.last {
		return
	}
	tp.last = e.Offset
	for _, deliver := range tp.subs {
		deliver(e)
	}
}

// Stream IDs are "milliseconds-sequence"; an offset packs them in 64 bits
// (sequence below 2^22 within one millisecond).
func parseID(id string) (uint64, error) {
	ms, seq, ok := strings.Cut(id, "-")
	m, err1 := strconv.ParseUint(ms, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil || s >= 1<<22 || m >= 1<<41 {
		return 0, fmt.Errorf("redisbroker: unexpected stream ID %q", id)
	}
	return m<<22 | s, nil
}

func formatID(off uint64) string {
	return strconv.FormatUint(off>>22, 10) + "-" + strconv.FormatUint(off&(1<<22-1), 10)
}
