package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"net/http/httptest"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/eventstream"
	"github.com/cometkit/cometkit/transports/wire"
)

// streamFor reads events until n new messages have arrived, failing on any
// close or end frame.
func streamFor(t *testing.T, c *testclient.Client, st *testclient.Stream, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		if ev.Frame.Kind == wire.KindClose || ev.Frame.Kind == wire.KindEnd {
			t.Fatalf("after %d messages: %c%d %s", len(got), ev.Frame.Kind, ev.Frame.Code, ev.Frame.Data)
		}
		m, ok, err := c.Take(ev)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if ev.ID != fmt.Sprint(ev.Frame.Seq) {
				t.Fatalf("event id %q for message %d", ev.ID, ev.Frame.Seq)
			}
			got = append(got, m)
		}
	}
	return got
}

func openStream(t *testing.T, c *testclient.Client, q url.Values, h http.Header) *testclient.Stream {
	t.Helper()
	st, err := c.OpenStream(testCtx(t), q, h)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

func sendN(t *testing.T, s *session.Session, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Send(testCtx(t), fmt.Sprintf("msg-%04d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

func checkSeq(t *testing.T, got []string, from int) {
	t.Helper()
	for i, m := range got {
		if want := fmt.Sprintf("msg-%04d", from+i); m != want {
			t.Fatalf("message %d = %q, want %q", i, m, want)
		}
	}
}

func TestEventStreamThousandInOrder(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHijack=%v", noHijack), func(t *testing.T) {
			rc := newRecorder()
			ts := newTestServer(t, rc, Options{EventStream: eventstream.Options{NoHijack: noHijack}})
			c := ts.negotiate(t)
			st := openStream(t, c, nil, nil)
			if ct := st.Resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" ||
				st.Resp.Header.Get("Cache-Control") != "no-store, no-cache, no-transform" || st.Resp.Header.Get("X-Accel-Buffering") != "no" {
				t.Fatalf("headers %v", st.Resp.Header)
			}
			s := rc.session(t)
			if s.Transport() != "eventstream" {
				t.Fatalf("transport %q", s.Transport())
			}
			// A fresh stream shows it is live at once, before any message.
			if ev, err := st.Next(); err != nil || ev.Frame.Kind != wire.KindHeartbeat || st.Retry != 1000 {
				t.Fatalf("first event %+v %v (retry %d)", ev, err, st.Retry)
			}
			sent := make(chan error, 1)
			go func() {
				for i := 0; i < 1000; i++ {
					if err := s.Send(context.Background(), fmt.Sprintf("msg-%04d", i)); err != nil {
						sent <- err
						return
					}
				}
				sent <- nil
			}()
			got := streamFor(t, c, st, 1000)
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			checkSeq(t, got, 0)
			// Upstream on the same session goes by the long-poll send.
			if res, err := c.Send(testCtx(t), "up"); err != nil || res.Ack != 1 || rc.next(t) != "up" {
				t.Fatalf("send beside a stream: %+v %v", res, err)
			}
		})
	}
}

func TestEventStreamResumeByLastEventID(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	st := openStream(t, c, nil, nil)
	s := rc.session(t)
	sendN(t, s, 0, 10)
	checkSeq(t, streamFor(t, c, st, 4), 0)
	last := st.LastEventID
	if last != "4" {
		t.Fatalf("Last-Event-ID %q", last)
	}
	// The TCP connection is cut mid-stream (hijacked connections are out of
	// httptest's reach, so the client side drops it, as a proxy would).
	st.Close()
	sendN(t, s, 10, 20)
	// The browser's own reconnect: Last-Event-ID says what it saw. The
	// client forgets anything it read after that, so replays must match.
	c2 := &testclient.Client{HTTP: ts.http.Client(), Base: ts.base, Negotiation: c.Negotiation}
	for i := 0; i < 4; i++ {
		c2.Take(testclient.Event{Frame: wire.Frame{Kind: wire.KindMessage, Seq: uint64(i + 1)}})
	}
	st2 := openStream(t, c2, nil, http.Header{"Last-Event-ID": {last}})
	got := streamFor(t, c2, st2, 16)
	checkSeq(t, got, 4)
	if n, _ := s.Queued(); n != 16 {
		t.Fatalf("queued after resume from 4: %d, want 16 (4 acknowledged by the Last-Event-ID)", n)
	}
}

func TestEventStreamRecycledByBytesWithoutLoss(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{EventStream: eventstream.Options{MaxStreamBytes: 600}})
	c := ts.negotiate(t)
	s := func() *session.Session {
		st := openStream(t, c, nil, nil)
		defer st.Close()
		return rc.session(t)
	}()
	sendN(t, s, 0, 100)
	var got []string
	streams := 0
	for len(got) < 100 {
		streams++
		st := openStream(t, c, url.Values{"ack": {fmt.Sprint(c.Received())}}, nil)
		for {
			ev, err := st.Next()
			if err != nil {
				t.Fatalf("stream %d: %v", streams, err)
			}
			if ev.Frame.Kind == wire.KindEnd {
				if ev.Frame.Code != int(session.CodeRecycled) {
					t.Fatalf("end frame %+v", ev.Frame)
				}
				break
			}
			if m, ok, err := c.Take(ev); err != nil {
				t.Fatal(err)
			} else if ok {
				got = append(got, m)
			}
			if len(got) == 100 {
				break
			}
		}
		st.Close()
	}
	checkSeq(t, got, 0)
	if streams < 5 {
		t.Fatalf("only %d streams for 100 messages under a 600-byte cap", streams)
	}
}

func TestEventStreamPaddingOnlyWhenAsked(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	plain := openStream(t, c, nil, nil)
	plain.Next()
	if plain.Prelude != "retry: 1000" || plain.Comments != 0 {
		t.Fatalf("unpadded stream began %q with %d comments", plain.Prelude, plain.Comments)
	}
	padded := openStream(t, c, url.Values{"pad": {"1"}}, nil)
	padded.Next()
	if padded.Prelude != ":"+strings.Repeat(" ", 2048) || padded.Comments != 1 {
		t.Fatalf("padded stream began with %d bytes, %d comments", len(padded.Prelude), padded.Comments)
	}
}

func TestEventStreamHeartbeats(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	st := openStream(t, c, nil, nil)
	rc.session(t)
	if ev, err := st.Next(); err != nil || ev.Frame.Kind != wire.KindHeartbeat {
		t.Fatalf("first event %+v %v", ev, err)
	}
	// A comment keeps proxies from cutting the idle response every 15 s...
	if !ts.clock.WaitPending(15*time.Second, 1, testCtx(t).Done()) {
		t.Fatal("comment timer never armed")
	}
	ts.clock.Advance(15 * time.Second)
	if err := st.NextComment(); err != nil {
		t.Fatal(err)
	}
	// ...and the session's heartbeat (25 s) is an event the client can see.
	if !ts.clock.WaitPending(15*time.Second, 1, testCtx(t).Done()) {
		t.Fatal("comment timer not re-armed")
	}
	ts.clock.Advance(10 * time.Second)
	if ev, err := st.Next(); err != nil || ev.Frame.Kind != wire.KindHeartbeat {
		t.Fatalf("heartbeat event %+v %v", ev, err)
	}
}

// Every event reaches the wire at once behind chi's Logger, Recoverer and
// Compress middleware, hijacked or not: a read of an event that was not
// flushed would hang until the test's deadline.
func TestEventStreamFlushesBehindMiddleware(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHijack=%v", noHijack), func(t *testing.T) {
			rc := newRecorder()
			srv, err := New(rc, Options{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: discard,
				EventStream: eventstream.Options{NoHijack: noHijack}})
			if err != nil {
				t.Fatal(err)
			}
			r := chi.NewRouter()
			r.Use(middleware.RequestLogger(&middleware.DefaultLogFormatter{Logger: discardLog{}, NoColor: true}))
			r.Use(middleware.Recoverer)
			r.Use(middleware.Compress(5, "text/event-stream", "text/plain"))
			r.Mount("/rt", srv)
			hs := httptest.NewServer(r)
			defer hs.Close()
			defer srv.Close()
			c, err := testclient.Negotiate(testCtx(t), hs.Client(), hs.URL+"/rt", nil)
			if err != nil {
				t.Fatal(err)
			}
			// Accept-Encoding set by hand so Go's client does not gunzip for us.
			st := openStream(t, c, nil, http.Header{"Accept-Encoding": {"identity"}})
			s := rc.session(t)
			for i := 0; i < 3; i++ {
				if err := s.Send(testCtx(t), fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
				if got := streamFor(t, c, st, 1); got[0] != fmt.Sprint(i) {
					t.Fatalf("got %q", got)
				}
			}
		})
	}
}

type discardLog struct{}

func (discardLog) Print(...any) {}

func TestEventStreamResetOnGarbageOrGap(t *testing.T) {
	t.Run("garbage Last-Event-ID", func(t *testing.T) {
		rc := newRecorder()
		ts := newTestServer(t, rc, Options{})
		c := ts.negotiate(t)
		st := openStream(t, c, nil, http.Header{"Last-Event-ID": {"12abc"}})
		ev, err := st.Next()
		if err != nil || ev.Frame.Kind != wire.KindClose || ev.Frame.Code != int(session.CodeResumeFailed) {
			t.Fatalf("event %+v %v", ev, err)
		}
		if s := ts.Session(c.SessionID); s == nil || s.State() != session.Closing {
			t.Fatal("session not closed after a failed resume")
		}
	})
	t.Run("ahead of what was sent", func(t *testing.T) {
		ts := newTestServer(t, echo, Options{})
		c := ts.negotiate(t)
		ev, err := openStream(t, c, url.Values{"lastEventId": {"7"}}, nil).Next()
		if err != nil || ev.Frame.Kind != wire.KindClose || ev.Frame.Code != int(session.CodeResumeFailed) {
			t.Fatalf("event %+v %v", ev, err)
		}
	})
	t.Run("messages dropped before they were acknowledged", func(t *testing.T) {
		rc := newRecorder()
		ts := newTestServer(t, rc, Options{Session: session.Config{NewLog: func(*session.Config) session.Log { return &retentionLog{keep: 3} }}})
		c := ts.negotiate(t)
		st := openStream(t, c, nil, nil)
		s := rc.session(t)
		st.Close()
		sendN(t, s, 0, 10) // the log keeps only the newest 3: 1–7 are gone unacknowledged
		ev, err := openStream(t, c, url.Values{"ack": {"2"}}, nil).Next()
		if err != nil || ev.Frame.Kind != wire.KindClose || ev.Frame.Code != int(session.CodeResumeFailed) {
			t.Fatalf("event %+v %v", ev, err)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		ts := newTestServer(t, echo, Options{})
		tok, _ := ts.tokens.mint(token{SessionID: "gone"})
		c := &testclient.Client{HTTP: ts.http.Client(), Base: ts.base, Negotiation: testclient.Negotiation{SessionID: "gone", Token: tok}}
		ev, err := openStream(t, c, nil, nil).Next()
		if err != nil || ev.Frame.Kind != wire.KindClose || ev.Frame.Code != int(session.CodeSessionUnknown) {
			t.Fatalf("event %+v %v", ev, err)
		}
		c.Token = "bad"
		if _, err := c.OpenStream(testCtx(t), nil, nil); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("bad token: %v", err)
		}
	})
}

// retentionLog keeps only the newest messages, acknowledged or not, as a
// log bounded by age might: the session must refuse to resume across a hole.
type retentionLog struct {
	session.MemLog
	keep int
	msgs []session.Message
	last uint64
}

func (l *retentionLog) Append(_ context.Context, m session.Message) (uint64, error) {
	l.last++
	m.Seq = l.last
	l.msgs = append(l.msgs, m)
	if len(l.msgs) > l.keep {
		l.msgs = l.msgs[len(l.msgs)-l.keep:]
	}
	return l.last, nil
}
func (l *retentionLog) Ack(_ context.Context, seq uint64) error {
	for len(l.msgs) > 0 && l.msgs[0].Seq <= seq {
		l.msgs = l.msgs[1:]
	}
	return nil
}
func (l *retentionLog) Read(_ context.Context, after uint64, _ int, dst []session.Message) ([]session.Message, error) {
	for _, m := range l.msgs {
		if m.Seq > after {
			dst = append(dst, m)
		}
	}
	return dst, nil
}
func (l *retentionLog) Last() uint64 { return l.last }
func (l *retentionLog) First() uint64 {
	if len(l.msgs) > 0 {
		return l.msgs[0].Seq
	}
	return l.last + 1
}
func (l *retentionLog) Len() (int, int) { return len(l.msgs), 0 }
func (l *retentionLog) Free()           { l.msgs = nil }

func TestEventStreamReplacedAndClosed(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	first := openStream(t, c, nil, nil)
	s := rc.session(t)
	first.Next()
	second := openStream(t, c, nil, nil)
	if ev, err := first.Next(); err != nil || ev.Frame.Kind != wire.KindEnd || ev.Frame.Code != int(session.CodeReplaced) {
		t.Fatalf("replaced stream: %+v %v", ev, err)
	}
	if _, err := first.Next(); err == nil {
		t.Fatal("replaced stream did not end")
	}
	second.Next()
	s.Send(testCtx(t), "last")
	s.Close(4321, "done")
	if got := streamFor(t, c, second, 1); got[0] != "last" {
		t.Fatalf("got %q", got)
	}
	if ev, err := second.Next(); err != nil || ev.Frame.Kind != wire.KindClose || ev.Frame.Code != 4321 {
		t.Fatalf("close event %+v %v", ev, err)
	}
}

// A client that stops reading is cut off at the write deadline; its
// session waits for it, other sessions carry on, and a new stream resumes
// with nothing lost.
func TestEventStreamStalledReader(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{
		Session:     session.Config{MaxQueueBytes: 64 << 20, MaxQueueMessages: 4096},
		EventStream: eventstream.Options{WriteTimeout: 300 * time.Millisecond, MaxStreamBytes: 1 << 30},
	})
	c := ts.negotiate(t)
	u, _ := url.Parse(c.URL("eventstream", nil))
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host) // and never read
	s := rc.session(t)
	big := strings.Repeat("x", 60<<10)
	for i := 0; i < 400; i++ { // 24 MB: more than loopback's socket buffers hold
		if err := s.Send(testCtx(t), big); err != nil {
			t.Fatal(err)
		}
	}
	// The stalled write times out and detaches: the disconnect timer runs.
	if !ts.clock.WaitPending(30*time.Second, 1, testCtx(t).Done()) {
		t.Fatal("stalled stream never detached")
	}
	if s.State() != session.Open {
		t.Fatalf("session state %v", s.State())
	}
	// Another session is unaffected.
	other := ts.negotiate(t)
	if _, err := other.Send(testCtx(t), "still here"); err != nil || rc.next(t) != "still here" {
		t.Fatalf("other session: %v", err)
	}
	// The client comes back and gets all 400, in order, once — reconnecting
	// and resuming again if it, too, reads too slowly for the 300 ms deadline.
	for attempts := 0; c.Received() < 400; attempts++ {
		if attempts == 50 {
			t.Fatalf("only %d messages after %d streams", c.Received(), attempts)
		}
		st := openStream(t, c, url.Values{"ack": {fmt.Sprint(c.Received())}}, nil)
		for c.Received() < 400 {
			ev, err := st.Next()
			if err != nil {
				break
			}
			if m, ok, err := c.Take(ev); err != nil {
				t.Fatal(err)
			} else if ok && m != big {
				t.Fatalf("message %d corrupted", c.Received())
			}
		}
		st.Close()
	}
}
