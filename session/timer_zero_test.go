package session_test

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cometkit/cometkit/session"
)

// zeroClock is a hand-written manual clock whose zero value is ready to
// use: it starts at time.Time{} and moves only with Advance.
type zeroClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*zeroTimer
}

type zeroTimer struct {
	c    *zeroClock
	when time.Time
	f    func()
}

func (c *zeroClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *zeroClock) AfterFunc(d time.Duration, f func()) session.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &zeroTimer{c: c, when: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *zeroTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance runs due timers in order, bounded so that a timer that re-arms
// itself for ever cannot hang the test.
func (c *zeroClock) Advance(d time.Duration) (fired int) {
	c.mu.Lock()
	end := c.now.Add(d)
	for fired < 1000 {
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].when.Before(c.timers[j].when) })
		if len(c.timers) == 0 || c.timers[0].when.After(end) {
			break
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		c.now = t.when
		c.mu.Unlock()
		t.f()
		fired++
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
	return fired
}

// A manual clock that starts at the zero time.Time: Defaults records its
// Now as the epoch, but a zero epoch reads as "Defaults did not run", so
// clockNanos counts from the process's start instead, Sub saturates (year 1
// is ~2000 years before it, past Duration's ±292 years), every firing finds
// its arming "not due" and re-arms: the session never timed out (found by a
// review; Config now records that its epoch was set).
func TestDisconnectTimeoutWithClockFromZeroTime(t *testing.T) {
	clock := &zeroClock{}
	cfg := session.Config{Clock: clock}.Defaults()
	closed := make(chan struct{})
	s := session.New(session.NewID(), session.Info{}, &cfg, &session.Hooks{Closed: func(*session.Session) { close(closed) }})
	defer s.Terminate(session.CodeGoingAway, "test over")
	fired := clock.Advance(10 * cfg.DisconnectTimeout)
	select {
	case <-closed:
	default:
		t.Fatalf("no transport for %v with DisconnectTimeout %v: session %v, its timer fired (and re-armed) %d times",
			10*cfg.DisconnectTimeout, cfg.DisconnectTimeout, s.State(), fired)
	}
}
