package session

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Two Recv(s.Context()) callers are each between take() (which found
// nothing and handed them the ready channel) and their receive on it, when
// the client's last message and its close arrive together. The message
// fills ready's one slot; the close's signal finds it full and is dropped.
// The first waiter takes the token and the message; take() leaves the
// inbox empty and, the session closing, signals nobody: the second waiter
// sleeps for ever, though the session is closed (Recv with the session's
// own context waits on ready alone).
//
// (Found by a review of the channel-less session: take now signals ready
// again while messages or the close remain.) This replays, step for step, what Recv's loop does (take, then <-ready,
// then take again, which is what a fresh Recv call does).
func TestRecvDoesNotLoseTheCloseWakeup(t *testing.T) {
	cfg := Config{}.Defaults()
	s := New(NewID(), Info{}, &cfg, nil)
	defer s.Terminate(CodeGoingAway, "test over")

	// Both Recvs ran take() and found nothing: each now holds s.ready.
	_, _, okA, readyA := s.take()
	_, _, okB, readyB := s.take()
	if okA || okB || readyA != readyB {
		t.Fatal("setup: take did not ask to wait")
	}
	// The last message and the close arrive before either parks.
	if _, err := s.Receive(context.Background(), []Message{{Seq: 1, Data: "last"}}); err != nil {
		t.Fatal(err)
	}
	s.ClientClose(CodeNormal, "bye")

	results := make(chan string, 2)
	for range 2 {
		go func(ready <-chan struct{}) {
			<-ready                       // Recv's `if own { <-ready; continue }`
			m, err := s.Recv(s.Context()) // the loop's next take, and on
			if err != nil {
				var ce *CloseError
				if !errors.As(err, &ce) {
					results <- "unexpected " + err.Error()
					return
				}
				results <- "close"
				return
			}
			results <- "msg:" + m
		}(readyA)
	}
	var got []string
	timeout := time.After(2 * time.Second)
	for len(got) < 2 {
		select {
		case r := <-results:
			got = append(got, r)
		case <-timeout:
			// Unblock the sleeper so that goleak does not also complain.
			s.mu.Lock()
			s.notifyReadyLocked()
			s.mu.Unlock()
			<-results
			t.Fatalf("one Recv(s.Context()) still asleep 2 s after the close; the other got %v", got)
		}
	}
}
