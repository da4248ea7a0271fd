package session

import (
	"context"
	"runtime"
	"testing"
)

// InboxFull is called once for a waiting message, however often other
// changes wake its wait: an ack that frees room for a waiting Send wakes
// every waiter of the session, the Receive waiting for inbox room too.
func TestInboxFullOncePerMessage(t *testing.T) {
	ctx := context.Background()
	cfg := Config{MaxInbound: 1, MaxQueueMessages: 1, Overflow: OverflowWait}.Defaults()
	full := make(chan struct{}, 16)
	s := New(NewID(), Info{}, &cfg, &Hooks{InboxFull: func(*Session) { full <- struct{}{} }})
	defer s.Terminate(CodeGoingAway, "test over")
	woken := make(chan struct{}, 16)
	testHookInboxWoken = func() { woken <- struct{}{} }
	defer func() { testHookInboxWoken = nil }()

	if err := s.Send(ctx, "x"); err != nil { // the queue is full
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- s.Send(ctx, "y") }() // it waits for an ack
	// The inbox is full after this.
	if _, err := s.Receive(ctx, []Message{{Seq: 1, Data: "a"}}); err != nil {
		t.Fatal(err)
	}
	received := make(chan error, 1)
	go func() {
		_, err := s.Receive(ctx, []Message{{Seq: 2, Data: "b"}})
		received <- err
	}()
	<-full // "b" waits
	// Until the Send waits too (nothing signals it: look), so that the ack
	// below wakes both.
	for {
		s.mu.Lock()
		both := s.waiting&waitRoom != 0 && s.waiting&waitInbox != 0
		s.mu.Unlock()
		if both {
			break
		}
		runtime.Gosched()
	}
	if err := s.Ack(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	<-woken // the Receive looked again, and found the inbox still full
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
