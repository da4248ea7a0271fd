package session

import "time"

// Clock is the session's source of time. Tests pass a fake one so that
// heartbeats and timeouts can be driven without sleeping.
//
// Now and AfterFunc must agree: a function given to AfterFunc(d, f) runs
// once Now has moved on by at least d. Sessions count their timers from
// Now (by its monotonic reading where it has one, as time.Now's does).
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call from Clock.AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
