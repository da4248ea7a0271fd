package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/cometkit/cometkit/session"
)

// The session's own context is cancelled by the time Close returns; one
// derived from it follows (from a goroutine, a moment later: documented on
// Context, found by a review), and never misses the cancel.
func TestDerivedContextCancelledWithTheSession(t *testing.T) {
	for i := 0; i < 50; i++ {
		f := newFixture(t, session.Config{})
		d, cancel := context.WithCancel(f.s.Context())
		f.s.Close(session.CodeNormal, "")
		if f.s.Context().Err() == nil {
			t.Fatal("the session's context is not cancelled when Close returns")
		}
		select {
		case <-d.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a context derived from the session's never learnt of the close")
		}
		cancel()
	}
}
