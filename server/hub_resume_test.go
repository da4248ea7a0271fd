package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
)

// Regression tests from a review of topic resume: each failed before its fix.

// faultBroker is a MemoryBroker whose Subscribe can fail once and whose
// History can fail, or wait for the test.
type faultBroker struct {
	*MemoryBroker
	mu           sync.Mutex
	subscribeErr error         // returned by the next Subscribe, once
	historyErr   error         // returned by every History
	historyGate  chan struct{} // History waits for it to close, if set
	historyIn    chan struct{} // History says it was called, if set
}

func (b *faultBroker) Subscribe(ctx context.Context, topic string, deliver func(Entry)) (func(), error) {
	b.mu.Lock()
	err := b.subscribeErr
	b.subscribeErr = nil
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return b.MemoryBroker.Subscribe(ctx, topic, deliver)
}

func (b *faultBroker) History(ctx context.Context, topic string, after uint64, limit int) ([]Entry, error) {
	if b.historyIn != nil {
		b.historyIn <- struct{}{}
	}
	if b.historyGate != nil {
		<-b.historyGate
	}
	if b.historyErr != nil {
		return nil, b.historyErr
	}
	return b.MemoryBroker.History(ctx, topic, after, limit)
}

// subscribeCatchingUp starts s's Subscribe to topic and returns once it is
// catching up, waiting for its history; finish lets the history be read and
// returns Subscribe's error.
func subscribeCatchingUp(t *testing.T, ts *testServer, fb *faultBroker, s *session.Session, topic string) (finish func() error) {
	t.Helper()
	fb.historyGate, fb.historyIn = make(chan struct{}), make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- ts.Hub().Subscribe(testCtx(t), s, topic) }()
	<-fb.historyIn
	return func() error {
		close(fb.historyGate)
		return <-done
	}
}

// resumer opens a session whose client says it had offset of topic.
func resumer(t *testing.T, ts *testServer, rc *recorder, topic string, offset uint64) (*testclient.Client, *session.Session) {
	t.Helper()
	c := &testclient.Client{HTTP: ts.http.Client(), Base: ts.base, TopicOffsets: map[string]uint64{topic: offset}}
	if err := c.Renegotiate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(testCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	return c, rc.session(t)
}

func publishAll(t *testing.T, h *Hub, topic string, msgs ...string) []uint64 {
	t.Helper()
	var offs []uint64
	for _, m := range msgs {
		off, err := h.Publish(testCtx(t), topic, m)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
	}
	return offs
}

// An application that treats Subscribe's error as a failure (the chat
// example does) must not see one when the client was told with a gap.
func TestResumeGoneIsNotAnError(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{Broker: &MemoryBroker{MaxHistory: 1}})
	publishAll(t, ts.Hub(), "feed", "a", "b", "c")
	c, s := resumer(t, ts, rc, "feed", 1)
	if err := ts.Hub().Subscribe(testCtx(t), s, "feed"); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	publishAll(t, ts.Hub(), "feed", "live")
	if got := pollFor(t, c, 1); got[0] != "live" || len(c.Gaps) != 1 {
		t.Fatalf("got %q, gaps %q", got, c.Gaps)
	}
}

// An offset past the newest (another history's) gets a gap, then every live
// message: it must not mute the topic.
func TestResumePastNewestStillLive(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	offs := publishAll(t, ts.Hub(), "feed", "a")
	c, s := resumer(t, ts, rc, "feed", offs[0]+1000)
	if err := ts.Hub().Subscribe(testCtx(t), s, "feed"); err != nil {
		t.Fatal(err)
	}
	publishAll(t, ts.Hub(), "feed", "l1", "l2", "l3")
	if got := strings.Join(pollFor(t, c, 3), ","); got != "l1,l2,l3" || len(c.Gaps) != 1 {
		t.Fatalf("got %q, gaps %q", got, c.Gaps)
	}
}

// Two Subscribes of one session at once, one catching up: each message once,
// in order.
func TestResumeConcurrentSubscribes(t *testing.T) {
	rc := newRecorder()
	fb := &faultBroker{MemoryBroker: &MemoryBroker{}}
	ts := newTestServer(t, rc, Options{Broker: fb})
	offs := publishAll(t, ts.Hub(), "feed", "m1", "m2")
	c, s := resumer(t, ts, rc, "feed", offs[0])
	finish := subscribeCatchingUp(t, ts, fb, s, "feed") // its history not yet read
	if err := ts.Hub().Subscribe(testCtx(t), s, "feed"); err != nil {
		t.Fatal(err)
	}
	publishAll(t, ts.Hub(), "feed", "m3")
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pollFor(t, c, 2), ","); got != "m2,m3" {
		t.Fatalf("got %q", got)
	}
	publishAll(t, ts.Hub(), "feed", "m4")
	if got := pollFor(t, c, 1); strings.Join(got, ",") != "m4" {
		t.Fatalf("then %q", got)
	}
}

// The client's offset is used once, also by an explicit SubscribeFrom; a
// resubscription after leaving starts from now.
func TestResumeOffsetUsedOnce(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	offs := publishAll(t, ts.Hub(), "feed", "m1", "m2")
	c, s := resumer(t, ts, rc, "feed", offs[0])
	if err := ts.Hub().SubscribeFrom(testCtx(t), s, "feed", offs[0]); err != nil {
		t.Fatal(err)
	}
	ts.Hub().Unsubscribe(s, "feed")
	if err := ts.Hub().Subscribe(testCtx(t), s, "feed"); err != nil {
		t.Fatal(err)
	}
	publishAll(t, ts.Hub(), "feed", "m3")
	if got := strings.Join(pollFor(t, c, 2), ","); got != "m2,m3" {
		t.Fatalf("got %q", got)
	}
}

// A join that fails (the broker is down a moment) keeps the client's offset
// for the application's retry.
func TestResumeSurvivesFailedJoin(t *testing.T) {
	rc := newRecorder()
	fb := &faultBroker{MemoryBroker: &MemoryBroker{}}
	ts := newTestServer(t, rc, Options{Broker: fb})
	offs := publishAll(t, ts.Hub(), "feed", "m1", "m2")
	c, s := resumer(t, ts, rc, "feed", offs[0])
	fb.subscribeErr = errors.New("broker down a moment")
	if err := ts.Hub().Subscribe(testCtx(t), s, "feed"); err == nil {
		t.Fatal("the failed join succeeded")
	}
	if err := ts.Hub().Subscribe(testCtx(t), s, "feed"); err != nil {
		t.Fatal(err)
	}
	if got := pollFor(t, c, 1); got[0] != "m2" {
		t.Fatalf("got %q", got)
	}
}

// A history that fails for another reason (Redis timing out) is a gap too:
// the client is told, never left short in silence.
func TestResumeHistoryErrorIsAGap(t *testing.T) {
	rc := newRecorder()
	fb := &faultBroker{MemoryBroker: &MemoryBroker{}, historyErr: errors.New("timeout")}
	ts := newTestServer(t, rc, Options{Broker: fb})
	offs := publishAll(t, ts.Hub(), "feed", "m1", "m2")
	c, s := resumer(t, ts, rc, "feed", offs[0])
	if err := ts.Hub().Subscribe(testCtx(t), s, "feed"); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("Subscribe: %v", err)
	}
	publishAll(t, ts.Hub(), "feed", "m3")
	if got := pollFor(t, c, 1); got[0] != "m3" || len(c.Gaps) != 1 {
		t.Fatalf("got %q, gaps %q", got, c.Gaps)
	}
}

// Leaving during catch-up: nothing of the history follows. Leaving tells the
// client to forget its offset.
func TestUnsubscribeDuringCatchUpAndForget(t *testing.T) {
	rc := newRecorder()
	fb := &faultBroker{MemoryBroker: &MemoryBroker{}}
	ts := newTestServer(t, rc, Options{Broker: fb})
	offs := publishAll(t, ts.Hub(), "feed", "m1", "m2")
	c, s := resumer(t, ts, rc, "feed", offs[0])
	finish := subscribeCatchingUp(t, ts, fb, s, "feed") // its history not yet read
	ts.Hub().Unsubscribe(s, "feed")
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(testCtx(t), "marker"); err != nil {
		t.Fatal(err)
	}
	if got := pollFor(t, c, 1); got[0] != "marker" {
		t.Fatalf("history after leaving: %q", got)
	}
	// A live member that leaves: its client drops the topic's offset.
	c2, s2 := resumer(t, ts, rc, "other", 0)
	ts.Hub().Subscribe(testCtx(t), s2, "other")
	publishAll(t, ts.Hub(), "other", "x")
	pollFor(t, c2, 1)
	if _, ok := c2.TopicOffsets["other"]; !ok {
		t.Fatal("no offset kept")
	}
	ts.Hub().Unsubscribe(s2, "other")
	s2.Send(testCtx(t), "after leaving")
	pollFor(t, c2, 1)
	if _, ok := c2.TopicOffsets["other"]; ok {
		t.Fatalf("offset kept after leaving: %v", c2.TopicOffsets)
	}
}

// A gap that arrives while a member catches up goes out in order, after the
// history and live messages that came before it.
func TestGapWhileCatchingUpInOrder(t *testing.T) {
	rc := newRecorder()
	fb := &faultBroker{MemoryBroker: &MemoryBroker{}}
	ts := newTestServer(t, rc, Options{Broker: fb})
	offs := publishAll(t, ts.Hub(), "feed", "m1", "m2")
	c, s := resumer(t, ts, rc, "feed", offs[0])
	finish := subscribeCatchingUp(t, ts, fb, s, "feed") // its history not yet read
	publishAll(t, ts.Hub(), "feed", "m3")
	ts.Hub().deliver(Entry{Topic: "feed", Offset: offs[1] + 100, Gap: true})
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for len(kinds) < 3 {
		res, err := c.Poll(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range res.Frames {
			kinds = append(kinds, fmt.Sprintf("%c:%s", f.Kind, f.Data))
		}
	}
	if got := strings.Join(kinds, ","); got != "p:m2,p:m3,g:" {
		t.Fatalf("frames %s", got)
	}
}
