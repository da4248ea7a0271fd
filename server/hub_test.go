package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
)

// hubFixture opens n sessions (negotiated and opened by a first send), each
// with its client.
func hubFixture(t *testing.T, n int, opts Options) (*testServer, []*testclient.Client, []*session.Session) {
	t.Helper()
	rc := newRecorder()
	ts := newTestServer(t, rc, opts)
	var clients []*testclient.Client
	var sessions []*session.Session
	for i := 0; i < n; i++ {
		c := ts.negotiate(t)
		if _, err := c.Send(testCtx(t), "hello"); err != nil { // a send opens the session
			t.Fatal(err)
		}
		clients = append(clients, c)
		sessions = append(sessions, rc.session(t))
	}
	return ts, clients, sessions
}

func TestHubFanOutInOrderOnce(t *testing.T) {
	ts, clients, sessions := hubFixture(t, 3, Options{})
	hub := ts.Hub()
	for _, s := range sessions[:2] {
		if err := hub.Subscribe(testCtx(t), s, "room"); err != nil {
			t.Fatal(err)
		}
	}
	hub.Subscribe(testCtx(t), sessions[0], "room") // twice is once
	for i := 0; i < 20; i++ {
		if _, err := hub.Publish(testCtx(t), "room", fmt.Sprint("news ", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients[:2] {
		got := pollFor(t, c, 20)
		for j, m := range got {
			if m != fmt.Sprint("news ", j) {
				t.Fatalf("client %d message %d = %q", i, j, m)
			}
		}
		if len(got) != 20 {
			t.Fatalf("client %d got %d", i, len(got))
		}
	}
	if n, _ := sessions[2].Queued(); n != 0 {
		t.Fatalf("a session not subscribed got %d messages", n)
	}
	if got := hub.Topics(sessions[0]); len(got) != 1 || got[0] != "room" {
		t.Fatalf("Topics = %v", got)
	}
}

// A broadcast's text is one string in every session's queue: encoded once,
// shared, not copied per session.
func TestHubSharesOnePayload(t *testing.T) {
	ts, _, sessions := hubFixture(t, 3, Options{})
	for _, s := range sessions {
		ts.Hub().Subscribe(testCtx(t), s, "t")
	}
	ts.Hub().Publish(testCtx(t), "t", strings.Repeat("shared ", 10))
	var ptrs []*byte
	var shared []*session.Shared
	for _, s := range sessions {
		tr := &captureTransport{}
		if err := s.Attach(tr); err != nil {
			t.Fatal(err)
		}
		b, err := s.Pull(testCtx(t), tr, 0, 1<<20, nil)
		if err != nil || len(b.Messages) != 1 {
			t.Fatalf("pull: %+v %v", b, err)
		}
		ptrs = append(ptrs, unsafe.StringData(b.Messages[0].Data))
		shared = append(shared, b.Messages[0].Shared)
		s.Detach(tr)
	}
	if ptrs[0] != ptrs[1] || ptrs[1] != ptrs[2] {
		t.Fatalf("payload copied per session: %v", ptrs)
	}
	// One Shared, so its wire encodings are made once for all three.
	if shared[0] == nil || shared[0] != shared[1] || shared[1] != shared[2] || shared[0].Topic != "t" {
		t.Fatalf("a Shared per session: %v", shared)
	}
}

type captureTransport struct{}

func (captureTransport) Name() string              { return "capture" }
func (captureTransport) Wake()                     {}
func (captureTransport) Kick(session.Code, string) {}

// A session that cannot keep up is closed with 4009; the others get every
// message and the publisher never waits.
func TestHubSlowConsumerCutOff(t *testing.T) {
	ts, clients, sessions := hubFixture(t, 2, Options{Session: session.Config{MaxQueueMessages: 5}})
	hub := ts.Hub()
	for _, s := range sessions {
		hub.Subscribe(testCtx(t), s, "firehose")
	}
	// Client 0 keeps up (polls and acks as it goes); client 1 never polls.
	var got []string
	for i := 0; i < 12; i++ {
		hub.Publish(testCtx(t), "firehose", fmt.Sprint(i))
		got = append(got, pollFor(t, clients[0], 1)...)
	}
	if len(got) != 12 || got[11] != "11" {
		t.Fatalf("the fast client got %q", got)
	}
	var ce *session.CloseError
	if !errors.As(sessions[1].Err(), &ce) || ce.Code != session.CodeSlowConsumer {
		t.Fatalf("slow session: %v", sessions[1].Err())
	}
	if m := hub.Members("firehose"); len(m) != 1 || m[0] != sessions[0] {
		t.Fatalf("members after the cut: %d", len(m))
	}
	// Its client learns why: the messages that fitted, then the close.
	var tail []string
	var closed *int
	for closed == nil {
		res, err := clients[1].Poll(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		tail = append(tail, res.Messages...)
		if res.Close != nil {
			closed = &res.Close.Code
		}
	}
	if len(tail) != 5 || *closed != int(session.CodeSlowConsumer) {
		t.Fatalf("slow client got %q then close %d", tail, *closed)
	}
}

func TestHubUnsubscribePresenceAndClose(t *testing.T) {
	var mu sync.Mutex
	var events []string
	ts, _, sessions := hubFixture(t, 2, Options{OnPresence: func(e PresenceEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("%s %v", e.Topic, e.Joined))
	}})
	hub := ts.Hub()
	hub.Subscribe(testCtx(t), sessions[0], "a")
	hub.Subscribe(testCtx(t), sessions[1], "a")
	hub.Subscribe(testCtx(t), sessions[1], "b")
	if n := len(hub.Members("a")); n != 2 {
		t.Fatalf("members of a: %d", n)
	}
	hub.Unsubscribe(sessions[0], "a")
	hub.Publish(testCtx(t), "a", "only for 1")
	if n, _ := sessions[0].Queued(); n != 1 { // the notice that it left "a", nothing else
		t.Fatalf("an unsubscribed session has %d messages queued", n)
	}
	// A session that ends leaves every topic.
	sessions[1].Terminate(session.CodeNormal, "done")
	if len(hub.Members("a"))+len(hub.Members("b")) != 0 {
		t.Fatal("a freed session is still a member")
	}
	mu.Lock()
	defer mu.Unlock()
	want := "a true,a true,b true,a false"
	if got := strings.Join(events[:4], ","); got != want {
		t.Fatalf("presence events %q, want %q then b/a false", got, want)
	}
	if len(events) != 6 {
		t.Fatalf("events %v", events)
	}
	if err := hub.Subscribe(testCtx(t), sessions[1], "a"); err == nil {
		t.Fatal("a closed session subscribed")
	}
	if err := hub.Subscribe(testCtx(t), sessions[0], ""); !errors.Is(err, ErrBadTopic) {
		t.Fatalf("empty topic: %v", err)
	}
}

// A session coming from elsewhere catches up from the last offset its
// client had: the history after it, then live messages, none twice.
func TestHubSubscribeFromOffset(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	broker := &MemoryBroker{MaxHistory: 4, Now: func() time.Time { return clock }}
	ts, clients, sessions := hubFixture(t, 1, Options{Broker: broker})
	hub := ts.Hub()
	offs := []uint64{0}
	for i := 1; i <= 6; i++ {
		off, err := hub.Publish(testCtx(t), "feed", fmt.Sprint("m", i))
		if err != nil || off <= offs[i-1] {
			t.Fatalf("publish %d: offset %d after %d, %v", i, off, offs[i-1], err)
		}
		offs = append(offs, off)
	}
	// History keeps the newest four (3–6); the client had up to 4.
	if err := hub.SubscribeFrom(testCtx(t), sessions[0], "feed", offs[4]); err != nil {
		t.Fatal(err)
	}
	hub.Publish(testCtx(t), "feed", "m7")
	if got := strings.Join(pollFor(t, clients[0], 3), ","); got != "m5,m6,m7" {
		t.Fatalf("caught up with %q", got)
	}
	// Too far back: told plainly, and subscribed from now.
	if err := hub.SubscribeFrom(testCtx(t), sessions[0], "other", 1); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("from offset 1, not one of this history's: %v", err)
	}
	_, moreClients, more := hubFixture(t, 1, Options{Broker: broker})
	if err := more[0].Send(testCtx(t), "before"); err != nil {
		t.Fatal(err)
	}
	if err := hub.SubscribeFrom(testCtx(t), more[0], "feed", offs[1]); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("from offset 1 with history from 3: %v", err)
	}
	hub.Publish(testCtx(t), "feed", "m8")
	// The client is told, in order: a gap in "feed", then what comes live.
	if got := strings.Join(pollFor(t, moreClients[0], 2), ","); got != "before,m8" {
		t.Fatalf("after the gap: %q", got)
	}
	if g := moreClients[0].Gaps; len(g) != 1 || g[0] != "feed" {
		t.Fatalf("gap notices %q", g)
	}
	// History also ends by age.
	clock = clock.Add(10 * time.Minute)
	if _, err := broker.History(testCtx(t), "feed", offs[6], 0); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("aged history: %v", err)
	}
}

// Publishing while sessions subscribe and leave: every subscriber still
// gets, in order, every message published after it joined.
func TestHubConcurrentPublishAndSubscribe(t *testing.T) {
	ts, _, sessions := hubFixture(t, 4, Options{Session: session.Config{MaxQueueMessages: 4096}})
	hub := ts.Hub()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func(s *session.Session) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				hub.Subscribe(testCtx(t), s, "x")
				if i%10 == 9 {
					hub.Unsubscribe(s, "x")
				}
			}
			hub.Subscribe(testCtx(t), s, "x")
		}(s)
	}
	for i := 0; i < 500; i++ {
		hub.Publish(testCtx(t), "x", fmt.Sprint(i))
	}
	wg.Wait()
	for _, s := range sessions {
		tr := &captureTransport{}
		s.Attach(tr)
		b, _ := s.Pull(testCtx(t), tr, 0, 1<<30, nil)
		prev := -1
		for _, m := range b.Messages {
			if m.Notice() { // it left the topic here
				continue
			}
			var n int
			fmt.Sscan(m.Data, &n)
			if n <= prev {
				t.Fatalf("out of order: %d after %d", n, prev)
			}
			prev = n
		}
		s.Detach(tr)
	}
}

// topicNode is a server whose handler follows "feed" for every session and
// then says "ready".
func topicNode(t *testing.T, broker Broker) *testServer {
	t.Helper()
	var ts *testServer
	ready := make(chan struct{})
	ts = newTestServer(t, HandlerFunc(func(s *session.Session) {
		<-ready
		if err := ts.Hub().Subscribe(s.Context(), s, "feed"); err != nil && !errors.Is(err, ErrHistoryGone) {
			t.Errorf("subscribe: %v", err)
		}
		_ = s.Send(s.Context(), "ready")
		<-s.Context().Done()
	}), Options{Broker: broker})
	close(ready)
	return ts
}

// The client keeps each topic's offset from the publish frames; after its
// session is lost (here: its node went away), the new session on another
// node resumes the topic from there — the application only subscribes.
func TestTopicOffsetsCarriedByTheClient(t *testing.T) {
	broker := &MemoryBroker{}
	a, b := topicNode(t, broker), topicNode(t, broker)
	c := a.negotiate(t)
	if _, err := c.Send(testCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	if got := pollFor(t, c, 1); got[0] != "ready" {
		t.Fatalf("first %q", got)
	}
	for _, m := range []string{"m1", "m2"} {
		if _, err := a.Hub().Publish(testCtx(t), "feed", m); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(pollFor(t, c, 2), ","); got != "m1,m2" {
		t.Fatalf("on node A: %q", got)
	}
	had := c.TopicOffsets["feed"]
	a.Server.Close() // node A goes; what is published meanwhile waits in the history
	for _, m := range []string{"m3", "m4"} {
		if _, err := b.Hub().Publish(testCtx(t), "feed", m); err != nil {
			t.Fatal(err)
		}
	}
	c.Base = b.base
	if err := c.Renegotiate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(testCtx(t), "hello again"); err != nil {
		t.Fatal(err)
	}
	// Published while the new session may or may not have subscribed yet:
	// it comes from the history or live, once, after m3 and m4 either way.
	b.Hub().Publish(testCtx(t), "feed", "m5")
	var got []string
	for len(got) < 4 {
		got = append(got, pollFor(t, c, 1)...)
	}
	var feed []string
	for _, m := range got {
		if m != "ready" {
			feed = append(feed, m)
		}
	}
	if len(got) != 4 || strings.Join(feed, ",") != "m3,m4,m5" || c.TopicOffsets["feed"] <= had {
		t.Fatalf("on node B: %q, offset %d (had %d)", got, c.TopicOffsets["feed"], had)
	}
	if len(c.Gaps) != 0 {
		t.Fatalf("gaps %q", c.Gaps)
	}
}

// An offset the history no longer reaches (or never had) gets a gap notice
// for the topic, then live messages: never silence, never a session loop.
func TestTopicOffsetTooOld(t *testing.T) {
	broker := &MemoryBroker{MaxHistory: 2}
	n := topicNode(t, broker)
	for i := 0; i < 5; i++ {
		n.Hub().Publish(testCtx(t), "feed", fmt.Sprint("old ", i))
	}
	c := &testclient.Client{HTTP: n.http.Client(), Base: n.base, TopicOffsets: map[string]uint64{"feed": 1}}
	if err := c.Renegotiate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(testCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	if got := pollFor(t, c, 1); got[0] != "ready" || len(c.Gaps) != 1 || c.Gaps[0] != "feed" {
		t.Fatalf("got %q, gaps %q", got, c.Gaps)
	}
	if _, ok := c.TopicOffsets["feed"]; ok {
		t.Fatal("the client kept an offset the server said is gone")
	}
}

func TestNegotiateRefusesBadTopics(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	for _, v := range []string{`[1]`, `{"a":1}`, `{"a":"01"}`, `{"a":"-1"}`, `{"":"1"}`, `{"a":"18446744073709551616"}`, strings.Repeat("x", 9000)} {
		resp, err := ts.http.Client().Post(ts.base+"/negotiate?"+url.Values{"topics": {v}}.Encode(), "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"bad_topics"`) {
			t.Fatalf("topics=%.40s: %d %s", v, resp.StatusCode, body)
		}
	}
}

// FuzzParseTopicOffsets: whatever a client sends as topics is either refused
// or gives valid topic names, within the bounds.
func FuzzParseTopicOffsets(f *testing.F) {
	for _, s := range []string{`{"room:1":"7412281402982400001"}`, `{"a":"0","b":"18446744073709551615"}`, `{}`, `{"a":1}`, `[]`, `{"\u2028":"5"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := parseTopicOffsets(v)
		if err != nil {
			return
		}
		if len(got) > maxTopicOffsets || len(v) > maxTopicOffsetsBytes {
			t.Fatalf("%q accepted past the bounds: %d topics", v, len(got))
		}
		for topic := range got {
			if checkTopic(topic) != nil {
				t.Fatalf("%q accepted a bad topic %q", v, topic)
			}
		}
	})
}

// A session's topics are a list threaded through its memberships: leaving
// one from its head, middle or end leaves the others, and the hub forgets a
// session that follows nothing.
func TestHubTopicsOfASession(t *testing.T) {
	ts, _, sessions := hubFixture(t, 2, Options{})
	hub := ts.Hub()
	s, other := sessions[0], sessions[1]
	for _, topic := range []string{"a", "b", "c", "d", "e"} {
		if err := hub.Subscribe(testCtx(t), s, topic); err != nil {
			t.Fatal(err)
		}
	}
	hub.Subscribe(testCtx(t), other, "c")
	for _, step := range []struct{ leave, want string }{
		{"c", "a,b,d,e"}, {"e", "a,b,d"}, {"a", "b,d"}, {"x", "b,d"}, {"b", "d"},
	} {
		hub.Unsubscribe(s, step.leave)
		if got := strings.Join(hub.Topics(s), ","); got != step.want {
			t.Fatalf("after leaving %s: Topics = %q, want %q", step.leave, got, step.want)
		}
	}
	if got := strings.Join(hub.Topics(other), ","); got != "c" {
		t.Fatalf("the other session's topics: %q", got)
	}
	hub.Unsubscribe(s, "d")
	other.Terminate(session.CodeNormal, "done")
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if len(hub.joined) != 0 || len(hub.topics) != 0 {
		t.Fatalf("the hub keeps %d sessions and %d topics with no member", len(hub.joined), len(hub.topics))
	}
}

// A fan-out to more members than one chunk lets the hub's lock go between
// chunks. Members that come and go meanwhile still get each message at
// most once and in order; one that left gets nothing after its notice;
// one that stayed gets everything.
func TestHubFanOutAcrossChunks(t *testing.T) {
	chunk, members, gap := fanOutChunk, fanOutYieldMembers, fanOutBurstGap
	fanOutChunk, fanOutYieldMembers, fanOutBurstGap = 16, 1, -1 // every fan-out yields
	t.Cleanup(func() { fanOutChunk, fanOutYieldMembers, fanOutBurstGap = chunk, members, gap })
	stayers, churners, leavers := 2*fanOutChunk+5, 40, 40
	const published = 60
	ts, _, sessions := hubFixture(t, stayers+churners+leavers, Options{Session: session.Config{MaxQueueMessages: 4096}})
	hub := ts.Hub()
	for _, s := range sessions {
		if err := hub.Subscribe(testCtx(t), s, "x"); err != nil {
			t.Fatal(err)
		}
	}
	churn, leave := sessions[stayers:stayers+churners], sessions[stayers+churners:]
	var wg sync.WaitGroup
	for _, s := range churn {
		wg.Add(1)
		go func(s *session.Session) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				hub.Unsubscribe(s, "x")
				if err := hub.Subscribe(testCtx(t), s, "x"); err != nil {
					t.Error(err)
				}
			}
		}(s)
	}
	for _, s := range leave {
		wg.Add(1)
		go func(s *session.Session) {
			defer wg.Done()
			hub.Unsubscribe(s, "x")
		}(s)
	}
	for i := 0; i < published; i++ {
		if _, err := hub.Publish(testCtx(t), "x", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i, s := range sessions {
		tr := &captureTransport{}
		s.Attach(tr)
		b, err := s.Pull(testCtx(t), tr, 0, 1<<30, nil)
		s.Detach(tr)
		if err != nil {
			t.Fatal(err)
		}
		prev, got, left := -1, 0, false
		for _, m := range b.Messages {
			if m.Notice() {
				left = true
				continue
			}
			var n int
			if _, err := fmt.Sscan(m.Data, &n); err != nil {
				continue // the fixture's own messages
			}
			if n <= prev {
				t.Fatalf("session %d: %d after %d", i, n, prev)
			}
			if left && i >= stayers+churners {
				t.Fatalf("session %d got %d after it left", i, n)
			}
			prev, got = n, got+1
		}
		if i < stayers && got != published {
			t.Fatalf("session %d stayed and got %d of %d", i, got, published)
		}
	}
}
