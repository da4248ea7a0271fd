package session

import (
	"context"
	"time"
)

// sessionContext is a session's Context: the session itself, seen as a
// context.Context, so that it costs no allocation of its own (a
// context.WithCancel takes ~100 bytes, for every session). It is cancelled
// when the session starts closing, with context.Canceled.
//
// Its AfterFunc method is what context.AfterFunc, and a context derived
// from it with WithCancel, WithTimeout and the like, use to learn of the
// cancel: no goroutine waits for Done meanwhile.
type sessionContext Session

// Deadline implements context.Context: there is none.
func (c *sessionContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value implements context.Context: there are none.
func (c *sessionContext) Value(any) any { return nil }

// Done implements context.Context.
func (c *sessionContext) Done() <-chan struct{} {
	s := (*Session)(c)
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	if s.done == nil {
		if s.cancelled {
			return closedChan
		}
		s.done = make(chan struct{})
	}
	return s.done
}

// closedChan is the Done of a context first asked for it once cancelled.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Err implements context.Context.
func (c *sessionContext) Err() error {
	s := (*Session)(c)
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	if s.cancelled {
		return context.Canceled
	}
	return nil
}

// AfterFunc arranges to call f in its own goroutine once the context is
// cancelled (at once if it is), as context.AfterFunc does; stop prevents
// the call if it has not been made, and reports whether it did.
func (c *sessionContext) AfterFunc(f func()) (stop func() bool) {
	s := (*Session)(c)
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	if s.cancelled {
		go f()
		return func() bool { return false }
	}
	if s.afters == nil {
		s.afters = map[*func()]struct{}{}
	}
	key := &f
	s.afters[key] = struct{}{}
	return func() bool {
		s.ctxMu.Lock()
		defer s.ctxMu.Unlock()
		_, ok := s.afters[key]
		delete(s.afters, key)
		return ok
	}
}

// String names the context, as the context package's own do.
func (c *sessionContext) String() string { return "session.Context(" + c.id + ")" }

// cancelContext cancels the session's Context, once.
func (s *Session) cancelContext() {
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	if s.cancelled {
		return
	}
	s.cancelled = true
	if s.done != nil {
		close(s.done)
	}
	for f := range s.afters {
		go (*f)()
	}
	s.afters = nil
}
