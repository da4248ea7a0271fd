package server

import (
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/eventstream"
	"github.com/cometkit/cometkit/transports/websocket"
	"github.com/cometkit/cometkit/transports/wire"
)

// Regression tests from a review of the event-stream and WebSocket
// transports; each failed before its fix.

// Was a bug: pings go out only with a heartbeat, which is due only when nothing
// else was written; a raw RFC 6455 peer that only listens to a busy feed is
// never pinged and is cut at ReadTimeout (and its session terminated).
func TestRawListenerOnBusyFeedIsPinged(t *testing.T) {
	ts := newTestServer(t, HandlerFunc(func(s *session.Session) {
		for {
			if s.Offer("tick") != nil {
				return
			}
			select {
			case <-s.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}), Options{
		Session:   session.Config{Clock: session.RealClock{}, HeartbeatInterval: 200 * time.Millisecond, DisconnectTimeout: 5 * time.Second},
		WebSocket: websocket.Options{ReadTimeout: 700 * time.Millisecond},
	})
	conn := dialWS(t, ts.base+"/websocket", nil)
	deadline := time.Now().Add(2 * time.Second)
	pings := 0
	for time.Now().Before(deadline) {
		f, err := ws.ReadFrame(conn.r)
		if err != nil {
			t.Fatalf("after %v: read %v (pings seen: %d)", 2*time.Second-time.Until(deadline), err, pings)
		}
		switch f.Header.OpCode {
		case ws.OpPing:
			pings++
			_ = ws.WriteFrame(conn.nc, ws.MaskFrame(ws.NewPongFrame(f.Payload)))
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			t.Fatalf("closed %d %s (pings seen: %d)", code, reason, pings)
		}
	}
	conn.nc.Close()
	waitFor(t, ts.Server, func() bool { return ts.Len() == 0 })
}

// Was a bug: a raw peer's close frame with no body gives the application 1005,
// not 1000 as documented (CheckCloseCode accepts 1005, so the readLoop's
// substitution never happens).
func TestRawEmptyCloseIs1000(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	conn := dialWS(t, ts.base+"/websocket", nil)
	rc.session(t)
	if err := ws.WriteFrame(conn.nc, ws.MaskFrame(ws.NewCloseFrame(nil))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-rc.ended:
		var ce *session.CloseError
		if !errors.As(err, &ce) || ce.Code != session.CodeNormal {
			t.Fatalf("application saw %v, want 1000", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no end")
	}
	waitFor(t, ts.Server, func() bool { return ts.Len() == 0 })
}

// Was a bug: when a stream is recycled in the same round that Pull handed it the
// close, Pull has already marked the close as sent (Flushed), though it was
// never written: Shutdown then stops waiting for this client.
func TestEventStreamRecycleKeepsTheClose(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{EventStream: eventstream.Options{MaxStreamBytes: 100}})
	c := ts.negotiate(t)
	s := ts.Session(c.SessionID)
	for i := 0; i < 10; i++ {
		if err := s.Send(testCtx(t), "a"); err != nil {
			t.Fatal(err)
		}
	}
	s.Close(4500, "bye")
	st := openStream(t, c, nil, nil)
	sawClose := false
	for {
		ev, err := st.Next()
		if err != nil {
			break
		}
		c.Take(ev)
		if ev.Frame.Kind == wire.KindClose {
			sawClose = true
		}
		if ev.Frame.Kind == wire.KindEnd {
			break
		}
	}
	t.Logf("sawClose=%v flushed=%v received=%d", sawClose, s.Flushed(), c.Received())
	if !sawClose && s.Flushed() {
		t.Fatalf("close not written to the stream, yet the session reports Flushed")
	}
}

// Was, during Shutdown: the recycled stream makes the session look
// flushed, Shutdown terminates it, and the client's resume finds it gone:
// messages 6–10 and the 1001 close are lost.
func TestEventStreamRecycleDuringShutdownLosesNothing(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{EventStream: eventstream.Options{MaxStreamBytes: 100}})
	c := ts.negotiate(t)
	s := ts.Session(c.SessionID)
	for i := 0; i < 10; i++ {
		if err := s.Send(testCtx(t), "a"); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(testCtx(t)) }()
	<-s.Context().Done() // cancelled as Shutdown starts closing it
	st := openStream(t, c, nil, nil)
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		c.Take(ev)
		if ev.Frame.Kind == wire.KindClose && ev.Frame.Code == int(session.CodeGoingAway) && c.Received() == 10 {
			return // all delivered on the first stream: correct
		}
		if ev.Frame.Kind == wire.KindEnd || ev.Frame.Kind == wire.KindClose {
			break
		}
	}
	st.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second): // what correct code would do: wait for the client
	}
	st2 := openStream(t, c, url.Values{"ack": {fmt.Sprint(c.Received())}}, nil)
	for {
		ev, err := st2.Next()
		if err != nil {
			t.Fatal(err)
		}
		c.Take(ev)
		if ev.Frame.Kind == wire.KindClose {
			if ev.Frame.Code != int(session.CodeGoingAway) || c.Received() != 10 {
				t.Fatalf("resume got close %d %q with %d of 10 messages", ev.Frame.Code, ev.Frame.Data, c.Received())
			}
			return
		}
	}
}

// Was a race: on the raw endpoint, a Receive refused because the application just
// closed the session ends the connection with 1000 "session closed" and
// Terminates the session, racing the writer that would deliver the queued
// messages and the application's close code.
func TestRawCloseWinsOverReader(t *testing.T) {
	lost := 0
	const trials = 40
	for i := 0; i < trials; i++ {
		func() {
			ready := make(chan struct{})
			closeNow := make(chan struct{})
			ts := newTestServer(t, HandlerFunc(func(s *session.Session) {
				close(ready)
				<-closeNow // not reading: the inbox (1) fills and the reader waits in Receive
				s.Offer("last")
				s.Close(4321, "bye")
			}), Options{Session: session.Config{MaxInbound: 1}})
			// The interleaving that lost messages: the reader waits in
			// Receive (inbox full) when the application closes.
			waiting := make(chan struct{})
			var once sync.Once
			counted := ts.hooks.InboxFull
			ts.hooks.InboxFull = func(s *session.Session) {
				counted(s)
				once.Do(func() { close(waiting) })
			}
			conn := dialWS(t, ts.base+"/websocket", nil)
			<-ready
			conn.send("one")
			conn.send("two")
			select {
			case <-waiting:
			case <-time.After(10 * time.Second):
				t.Fatalf("trial %d: the second message never waited for inbox room", i)
			}
			if n := ts.Stats().InboxWaits; n == 0 {
				t.Errorf("trial %d: Stats().InboxWaits is 0 with a message waiting", i)
			}
			close(closeNow)
			var got []string
			for {
				msg, code, reason := conn.next()
				if code != 0 {
					if code != 4321 || len(got) != 1 {
						lost++
						t.Logf("trial %d: got %q then close %d %q", i, got, code, reason)
					}
					return
				}
				got = append(got, msg)
			}
		}()
	}
	if lost > 0 {
		t.Fatalf("%d of %d trials lost the queued message and the close code", lost, trials)
	}
}
