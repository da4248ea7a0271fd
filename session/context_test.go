package session_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometkit/cometkit/session"
)

// waitDone fails the test if c is not done within 10 s.
func waitDone(t *testing.T, c context.Context, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not done 10 s after the close", what)
	}
}

// The session's Context behaves as a cancelled context.WithCancel does,
// and so do the contexts derived from it.
func TestSessionContext(t *testing.T) {
	f := newFixture(t, session.Config{})
	sc := f.s.Context()
	done := sc.Done()
	if done == nil || sc.Done() != done || sc.Err() != nil {
		t.Fatal("a fresh session's context: no Done, another each call, or an Err")
	}
	if _, ok := sc.Deadline(); ok || sc.Value("key") != nil {
		t.Fatal("a deadline or a value")
	}
	derived, cancel := context.WithCancel(sc)
	defer cancel()
	timeout, cancelTimeout := context.WithTimeout(sc, time.Hour)
	defer cancelTimeout()
	var ran, stopped atomic.Int32
	ranCh := make(chan struct{})
	context.AfterFunc(sc, func() { ran.Add(1); close(ranCh) })
	stop := context.AfterFunc(sc, func() { stopped.Add(1) })
	if !stop() || stop() {
		t.Fatal("stop did not stop once")
	}
	select {
	case <-done:
		t.Fatal("done before the close")
	default:
	}

	f.s.Close(4000, "bye")
	<-done // closed by the close itself
	if sc.Done() != done || !errors.Is(sc.Err(), context.Canceled) || !errors.Is(context.Cause(sc), context.Canceled) {
		t.Fatalf("after the close: Err %v, Cause %v", sc.Err(), context.Cause(sc))
	}
	waitDone(t, derived, "a derived context")
	waitDone(t, timeout, "a derived context with a timeout")
	if !errors.Is(derived.Err(), context.Canceled) || !errors.Is(timeout.Err(), context.Canceled) {
		t.Fatalf("derived contexts' errors: %v, %v", derived.Err(), timeout.Err())
	}
	<-ranCh
	if ran.Load() != 1 || stopped.Load() != 0 {
		t.Fatalf("AfterFunc ran %d times, the stopped one %d", ran.Load(), stopped.Load())
	}
	// Once cancelled, a new AfterFunc runs at once, a new derived context is done.
	late := make(chan struct{})
	if context.AfterFunc(sc, func() { close(late) })() {
		t.Fatal("stopped an AfterFunc of a cancelled context")
	}
	<-late
	d, c := context.WithCancel(sc)
	defer c()
	if d.Err() == nil {
		t.Fatal("a context derived from a cancelled one is not done")
	}
}

// A session cancelled before anything asked for its Done gives a done one.
func TestSessionContextDoneAfterTheClose(t *testing.T) {
	f := newFixture(t, session.Config{})
	f.s.Close(4000, "bye")
	select {
	case <-f.s.Context().Done():
	default:
		t.Fatal("Done of a closed session's context is not closed")
	}
}

// Contexts derived from the session's hold no goroutine each, as those
// derived from a context.WithCancel do not.
func TestDerivedSessionContextsHoldNoGoroutine(t *testing.T) {
	f := newFixture(t, session.Config{})
	before := runtime.NumGoroutine()
	var cancels []context.CancelFunc
	for i := 0; i < 1000; i++ {
		_, cancel := context.WithCancel(f.s.Context())
		cancels = append(cancels, cancel)
	}
	if n := runtime.NumGoroutine() - before; n > 100 {
		t.Fatalf("1000 derived contexts hold %d goroutines", n)
	}
	for _, c := range cancels {
		c()
	}
}

// lookingLog is a Log that looks at its context, with the session's lock
// held: the session's Context must not need that lock.
type lookingLog struct{ session.Log }

func (l lookingLog) Append(ctx context.Context, m session.Message) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	default:
	}
	return l.Log.Append(ctx, m)
}

func TestLogMayLookAtTheSessionContext(t *testing.T) {
	f := newFixture(t, session.Config{NewLog: func(c *session.Config) session.Log {
		return lookingLog{session.NewMemLog(c.MaxQueueMessages, c.MaxQueueBytes)}
	}})
	if err := f.s.Send(f.s.Context(), "hello"); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.s.Queued(); n != 1 {
		t.Fatalf("%d queued", n)
	}
}
