package session_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cometkit/cometkit/internal/fakeclock"
	"github.com/cometkit/cometkit/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTransport records what the session tells it.
type fakeTransport struct {
	name   string
	wakes  chan struct{}
	kicked chan session.Code
}

func newFake(name string) *fakeTransport {
	return &fakeTransport{name: name, wakes: make(chan struct{}, 1), kicked: make(chan session.Code, 1)}
}

func (f *fakeTransport) Name() string { return f.name }
func (f *fakeTransport) Wake() {
	select {
	case f.wakes <- struct{}{}:
	default:
	}
}
func (f *fakeTransport) Kick(code session.Code, _ string) { f.kicked <- code }

func (f *fakeTransport) woken() bool {
	select {
	case <-f.wakes:
		return true
	default:
		return false
	}
}

type fixture struct {
	s      *session.Session
	clock  *fakeclock.Clock
	cfg    *session.Config
	opened atomic.Int32
	closed atomic.Int32
	flush  atomic.Int32
	full   chan struct{} // a send each time a message waits for inbox room
}

func newFixture(t *testing.T, cfg session.Config) *fixture {
	f := &fixture{clock: fakeclock.New(), full: make(chan struct{}, 16)}
	cfg.Clock = f.clock
	c := cfg.Defaults()
	f.cfg = &c
	hooks := &session.Hooks{
		Open:    func(*session.Session) { f.opened.Add(1) },
		Flushed: func(*session.Session) { f.flush.Add(1) },
		Closed:  func(*session.Session) { f.closed.Add(1) },
		InboxFull: func(*session.Session) {
			select {
			case f.full <- struct{}{}:
			default:
			}
		},
	}
	f.s = session.New(session.NewID(), session.Info{RemoteAddr: "192.0.2.1:1234"}, f.cfg, hooks)
	t.Cleanup(func() { f.s.Terminate(session.CodeGoingAway, "test over") })
	return f
}

var ctx = context.Background()

func pull(t *testing.T, s *session.Session, tr session.Transport, after uint64) session.Batch {
	t.Helper()
	b, err := s.Pull(ctx, tr, after, 1<<20, nil)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	return b
}

func datas(ms []session.Message) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.Data)
	}
	return strings.Join(parts, ",")
}

func TestLifecycleAndReplayAcrossTransports(t *testing.T) {
	f := newFixture(t, session.Config{})
	s := f.s
	if s.State() != session.Connecting || len(s.ID()) != 36 {
		t.Fatalf("new session: %v %q", s.State(), s.ID())
	}
	// Messages sent before any transport attaches are kept.
	for _, m := range []string{"a", "b", "c"} {
		if err := s.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	lp := newFake("longpoll")
	if err := s.Attach(lp); err != nil {
		t.Fatal(err)
	}
	if s.State() != session.Open || f.opened.Load() != 1 || s.Transport() != "longpoll" {
		t.Fatalf("after attach: %v opened=%d %q", s.State(), f.opened.Load(), s.Transport())
	}
	if got := datas(pull(t, s, lp, 0).Messages); got != "a,b,c" {
		t.Fatalf("pull = %q", got)
	}
	// The client got only "a" before the connection broke; it comes back
	// on another transport acknowledging 1.
	ws := newFake("websocket")
	if err := s.Attach(ws); err != nil {
		t.Fatal(err)
	}
	if code := <-lp.kicked; code != session.CodeReplaced {
		t.Fatalf("old transport kicked with %v", code)
	}
	if _, err := s.Pull(ctx, lp, 0, 1<<20, nil); !errors.Is(err, session.ErrDetached) {
		t.Fatalf("pull by the replaced transport: %v", err)
	}
	if err := s.Ack(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := datas(pull(t, s, ws, 1).Messages); got != "b,c" {
		t.Fatalf("replay after ack 1 = %q", got)
	}
	if f.opened.Load() != 1 {
		t.Fatal("Open hook ran twice")
	}
	if err := s.Send(ctx, "d"); err != nil || !ws.woken() {
		t.Fatalf("send did not wake the attached transport (%v)", err)
	}
	if err := s.Ack(ctx, 5); !errors.Is(err, session.ErrAckAhead) {
		t.Fatalf("ack of unsent message: %v", err)
	}
	if err := s.Ack(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if n, b := s.Queued(); n != 0 || b != 0 {
		t.Fatalf("queued after full ack: %d, %d", n, b)
	}
}

func TestSendRejectsBadMessages(t *testing.T) {
	f := newFixture(t, session.Config{MaxMessageBytes: 4})
	if err := f.s.Send(ctx, "12345"); !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if err := f.s.Send(ctx, "\xff"); !errors.Is(err, session.ErrInvalidUTF8) {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	if f.s.State() != session.Connecting {
		t.Fatal("a refused message changed the session's state")
	}
}

func TestOverflowCloseByCountAndBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  session.Config
		msg  string
		fits int
	}{
		{"count", session.Config{MaxQueueMessages: 3}, "x", 3},
		{"bytes", session.Config{MaxQueueBytes: 10}, "abcd", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			tr := newFake("longpoll")
			f.s.Attach(tr)
			for i := 0; i < tc.fits; i++ {
				if err := f.s.Send(ctx, tc.msg); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			if err := f.s.Send(ctx, tc.msg); !errors.Is(err, session.ErrQueueFull) {
				t.Fatalf("overflowing send: %v", err)
			}
			var ce *session.CloseError
			if !errors.As(f.s.Err(), &ce) || ce.Code != session.CodeQueueOverflow || f.s.State() != session.Closing {
				t.Fatalf("after overflow: %v %v", f.s.State(), f.s.Err())
			}
			if f.s.Context().Err() == nil {
				t.Fatal("context not cancelled at close")
			}
			// What was accepted is still delivered, then the close.
			b := pull(t, f.s, tr, 0)
			if len(b.Messages) != tc.fits || b.Close == nil || b.Close.Code != session.CodeQueueOverflow {
				t.Fatalf("final batch: %d messages, close %v", len(b.Messages), b.Close)
			}
			if f.flush.Load() != 1 || !f.s.Flushed() {
				t.Fatal("Flushed hook not called when the close frame was pulled")
			}
		})
	}
}

func TestOverflowWaitBackpressure(t *testing.T) {
	f := newFixture(t, session.Config{MaxQueueMessages: 2, Overflow: session.OverflowWait})
	tr := newFake("longpoll")
	f.s.Attach(tr)
	f.s.Send(ctx, "1")
	f.s.Send(ctx, "2")
	// A caller that cannot wait gets its context's error; the session lives.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.s.Send(cancelled, "3"); !errors.Is(err, context.Canceled) {
		t.Fatalf("send with a done context: %v", err)
	}
	if f.s.State() != session.Open {
		t.Fatalf("state %v after a send gave up", f.s.State())
	}
	// A caller that waits gets through once the client acknowledges.
	done := make(chan error, 1)
	go func() { done <- f.s.Send(ctx, "3") }()
	select {
	case err := <-done:
		t.Fatalf("send returned (%v) with the queue still full", err)
	default:
	}
	if err := f.s.Ack(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := datas(pull(t, f.s, tr, 1).Messages); got != "2,3" {
		t.Fatalf("after backpressure: %q", got)
	}
}

func TestReceiveDedupGapAndBackpressure(t *testing.T) {
	f := newFixture(t, session.Config{MaxInbound: 2, MaxMessageBytes: 8})
	s := f.s
	acked, err := s.Receive(ctx, []session.Message{{Seq: 1, Data: "a"}, {Seq: 2, Data: "b"}})
	if err != nil || acked != 2 {
		t.Fatalf("receive: %d %v", acked, err)
	}
	// The inbox (2) is full: a retry of 1–2 plus a new 3 accepts nothing new
	// until Recv makes room, and gives up with its context.
	short, cancel := context.WithCancel(ctx)
	go func() {
		if m, _ := s.Recv(ctx); m != "a" {
			t.Errorf("Recv = %q", m)
		}
	}()
	acked, err = s.Receive(short, []session.Message{{Seq: 1, Data: "a"}, {Seq: 2, Data: "b"}, {Seq: 3, Data: "c"}})
	cancel()
	if err != nil || acked != 3 {
		t.Fatalf("receive after Recv made room: %d %v", acked, err)
	}
	short, cancel = context.WithCancel(ctx)
	cancel()
	if acked, err := s.Receive(short, []session.Message{{Seq: 4, Data: "d"}}); !errors.Is(err, context.Canceled) || acked != 3 {
		t.Fatalf("receive into a full inbox with a done context: %d %v", acked, err)
	}
	if _, err := s.Receive(ctx, []session.Message{{Seq: 9, Data: "z"}}); !errors.Is(err, session.ErrSeqGap) {
		t.Fatalf("gap: %v", err)
	}
	if _, err := s.Receive(ctx, []session.Message{{Seq: 4, Data: "123456789"}}); !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	for _, want := range []string{"b", "c"} {
		if m, err := s.Recv(ctx); m != want || err != nil {
			t.Fatalf("Recv = %q %v, want %q", m, err, want)
		}
	}
	// Messages accepted before a client close are read before the close.
	s.Receive(ctx, []session.Message{{Seq: 4, Data: "d"}})
	s.ClientClose(session.CodeNormal, "bye")
	if m, err := s.Recv(ctx); m != "d" || err != nil {
		t.Fatalf("Recv before close = %q %v", m, err)
	}
	var ce *session.CloseError
	if _, err := s.Recv(ctx); !errors.As(err, &ce) || !ce.ByClient || ce.Reason != "bye" || !errors.Is(err, session.ErrClosed) {
		t.Fatalf("Recv after close: %v", err)
	}
}

func TestHeartbeatDue(t *testing.T) {
	f := newFixture(t, session.Config{})
	tr := newFake("eventstream")
	f.s.Attach(tr)
	if b := pull(t, f.s, tr, 0); !b.Empty() {
		t.Fatalf("fresh pull: %+v", b)
	}
	f.clock.Advance(24 * time.Second)
	if tr.woken() {
		t.Fatal("woken before the heartbeat interval")
	}
	f.clock.Advance(time.Second)
	if !tr.woken() {
		t.Fatal("not woken at the heartbeat interval")
	}
	if b := pull(t, f.s, tr, 0); !b.Heartbeat {
		t.Fatalf("pull at heartbeat: %+v", b)
	}
	if b := pull(t, f.s, tr, 0); !b.Empty() {
		t.Fatalf("heartbeat given twice: %+v", b)
	}
	// Writing anything restarts the interval.
	f.clock.Advance(20 * time.Second)
	f.s.Send(ctx, "x")
	pull(t, f.s, tr, 0)
	f.clock.Advance(20 * time.Second)
	if b := pull(t, f.s, tr, 1); !b.Empty() {
		t.Fatalf("heartbeat 20 s after a message: %+v", b)
	}
	// The timer armed with the last heartbeat fires now (25 s after it),
	// finds the message 20 s old, and waits the 5 s left.
	tr.woken()
	f.clock.Advance(4 * time.Second)
	if tr.woken() {
		t.Fatal("woken 24 s after a message")
	}
	f.clock.Advance(time.Second)
	if !tr.woken() {
		t.Fatal("not woken 25 s after a message")
	}
	if b := pull(t, f.s, tr, 1); !b.Heartbeat {
		t.Fatalf("pull 25 s after a message: %+v", b)
	}
	// And on: the next 25 s later.
	f.clock.Advance(25 * time.Second)
	if b := pull(t, f.s, tr, 1); !b.Heartbeat {
		t.Fatalf("second heartbeat: %+v", b)
	}
}

func TestDisconnectTimeoutFreesSession(t *testing.T) {
	f := newFixture(t, session.Config{})
	tr := newFake("longpoll")
	f.s.Attach(tr)
	f.s.Send(ctx, "unacknowledged")
	f.s.Detach(tr)
	f.clock.Advance(29 * time.Second)
	if f.s.State() != session.Open {
		t.Fatalf("state %v before the timeout", f.s.State())
	}
	// Attaching within the timeout stops it.
	tr2 := newFake("longpoll")
	f.s.Attach(tr2)
	f.clock.Advance(time.Hour) // heartbeats only
	f.s.Detach(tr2)
	f.clock.Advance(30 * time.Second)
	var ce *session.CloseError
	if f.s.State() != session.Closed || f.closed.Load() != 1 || !errors.As(f.s.Err(), &ce) || ce.Code != session.CodeSessionTimeout {
		t.Fatalf("after timeout: %v closed=%d %v", f.s.State(), f.closed.Load(), f.s.Err())
	}
	if n, _ := f.s.Queued(); n != 0 {
		t.Fatal("log not freed")
	}
	if err := f.s.Attach(newFake("longpoll")); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("attach to a closed session: %v", err)
	}
	if _, err := f.s.Recv(ctx); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("Recv on a closed session: %v", err)
	}
}

func TestCloseLingersForTheCloseFrame(t *testing.T) {
	f := newFixture(t, session.Config{})
	tr := newFake("longpoll")
	f.s.Attach(tr)
	f.s.Send(ctx, "last")
	f.s.Close(4321, "app done")
	if !tr.woken() {
		t.Fatal("close did not wake the transport")
	}
	if err := f.s.Send(ctx, "too late"); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	b := pull(t, f.s, tr, 0)
	if datas(b.Messages) != "last" || b.Close == nil || b.Close.Code != 4321 || b.Close.ByClient {
		t.Fatalf("closing batch: %+v", b)
	}
	f.s.Detach(tr)
	if f.s.State() != session.Closing {
		t.Fatal("freed before the linger")
	}
	f.clock.Advance(30 * time.Second)
	if f.s.State() != session.Closed || f.closed.Load() != 1 {
		t.Fatalf("after linger: %v", f.s.State())
	}
}

func TestTerminate(t *testing.T) {
	f := newFixture(t, session.Config{})
	tr := newFake("longpoll")
	f.s.Attach(tr)
	f.s.Send(ctx, "x")
	f.s.Terminate(session.CodeGoingAway, "bye")
	if code := <-tr.kicked; code != session.CodeGoingAway {
		t.Fatalf("kick code %v", code)
	}
	if f.s.State() != session.Closed || f.closed.Load() != 1 {
		t.Fatal("not closed")
	}
	f.s.Terminate(session.CodeGoingAway, "again")
	if f.closed.Load() != 1 {
		t.Fatal("Closed hook ran twice")
	}
}

func TestCodes(t *testing.T) {
	if session.CodeReplaced.SessionEnding() || session.CodeRecycled.SessionEnding() || !session.CodeNormal.SessionEnding() {
		t.Fatal("SessionEnding wrong")
	}
	ce := &session.CloseError{Code: session.CodeQueueOverflow, Reason: "full"}
	if ce.Error() != "session closed by server: 4008 queue overflow: full" {
		t.Fatalf("%q", ce.Error())
	}
}

// ReceiveNow takes what Receive would take at once, and nothing when
// Receive would wait (a full inbox, or another Receive's turn); it opens
// the session; a refusal takes nothing.
func TestReceiveNow(t *testing.T) {
	f := newFixture(t, session.Config{MaxInbound: 2, MaxMessageBytes: 8})
	s := f.s
	if acked, taken, err := s.ReceiveNow(session.Message{Seq: 1, Data: "a"}); !taken || err != nil || acked != 1 {
		t.Fatalf("first: %d %v %v", acked, taken, err)
	}
	if f.opened.Load() != 1 || s.State() != session.Open {
		t.Fatalf("the first message did not open the session: %d %v", f.opened.Load(), s.State())
	}
	if acked, taken, err := s.ReceiveNow(session.Message{Seq: 1, Data: "a"}); !taken || err != nil || acked != 1 {
		t.Fatalf("a retry is taken (and dropped): %d %v %v", acked, taken, err)
	}
	if _, taken, err := s.ReceiveNow(session.Message{Seq: 3, Data: "c"}); !errors.Is(err, session.ErrSeqGap) || !taken {
		t.Fatalf("gap: %v %v", taken, err)
	}
	if _, _, err := s.ReceiveNow(session.Message{Seq: 2, Data: "123456789"}); !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if acked, taken, err := s.ReceiveNow(session.Message{Seq: 2, Data: "b"}); !taken || err != nil || acked != 2 {
		t.Fatalf("second: %d %v %v", acked, taken, err)
	}
	// The inbox (2) is full: Receive would wait, so ReceiveNow takes nothing.
	if _, taken, err := s.ReceiveNow(session.Message{Seq: 3, Data: "c"}); taken || err != nil {
		t.Fatalf("into a full inbox: %v %v", taken, err)
	}
	if got := s.Received(); got != 2 {
		t.Fatalf("received %d after a refusal, want 2", got)
	}
	for _, want := range []string{"a", "b"} {
		if m, err := s.Recv(ctx); m != want || err != nil {
			t.Fatalf("Recv = %q %v, want %q", m, err, want)
		}
	}
	if acked, taken, err := s.ReceiveNow(session.Message{Seq: 3, Data: "c"}); !taken || err != nil || acked != 3 {
		t.Fatalf("after Recv made room: %d %v %v", acked, taken, err)
	}
}
