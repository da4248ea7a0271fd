package session

import (
	"context"
	"runtime"
	"testing"
)

// A Send waiting for replay-queue room is woken by an ack, not by every
// message the application reads or every Receive that ends (a review found
// each inbound message waking it, for a retry and a new channel each time).
func TestWaitersWokenOnlyForWhatTheyWaitFor(t *testing.T) {
	cfg := Config{}.Defaults()
	s := New(NewID(), Info{}, &cfg, nil)
	defer s.Terminate(CodeGoingAway, "test over")
	ctx := context.Background()
	if err := s.Send(ctx, "out"); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	room := s.changedLocked(waitRoom) // as a Send that found the queue full
	s.mu.Unlock()
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if _, err := s.Receive(ctx, []Message{{Seq: seq, Data: "in"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if closed(room) {
		t.Fatal("a Send waiting for an ack was woken by inbound messages")
	}
	if err := s.Ack(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !closed(room) {
		t.Fatal("the ack did not wake the Send waiting for room")
	}
	// And a Receive waiting for its turn is woken by the end of a turn,
	// and by the close.
	s.mu.Lock()
	turn := s.changedLocked(waitTurn)
	s.mu.Unlock()
	if err := s.Ack(ctx, 1); err != nil || closed(turn) {
		t.Fatalf("an ack woke a Receive waiting for its turn (%v)", err)
	}
	s.Close(CodeNormal, "")
	if !closed(turn) {
		t.Fatal("the close did not wake a waiter")
	}
}

// InboxFull is called once for a waiting message, however often other
// changes wake its wait: an ack for a Send waiting for room wakes every
// waiter of the session, the Receive waiting for inbox room too.
func TestInboxFullOncePerMessage(t *testing.T) {
	ctx := context.Background()
	cfg := Config{MaxInbound: 1}.Defaults()
	full := make(chan struct{}, 16)
	s := New(NewID(), Info{}, &cfg, &Hooks{InboxFull: func(*Session) { full <- struct{}{} }})
	defer s.Terminate(CodeGoingAway, "test over")
	if err := s.Send(ctx, "out"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Receive(ctx, []Message{{Seq: 1, Data: "a"}}); err != nil { // the inbox is full
		t.Fatal(err)
	}
	s.mu.Lock()
	s.changedLocked(waitRoom) // as a Send that found the queue full
	s.mu.Unlock()
	received := make(chan error, 1)
	go func() {
		_, err := s.Receive(ctx, []Message{{Seq: 2, Data: "b"}})
		received <- err
	}()
	<-full // "b" waits
	// The ack wakes every waiter.
	if err := s.Ack(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Until the Receive has looked again and waits anew (nothing signals
	// it: look), with the inbox still full.
	for {
		s.mu.Lock()
		again := s.waiting&waitInbox != 0
		s.mu.Unlock()
		if again {
			break
		}
		runtime.Gosched()
	}
	for _, want := range []string{"a", "b"} {
		if got, err := s.Recv(ctx); err != nil || got != want {
			t.Fatalf("Recv: %q, %v; want %q", got, err, want)
		}
	}
	if err := <-received; err != nil {
		t.Fatal(err)
	}
	if n := len(full); n != 0 {
		t.Fatalf("InboxFull called %d more times for the one waiting message", n)
	}
}

// ReceiveNow does not overtake a Receive that has its turn (one waiting
// for inbox room, say): it takes nothing, and the message goes to Receive.
func TestReceiveNowWaitsItsTurn(t *testing.T) {
	cfg := Config{}.Defaults()
	s := New(NewID(), Info{}, &cfg, nil)
	defer s.Terminate(CodeGoingAway, "test over")
	s.mu.Lock()
	s.receiving = true // as a Receive in its turn
	s.mu.Unlock()
	if _, taken, err := s.ReceiveNow(Message{Seq: 1, Data: "a"}); taken || err != nil {
		t.Fatalf("during another Receive's turn: taken %v, %v", taken, err)
	}
	s.endTurn()
	if acked, taken, err := s.ReceiveNow(Message{Seq: 1, Data: "a"}); !taken || err != nil || acked != 1 {
		t.Fatalf("after the turn: %d %v %v", acked, taken, err)
	}
}

// ReceiveNow never waits for the session's lock (its caller is a poller
// serving every connection; the lock may be held across a Log's round trip
// to an outside store): it takes nothing while another holds it.
func TestReceiveNowDoesNotWaitForTheLock(t *testing.T) {
	cfg := Config{}.Defaults()
	s := New(NewID(), Info{}, &cfg, nil)
	defer s.Terminate(CodeGoingAway, "test over")
	type result struct {
		taken bool
		err   error
	}
	s.mu.Lock() // as a Send whose Log.Append is slow
	done := make(chan result, 1)
	go func() {
		_, taken, err := s.ReceiveNow(Message{Seq: 1, Data: "a"})
		done <- result{taken, err}
	}()
	r := <-done // with a waiting Lock this never comes: the test times out
	s.mu.Unlock()
	if r.taken || r.err != nil {
		t.Fatalf("while the lock was held: taken %v, %v", r.taken, r.err)
	}
	if acked, taken, err := s.ReceiveNow(Message{Seq: 1, Data: "a"}); !taken || err != nil || acked != 1 {
		t.Fatalf("once the lock was free: %d %v %v", acked, taken, err)
	}
}
