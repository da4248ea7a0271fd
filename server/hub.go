package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cometkit/cometkit/session"
)

// Hub keeps topics: which sessions of this node listen to what, and fans
// every message published to a topic, on any node, out to them. A published
// message is one string shared by every session's queue, not a copy per
// session; each session frames it for its own transport. A session that
// falls behind is closed with CodeSlowConsumer (its client resets): one slow
// client never stalls a broadcast nor grows memory without bound.
type Hub struct {
	broker     Broker
	onPresence func(PresenceEvent)
	noResume   bool // Options.DisableTopicResume

	mu     sync.Mutex
	topics map[string]*hubTopic
	// joined is each session's first membership here; the rest follow it
	// (member.next). Most sessions follow a topic or a few, and an idle
	// session's share of the hub is a good part of its memory: a list
	// threaded through the members costs no more than its head.
	joined map[*session.Session]*member
}

type hubTopic struct {
	members map[*session.Session]*member
	// catching holds, for each member catching up from history, the live
	// entries that came meanwhile (nil while none is).
	catching map[*session.Session]*[]Entry
	cancel   func()
	// lastDelivery is when the last entry's fan-out began (bursts do not
	// yield, see fanOutChunk).
	lastDelivery time.Time
}

// member is one session's place in a topic.
type member struct {
	last  uint64  // the offset of the last message it was given
	topic string  // its topic, for the session's list of its topics
	next  *member // the session's next membership (Hub.joined)
}

// PresenceEvent says a session joined or left a topic on this node.
type PresenceEvent struct {
	Topic   string
	Session *session.Session
	Joined  bool
}

// Errors of the hub.
var (
	// ErrBadTopic: a topic name must be 1–200 bytes of UTF-8.
	ErrBadTopic = errors.New("hub: topic name must be 1-200 bytes of UTF-8")
)

func newHub(b Broker, onPresence func(PresenceEvent), noResume bool) *Hub {
	return &Hub{broker: b, onPresence: onPresence, noResume: noResume, topics: map[string]*hubTopic{}, joined: map[*session.Session]*member{}}
}

func checkTopic(t string) error {
	if t == "" || len(t) > 200 || !utf8.ValidString(t) {
		return fmt.Errorf("%w: %q", ErrBadTopic, t)
	}
	return nil
}

// Subscribe adds s to topic: from now on it receives what is published there.
// If s's client followed topic in an earlier session (it says so when it
// negotiates, see session.Info.TopicOffsets), s first gets what it missed
// since, from the topic's history, as SubscribeFrom does — the application
// need not carry offsets. If the history no longer holds all of it, the
// client is sent a gap notice for the topic (its "gap" event: resynchronise
// that topic) and Subscribe succeeds. Options.DisableTopicResume turns this off.
func (h *Hub) Subscribe(ctx context.Context, s *session.Session, topic string) error {
	if !h.noResume {
		if off, ok := s.TopicOffset(topic); ok {
			err := h.subscribeFrom(ctx, s, topic, off)
			if errors.Is(err, ErrHistoryGone) {
				return nil // the client has been told, with a gap notice
			}
			return err
		}
	}
	_, _, err := h.join(ctx, s, topic, false, 0)
	return err
}

// SubscribeFrom adds s to topic and first gives it, in order, the topic's
// messages after offset (the last one its client had, say before it moved to
// this node), then the live ones, none twice. If the history cannot give all
// of them (gone, or the broker failed), s is subscribed from now, its client
// is sent a gap notice for the topic (it must resynchronise it), and
// SubscribeFrom returns the error (ErrHistoryGone when the history no longer
// reaches back), for an application that sends a snapshot instead. If s is
// already subscribed, it has had everything since it joined, and nothing
// happens.
func (h *Hub) SubscribeFrom(ctx context.Context, s *session.Session, topic string, offset uint64) error {
	return h.subscribeFrom(ctx, s, topic, offset)
}

func (h *Hub) subscribeFrom(ctx context.Context, s *session.Session, topic string, offset uint64) error {
	m, isNew, err := h.join(ctx, s, topic, true, offset)
	if err != nil {
		return err // the client's offset stays, for a retry
	}
	s.ForgetTopicOffset(topic) // used once: later it has had what followed
	if !isNew {
		return nil
	}
	hist, herr := h.broker.History(ctx, topic, offset, 0)
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[topic]
	if t == nil || t.members[s] != m {
		return nil // it left (or was closed) while the history was read
	}
	var held []Entry
	if p := t.catching[s]; p != nil {
		held = *p
		delete(t.catching, s)
	}
	if herr != nil {
		// Nothing can say what the client missed: tell it, and go on live.
		m.last = 0
		h.notifyGap(s, topic, &session.Shared{Topic: topic, Gap: true})
	} else {
		for _, e := range hist {
			h.give(topic, s, m, sharedOf(e))
		}
	}
	for _, e := range held {
		if e.Gap {
			h.notifyGap(s, topic, sharedOf(e))
		} else {
			h.give(topic, s, m, sharedOf(e))
		}
	}
	if herr != nil {
		return fmt.Errorf("hub: catching up %q: %w", topic, herr)
	}
	return nil
}

// join makes s a member of topic. A new member that is catching up (from
// offset from) holds live entries until its history is given; an existing
// member is left as it is.
func (h *Hub) join(ctx context.Context, s *session.Session, topic string, catching bool, from uint64) (*member, bool, error) {
	if err := checkTopic(topic); err != nil {
		return nil, false, err
	}
	if st := s.State(); st >= session.Closing {
		return nil, false, s.Err()
	}
	h.mu.Lock()
	t := h.topics[topic]
	if t == nil {
		t = &hubTopic{members: map[*session.Session]*member{}}
		h.topics[topic] = t
		// The broker's deliver is called with the broker's lock held; it
		// takes ours. So never call the broker with ours held.
		h.mu.Unlock()
		topicState := t
		cancel, err := h.broker.Subscribe(ctx, topic, func(e Entry) { h.deliverTo(topicState, e) })
		h.mu.Lock()
		if err != nil {
			if h.topics[topic] == t && len(t.members) == 0 {
				delete(h.topics, topic)
			}
			h.mu.Unlock()
			return nil, false, fmt.Errorf("hub: subscribing to %q: %w", topic, err)
		}
		switch cur := h.topics[topic]; {
		case cur == t || cur == nil: // ours, or emptied and dropped meanwhile
			h.topics[topic] = t
			t.cancel = cancel
		default: // another joiner made the topic meanwhile: use theirs
			go cancel()
			t = cur
		}
	}
	if st := s.State(); st >= session.Closing {
		// Freed (and dropped from the hub) while the broker subscribed:
		// joining now would keep it here for good.
		if len(t.members) == 0 && h.topics[topic] == t {
			delete(h.topics, topic)
			if t.cancel != nil {
				go t.cancel()
			}
		}
		h.mu.Unlock()
		return nil, false, s.Err()
	}
	m := t.members[s]
	isNew := m == nil
	if isNew {
		m = &member{topic: topic, next: h.joined[s]}
		if catching {
			m.last = from
			if t.catching == nil {
				t.catching = map[*session.Session]*[]Entry{}
			}
			t.catching[s] = new([]Entry)
		}
		t.members[s] = m
		h.joined[s] = m
	}
	h.mu.Unlock()
	if isNew && h.onPresence != nil {
		h.onPresence(PresenceEvent{Topic: topic, Session: s, Joined: true})
	}
	return m, isNew, nil
}

// deliver fans an entry out to this node's members of its topic.
func (h *Hub) deliver(e Entry) {
	h.mu.Lock()
	t := h.topics[e.Topic]
	h.mu.Unlock()
	if t != nil {
		h.deliverTo(t, e)
	}
}

// A fan-out to at least fanOutYieldMembers members offers an entry to
// fanOutChunk of them at a time and lets other goroutines run between
// chunks (the hub's lock released meanwhile): the transports write what
// was offered while those sessions are still in the CPU's cache, instead
// of after the last member's offer. With one core, 10,000 offers made
// first delayed every delivery by their ~5 ms and had each session's
// queue fetched from memory twice. Not in a burst (an entry within
// fanOutBurstGap of the topic's last): there, writers that wait until the
// burst is offered write many messages at once, where a turn per chunk
// would make them write one at a time (event-stream fan-out of 50-message
// bursts to 1,000 sessions fell to half).
// (Variables so that tests can make every fan-out yield.)
var (
	fanOutChunk        = 128
	fanOutYieldMembers = 2048
	fanOutBurstGap     = time.Millisecond
)

func (h *Hub) deliverTo(t *hubTopic, e Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.topics[e.Topic] != t {
		return
	}
	// One Shared for every member: its encodings are made once per wire
	// format, by whichever member's transport needs each first.
	sh := sharedOf(e)
	now := time.Now()
	yield := len(t.members) >= fanOutYieldMembers && now.Sub(t.lastDelivery) > fanOutBurstGap
	t.lastDelivery = now
	n := 0
	for s, m := range t.members {
		if n++; yield && n%fanOutChunk == 0 {
			h.mu.Unlock()
			runtime.Gosched()
			h.mu.Lock()
			if h.topics[e.Topic] != t {
				return // emptied meanwhile: its members left
			}
			if t.members[s] != m {
				continue // left meanwhile
			}
		}
		var held *[]Entry
		if len(t.catching) > 0 {
			held = t.catching[s]
		}
		switch {
		case held != nil: // in order after its history, gaps too
			*held = append(*held, e)
		case e.Gap:
			// Messages this member should have had are lost: its client
			// must resynchronise the topic, and is told so, never left short.
			h.notifyGap(s, e.Topic, sh)
		default:
			h.give(e.Topic, s, m, sh)
		}
	}
}

// sharedOf is what every session is given for an entry.
func sharedOf(e Entry) *session.Shared {
	return &session.Shared{Topic: e.Topic, Offset: e.Offset, Gap: e.Gap, Data: e.Payload}
}

// give hands one message to one member, once; h.mu is held.
func (h *Hub) give(topic string, s *session.Session, m *member, sh *session.Shared) {
	if sh.Offset <= m.last {
		return
	}
	m.last = sh.Offset
	if err := s.OfferShared(sh); err != nil {
		// Closed, or closed just now as a slow consumer: it leaves.
		h.leaveLocked(s, topic)
	}
}

// notifyGap sends s's client the gap notice sh for topic; h.mu is held.
func (h *Hub) notifyGap(s *session.Session, topic string, sh *session.Shared) {
	if err := s.OfferShared(sh); err != nil {
		h.leaveLocked(s, topic)
	}
}

// Unsubscribe removes s from topic. Its client is told (in order with its
// messages) to forget its offset in the topic, so that a later session does
// not replay what was published after it left.
func (h *Hub) Unsubscribe(s *session.Session, topic string) {
	h.mu.Lock()
	left := h.leaveLocked(s, topic)
	if left {
		_ = s.OfferShared(&session.Shared{Topic: topic, Left: true})
	}
	h.mu.Unlock()
	if left && h.onPresence != nil {
		h.onPresence(PresenceEvent{Topic: topic, Session: s, Joined: false})
	}
}

// leaveLocked removes s from topic; a topic with no member here stops its
// broker subscription.
func (h *Hub) leaveLocked(s *session.Session, topic string) bool {
	t := h.topics[topic]
	if t == nil || t.members[s] == nil {
		return false
	}
	m := t.members[s]
	delete(t.members, s)
	delete(t.catching, s)
	switch head := h.joined[s]; {
	case head == m && m.next == nil:
		delete(h.joined, s)
	case head == m:
		h.joined[s] = m.next
	default:
		for p := head; p != nil; p = p.next {
			if p.next == m {
				p.next = m.next
				break
			}
		}
	}
	if len(t.members) == 0 {
		delete(h.topics, topic)
		if t.cancel != nil {
			// The broker's lock may be held by our caller (deliver): cancel
			// from a goroutine of its own.
			go t.cancel()
		}
	}
	return true
}

// drop removes a closing session from every topic.
func (h *Hub) drop(s *session.Session) {
	h.mu.Lock()
	topics := h.topicsLocked(s)
	for _, topic := range topics {
		h.leaveLocked(s, topic)
	}
	h.mu.Unlock()
	if h.onPresence != nil {
		for _, topic := range topics {
			h.onPresence(PresenceEvent{Topic: topic, Session: s, Joined: false})
		}
	}
}

// Publish sends payload to everyone subscribed to topic, on every node, and
// returns its offset in the topic's history.
func (h *Hub) Publish(ctx context.Context, topic, payload string) (uint64, error) {
	if err := checkTopic(topic); err != nil {
		return 0, err
	}
	if !utf8.ValidString(payload) {
		return 0, session.ErrInvalidUTF8
	}
	off, err := h.broker.Publish(ctx, topic, payload)
	if err != nil {
		return 0, fmt.Errorf("hub: publishing to %q: %w", topic, err)
	}
	return off, nil
}

// Members lists this node's sessions subscribed to topic (presence), by ID.
func (h *Hub) Members(topic string) []*session.Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[topic]
	if t == nil {
		return nil
	}
	out := make([]*session.Session, 0, len(t.members))
	for s := range t.members {
		if s.State() < session.Closing { // one closing leaves at its next delivery or when freed
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// Topics lists the topics s is subscribed to.
func (h *Hub) Topics(s *session.Session) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.topicsLocked(s)
	sort.Strings(out)
	return out
}

// topicsLocked lists the topics s is subscribed to, in no order.
func (h *Hub) topicsLocked(s *session.Session) []string {
	var out []string
	for m := h.joined[s]; m != nil; m = m.next {
		out = append(out, m.topic)
	}
	return out
}
