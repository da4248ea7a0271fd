package session_test

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cometkit/cometkit/session"
)

// Messages acknowledged to the client stay readable after the session is
// freed, by timeout or by Terminate.
func TestAcceptedMessagesOutliveTheSession(t *testing.T) {
	f := newFixture(t, session.Config{})
	tr := newFake("longpoll")
	f.s.Attach(tr)
	if acked, err := f.s.Receive(ctx, []session.Message{{Seq: 1, Data: "a"}, {Seq: 2, Data: "b"}}); err != nil || acked != 2 {
		t.Fatal(acked, err)
	}
	f.s.ClientClose(session.CodeNormal, "bye")
	if b := pull(t, f.s, tr, 0); b.Close == nil {
		t.Fatal("no close frame")
	}
	f.s.Detach(tr)
	f.clock.Advance(30 * time.Second)
	if f.s.State() != session.Closed {
		t.Fatal("not freed")
	}
	f.s.Terminate(session.CodeGoingAway, "again")
	for _, want := range []string{"a", "b"} {
		if m, err := f.s.Recv(ctx); m != want || err != nil {
			t.Fatalf("Recv = %q %v, want %q", m, err, want)
		}
	}
	if _, err := f.s.Recv(ctx); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("then: %v", err)
	}
}

// Recv(s.Context()) returns a message that arrived together with the close,
// though the context is cancelled by the close.
func TestRecvWithSessionContextGetsLastWords(t *testing.T) {
	for i := 0; i < 20000; i++ {
		f := newFixture(t, session.Config{})
		s := f.s
		got := make(chan error, 1)
		go func() {
			_, err := s.Recv(s.Context())
			got <- err
		}()
		for k := 0; k < i%7; k++ {
			runtime.Gosched()
		}
		s.Receive(ctx, []session.Message{{Seq: 1, Data: "last words"}})
		s.ClientClose(session.CodeNormal, "bye")
		if err := <-got; err != nil {
			t.Fatalf("round %d: Recv returned %v with a message unread", i, err)
		}
	}
}

// A message that finds the inbox full is reported (InboxFull) and waits for
// the application's Recv, then is taken; one with room is not reported.
func TestInboxFullIsReported(t *testing.T) {
	f := newFixture(t, session.Config{MaxInbound: 1})
	if _, err := f.s.Receive(ctx, []session.Message{{Seq: 1, Data: "a"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.full:
		t.Fatal("InboxFull with room in the inbox")
	default:
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.s.Receive(ctx, []session.Message{{Seq: 2, Data: "b"}})
		done <- err
	}()
	<-f.full // "b" waits
	select {
	case err := <-done:
		t.Fatalf("Receive returned (%v) with the inbox full", err)
	default:
	}
	for _, want := range []string{"a", "b"} {
		if got, err := f.s.Recv(ctx); err != nil || got != want {
			t.Fatalf("Recv: %q, %v; want %q", got, err, want)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Receive after room was made: %v", err)
	}
}

// A send retried after its client gave up does not queue behind one that
// waits for inbox room.
func TestReceiveGivesUpItsTurn(t *testing.T) {
	f := newFixture(t, session.Config{MaxInbound: 1})
	f.s.Receive(ctx, []session.Message{{Seq: 1, Data: "a"}}) // inbox full; nobody reads
	waiting, stop := context.WithCancel(ctx)
	defer stop()
	go f.s.Receive(waiting, []session.Message{{Seq: 2, Data: "b"}})
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.s.Receive(gone, []session.Message{{Seq: 2, Data: "b"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a done context: %v", err)
	}
}

// Polls after the close cannot keep a closing session alive past its linger.
func TestLingerIsFixed(t *testing.T) {
	f := newFixture(t, session.Config{})
	f.s.Close(session.CodeNormal, "")
	for i := 0; i < 5; i++ {
		tr := newFake("longpoll")
		f.s.Attach(tr)
		f.clock.Advance(7 * time.Second)
		f.s.Detach(tr)
	}
	if f.s.State() != session.Closed {
		t.Fatalf("state %v after 35 s of polling a closed session", f.s.State())
	}
}

func TestCloseChecksItsCode(t *testing.T) {
	f := newFixture(t, session.Config{})
	for _, c := range []session.Code{0, 999, 5000, session.CodeReplaced, session.CodeRecycled} {
		if err := f.s.Close(c, ""); !errors.Is(err, session.ErrBadCloseCode) {
			t.Fatalf("Close(%d): %v", c, err)
		}
	}
	tr := newFake("longpoll")
	f.s.Attach(tr)
	long := string([]byte{0xff}) + string(make([]byte, 200))
	f.s.Close(4000, long)
	b := pull(t, f.s, tr, 0)
	if len(b.Close.Reason) > session.MaxReasonBytes || b.Close.Reason[:3] != "\uFFFD" {
		t.Fatalf("reason not cleaned: %q", b.Close.Reason)
	}
}

// A session already closing with its own code keeps it when it is then
// freed at once (Server.Close, Shutdown past its deadline): its client is
// told that code, not the terminator's.
func TestTerminateKeepsTheCloseCode(t *testing.T) {
	f := newFixture(t, session.Config{})
	tr := newFake("longpoll")
	f.s.Attach(tr)
	f.s.Close(4321, "app done")
	f.s.Terminate(session.CodeGoingAway, "server closed")
	if code := <-tr.kicked; code != 4321 {
		t.Fatalf("kicked with %d, want 4321", code)
	}
}

// The opening request's header is the session's own copy: neither the
// caller's map nor one Header returned is the session's.
func TestHeaderIsACopy(t *testing.T) {
	h := textproto.MIMEHeader{"Cookie": {"a=1"}, "X-Two": {"1", "2"}}
	cfg := session.Config{}.Defaults()
	s := session.New(session.NewID(), session.Info{RemoteAddr: "192.0.2.1:1", Header: h, RequestURI: "/rt/negotiate"}, &cfg, nil)
	defer s.Terminate(session.CodeGoingAway, "test over")
	want := http.Header(h).Clone()
	h.Set("Cookie", "changed")
	got := s.Header()
	if !reflect.DeepEqual(http.Header(got), want) {
		t.Fatalf("Header = %v, want %v", got, want)
	}
	got.Set("Cookie", "changed too")
	got.Add("X-Two", "3")
	if info := s.Info(); !reflect.DeepEqual(http.Header(info.Header), want) || info.RemoteAddr != "192.0.2.1:1" || info.RequestURI != "/rt/negotiate" {
		t.Fatalf("Info = %+v, want the header %v", info, want)
	}
	s2 := session.New(session.NewID(), session.Info{}, &cfg, nil)
	defer s2.Terminate(session.CodeGoingAway, "test over")
	if s2.Header() != nil || s2.Info().Header != nil {
		t.Fatal("a session opened with no header has one")
	}
}

// parked waits (without sleeping) until n goroutines wait in a call of the
// session whose name contains fn.
func parked(t *testing.T, n int, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for tries := 0; ; tries++ {
		got := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			head, _, _ := strings.Cut(g, "\n")
			if strings.Contains(g, "session.(*Session)."+fn+"(") &&
				(strings.Contains(head, "[chan receive") || strings.Contains(head, "[select")) {
				got++
			}
		}
		if got >= n {
			return
		}
		if tries > 1e6 {
			t.Fatalf("%d of %d goroutines wait in %s", got, n, fn)
		}
		runtime.Gosched()
	}
}

// waitErr returns the next error from errs, failing the test if none comes
// within 10 s (a waiter the close did not wake).
func waitErr(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter still waits 10 s after the close")
		return nil
	}
}

// The close wakes every Recv, Send and Receive that waits, whatever
// context it was given.
func TestCloseWakesEveryWaiter(t *testing.T) {
	t.Run("Recv and Send", func(t *testing.T) {
		f := newFixture(t, session.Config{MaxQueueMessages: 1, Overflow: session.OverflowWait})
		s := f.s
		derived, cancel := context.WithCancel(s.Context())
		defer cancel()
		errs := make(chan error, 6)
		for _, c := range []context.Context{s.Context(), s.Context(), s.Context(), derived, ctx} {
			go func() {
				_, err := s.Recv(c)
				errs <- err
			}()
		}
		if err := s.Send(ctx, "fills the queue"); err != nil {
			t.Fatal(err)
		}
		go func() { errs <- s.Send(ctx, "waits for room") }()
		parked(t, 5, "Recv")
		parked(t, 1, "Send")
		s.Close(4000, "bye")
		for i := 0; i < 6; i++ {
			if err := waitErr(t, errs); !errors.Is(err, session.ErrClosed) {
				t.Fatalf("a waiter returned %v, not the close", err)
			}
		}
	})
	t.Run("Receive", func(t *testing.T) {
		f := newFixture(t, session.Config{MaxInbound: 1})
		s := f.s
		if _, err := s.Receive(ctx, []session.Message{{Seq: 1, Data: "a"}}); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		go func() { // waits for inbox room, with the turn
			_, err := s.Receive(ctx, []session.Message{{Seq: 2, Data: "b"}})
			errs <- err
		}()
		parked(t, 1, "Receive")
		go func() { // waits for the turn
			_, err := s.Receive(ctx, []session.Message{{Seq: 2, Data: "b"}})
			errs <- err
		}()
		parked(t, 2, "Receive")
		s.Close(4000, "bye")
		for i := 0; i < 2; i++ {
			if err := waitErr(t, errs); !errors.Is(err, session.ErrClosed) {
				t.Fatalf("a Receive returned %v, not the close", err)
			}
		}
		if m, err := s.Recv(ctx); m != "a" || err != nil {
			t.Fatalf("Recv = %q %v", m, err)
		}
	})
}
