package session_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/cometkit/cometkit/session"
)

// epochClock is a valid session.Clock with real timers whose Now counts
// from the zero time.Time (as a simple hand-written test clock does): time
// moves at the real rate, just from year 1.
type epochClock struct{ start time.Time }

func (c epochClock) Now() time.Time { return time.Time{}.Add(time.Since(c.start)) }
func (c epochClock) AfterFunc(d time.Duration, f func()) session.Timer {
	return time.AfterFunc(d, f)
}

// Any clock whose Now and AfterFunc agree times the session, whatever its
// epoch: timers count from the clock's own now at Defaults. (Counted from
// the process's time.Now, a clock from year 1 saturated Sub, and every
// firing found its arming "not due" and re-armed for ever: a review found it.)
func TestDisconnectTimeoutFiresWithAnyEpochClock(t *testing.T) {
	cfg := session.Config{Clock: epochClock{start: time.Now()},
		HeartbeatInterval: 10 * time.Millisecond, DisconnectTimeout: 30 * time.Millisecond}.Defaults()
	closed := make(chan struct{})
	hooks := &session.Hooks{Closed: func(*session.Session) { close(closed) }}
	s := session.New(session.NewID(), session.Info{}, &cfg, hooks)
	t.Cleanup(func() { s.Terminate(session.CodeGoingAway, "test over") })
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatalf("no transport for 2 s with a 30 ms DisconnectTimeout: session still %v", s.State())
	}
}

// Stress of the reset-not-replaced timer on the real clock (time.Timer's
// Reset, stale firings): attach, pull with messages, detach in quick
// succession from several goroutines; then the last detach must free the
// session one DisconnectTimeout later, not before and not never.
func TestRealClockTimerChurn(t *testing.T) {
	cfg := session.Config{HeartbeatInterval: 2 * time.Millisecond, DisconnectTimeout: 40 * time.Millisecond}.Defaults()
	closed := make(chan time.Time, 1)
	hooks := &session.Hooks{Closed: func(*session.Session) { closed <- time.Now() }}
	s := session.New(session.NewID(), session.Info{}, &cfg, hooks)
	t.Cleanup(func() { s.Terminate(session.CodeGoingAway, "test over") })
	done := make(chan time.Time)
	for g := 0; g < 4; g++ {
		go func() {
			var detached time.Time
			defer func() { done <- detached }()
			tr := &churnTransport{}
			for i := 0; i < 300; i++ {
				if err := s.Attach(tr); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					_ = s.Send(ctx, "x")
				}
				_, _ = s.Pull(ctx, tr, 0, 1<<20, nil)
				if i%7 == 0 {
					runtime.Gosched()
				}
				s.Detach(tr)
				detached = time.Now()
			}
		}()
	}
	var last time.Time
	for g := 0; g < 4; g++ {
		if d := <-done; d.After(last) {
			last = d
		}
	}
	select {
	case at := <-closed:
		if d := at.Sub(last); d < 35*time.Millisecond {
			t.Fatalf("freed %v after the last detach, DisconnectTimeout 40ms", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("not freed 2 s after the last detach (state %v)", s.State())
	}
}

// churnTransport is a transport that never blocks on a kick.
type churnTransport struct{}

func (*churnTransport) Name() string              { return "longpoll" }
func (*churnTransport) Wake()                     {}
func (*churnTransport) Kick(session.Code, string) {}
