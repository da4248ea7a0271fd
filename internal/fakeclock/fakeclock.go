// Package fakeclock is a session.Clock whose time moves only when a test
// says so, so that heartbeats and timeouts are tested without sleeping.
package fakeclock

import (
	"sort"
	"sync"
	"time"

	"github.com/cometkit/cometkit/session"
)

// Clock is a manual clock. Its zero value is not usable; call New.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer
	changed chan struct{} // closed and replaced whenever timers change
}

type timer struct {
	c    *Clock
	when time.Time
	d    time.Duration
	f    func()
}

// New returns a clock set to a fixed instant.
func New() *Clock {
	return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), changed: make(chan struct{})}
}

// Now implements session.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements session.Clock.
func (c *Clock) AfterFunc(d time.Duration, f func()) session.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, when: c.now.Add(d), d: d, f: f}
	c.timers = append(c.timers, t)
	c.signalLocked()
	return t
}

func (t *timer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			c.signalLocked()
			return true
		}
	}
	return false
}

func (c *Clock) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Advance moves time forward by d and runs, in order and in the caller's
// goroutine, every timer that falls due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].when.Before(c.timers[j].when) })
		if len(c.timers) == 0 || c.timers[0].when.After(end) {
			break
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		c.now = t.when
		c.signalLocked()
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// Pending counts timers set for exactly d that have neither fired nor been stopped.
func (c *Clock) Pending(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if t.d == d {
			n++
		}
	}
	return n
}

// WaitPending blocks until at least n timers of duration d are pending, or
// the deadline channel closes; it reports whether the count was reached.
// Tests use it to know a component has armed its timer before advancing.
func (c *Clock) WaitPending(d time.Duration, n int, deadline <-chan struct{}) bool {
	for {
		c.mu.Lock()
		count := 0
		for _, t := range c.timers {
			if t.d == d {
				count++
			}
		}
		ch := c.changed
		c.mu.Unlock()
		if count >= n {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}
