package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cometkit/cometkit/internal/fakeclock"
	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/longpoll"
	"github.com/cometkit/cometkit/transports/wire"
)

// rawConn is an HTTP/1.1 client connection driven by hand, so that a test
// sees exactly what the server writes and when it closes, and owns no
// goroutine.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, ts *testServer) *rawConn {
	t.Helper()
	u, _ := url.Parse(ts.http.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A hung server fails the test instead of hanging it.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{Conn: conn, br: bufio.NewReader(conn)}
}

// request writes a request for u (absolute URL) with extra header lines.
func (c *rawConn) request(t *testing.T, method, u string, extra ...string) {
	t.Helper()
	if _, err := io.WriteString(c, rawRequest(method, u, extra...)); err != nil {
		t.Fatal(err)
	}
}

func rawRequest(method, u string, extra ...string) string {
	pu, _ := url.Parse(u)
	s := method + " " + pu.RequestURI() + " HTTP/1.1\r\nHost: " + pu.Host + "\r\n"
	for _, h := range extra {
		s += h + "\r\n"
	}
	if method == http.MethodPost {
		s += "Content-Length: 0\r\n"
	}
	return s + "\r\n"
}

// response reads one response and its body.
func (c *rawConn) response(t *testing.T) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a response body: %v", err)
	}
	return resp, string(b)
}

// newParkingServer is a test server whose held polls park at once.
func newParkingServer(t *testing.T, h Handler, lpo longpoll.Options) *testServer {
	if lpo.ParkAfter == 0 {
		lpo.ParkAfter = -1
	}
	return newTestServer(t, h, Options{LongPoll: lpo})
}

// waitParks waits until the server has parked n polls since it started.
func waitParks(t *testing.T, ts *testServer, n uint64) longpoll.ParkStats {
	t.Helper()
	for {
		st, changed := ts.longpoll.ParkStats()
		if st.Parks >= n {
			return st
		}
		select {
		case <-changed:
		case <-testCtx(t).Done():
			t.Fatalf("%d polls parked, want %d", st.Parks, n)
		}
	}
}

// waitParked waits until exactly n polls are parked now.
func waitParked(t *testing.T, ts *testServer, n int) longpoll.ParkStats {
	t.Helper()
	for {
		st, changed := ts.longpoll.ParkStats()
		if st.Parked == n {
			return st
		}
		select {
		case <-changed:
		case <-testCtx(t).Done():
			t.Fatalf("%d polls parked now, want %d", st.Parked, n)
		}
	}
}

// openSession negotiates and opens a session by a send (which leaves no
// poll held), and returns its client and the application's side.
func openSession(t *testing.T, ts *testServer, rc *recorder) (*testclient.Client, *session.Session) {
	t.Helper()
	c := ts.negotiate(t)
	if _, err := c.Send(testCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	s := rc.session(t)
	if m := rc.next(t); m != "hello" {
		t.Fatalf("application got %q", m)
	}
	return c, s
}

func pollURL(c *testclient.Client, extra url.Values) string {
	q := url.Values{"ack": {fmt.Sprint(c.Received())}}
	for k, v := range extra {
		q[k] = v
	}
	return c.URL("poll", q)
}

// A held poll that has waited ParkAfter is parked: neither net/http's
// connection goroutine, nor its background reader, nor the request's
// handler is left; the answer comes when the session has something to say,
// and the connection then serves the client's next request.
func TestParkedPollHoldsNoGoroutine(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{}) // the default ParkAfter, on the fake clock
	c, s := openSession(t, ts, rc)
	ts.http.Client().Transport.(*http.Transport).CloseIdleConnections()
	baseline := goleak.IgnoreCurrent()

	conn := dialRaw(t, ts)
	conn.request(t, http.MethodGet, pollURL(c, nil))
	if !ts.clock.WaitPending(longpoll.DefaultParkAfter, 1, testCtx(t).Done()) {
		t.Fatal("the poll never armed its park timer")
	}
	ts.clock.Advance(longpoll.DefaultParkAfter - time.Millisecond)
	if st, _ := ts.longpoll.ParkStats(); st.Parks != 0 || ts.clock.Pending(longpoll.DefaultParkAfter) != 1 {
		t.Fatalf("parked before ParkAfter: %+v", st)
	}
	ts.clock.Advance(time.Millisecond)
	waitParked(t, ts, 1)
	if ts.Stats().ParkedPolls != 1 {
		t.Fatalf("stats: %+v", ts.Stats())
	}
	// goleak.Find retries until the request's goroutines are gone (or
	// fails after its own deadline): only the hang-up watcher may be new.
	if err := goleak.Find(baseline, goleak.IgnoreAnyFunction("github.com/cometkit/cometkit/transports/longpoll.(*watcher).run")); err != nil {
		t.Fatalf("goroutines left by a parked poll: %v", err)
	}

	if err := s.Send(testCtx(t), "to the parked poll"); err != nil {
		t.Fatal(err)
	}
	resp, body := conn.response(t)
	if resp.StatusCode != http.StatusOK || body != string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: 1, Data: "to the parked poll"})) {
		t.Fatalf("parked poll answered %d %q", resp.StatusCode, body)
	}
	if resp.Close {
		t.Fatal("a parked poll's answer closed its connection")
	}
	waitParked(t, ts, 0)
	// The same connection, handed back to net/http, serves the next request.
	conn.request(t, http.MethodPost, c.URL("send", nil))
	if resp, body := conn.response(t); resp.StatusCode != http.StatusOK || body != "2:a1\n" {
		t.Fatalf("the next request on the connection: %d %q", resp.StatusCode, body)
	}
}

// A busy session's poll is held for twice what its last poll waited for a
// message (within ParkAfter and MaxHold) before it is parked; a poll that
// waited MaxHold or more, or had only a heartbeat to say, leaves the next
// one to park at ParkAfter.
func TestBusySessionsPollIsHeldLonger(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{}) // the default ParkAfter and MaxHold, on the fake clock
	c, s := openSession(t, ts, rc)
	conn := dialRaw(t, ts)
	sent := 0
	// poll holds a poll until its park timer (of hold) is armed, advances
	// the clock by wait, and answers it with a message. It reports whether
	// the poll was parked meanwhile.
	poll := func(hold, wait time.Duration) bool {
		t.Helper()
		st0, _ := ts.longpoll.ParkStats()
		conn.request(t, http.MethodGet, pollURL(c, nil))
		if !ts.clock.WaitPending(hold, 1, testCtx(t).Done()) {
			t.Fatalf("poll %d: no park timer of %s", sent+1, hold)
		}
		ts.clock.Advance(wait)
		if wait >= hold {
			waitParks(t, ts, st0.Parks+1)
		}
		sent++
		msg := fmt.Sprint("message ", sent)
		if err := s.Send(testCtx(t), msg); err != nil {
			t.Fatal(err)
		}
		resp, body := conn.response(t)
		want := string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: uint64(sent), Data: msg}))
		if resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("poll %d answered %d %q, want %q", sent, resp.StatusCode, body, want)
		}
		c.Take(testclient.Event{Frame: wire.Frame{Kind: wire.KindMessage, Seq: uint64(sent)}})
		st1, _ := ts.longpoll.ParkStats()
		return st1.Parks > st0.Parks
	}
	const parkAfter, maxHold = longpoll.DefaultParkAfter, longpoll.DefaultMaxHold
	// The first poll knows nothing of the pace: ParkAfter. It waits 40 ms.
	if poll(parkAfter, 40*time.Millisecond) {
		t.Fatal("poll 1 parked before ParkAfter")
	}
	// The next is held 80 ms, and answered after 79: still held.
	if poll(80*time.Millisecond, 79*time.Millisecond) {
		t.Fatal("poll 2 parked within twice the last wait")
	}
	// 2 x 79 ms is 158 ms: held that long, then parked, answered at 200.
	if !poll(158*time.Millisecond, 200*time.Millisecond) {
		t.Fatal("poll 3 was not parked at twice the last wait")
	}
	// 2 x 200 ms is over MaxHold: held MaxHold; it waits MaxHold itself.
	if !poll(maxHold, maxHold) {
		t.Fatal("poll 4 was not parked at MaxHold")
	}
	// A wait of MaxHold says the session is not busy: ParkAfter again. It
	// waits a second.
	if !poll(parkAfter, time.Second) {
		t.Fatal("poll 5 was not parked at ParkAfter")
	}
	// And so does a wait of a second. After a wait of 10 ms, ParkAfter
	// still bounds the hold from below.
	if poll(parkAfter, 10*time.Millisecond) {
		t.Fatal("poll 6 parked before ParkAfter")
	}
	if !poll(parkAfter, 100*time.Millisecond) {
		t.Fatal("poll 7 was not parked at ParkAfter")
	}
	// A poll answered by the heartbeat (held 200 ms, then parked): ParkAfter
	// again after it.
	conn.request(t, http.MethodGet, pollURL(c, nil))
	if !ts.clock.WaitPending(200*time.Millisecond, 1, testCtx(t).Done()) {
		t.Fatal("poll 8: no park timer of 200 ms")
	}
	ts.clock.Advance(ts.cfg.HeartbeatInterval)
	if resp, body := conn.response(t); resp.StatusCode != http.StatusOK || body != string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindHeartbeat})) {
		t.Fatalf("poll 8 answered %d %q, want a heartbeat", resp.StatusCode, body)
	}
	if !poll(parkAfter, parkAfter) {
		t.Fatal("the poll after a heartbeat was not parked at ParkAfter")
	}
}

// A parked poll's answer carries the headers a held poll's answer carries
// (Date aside), for a same-origin and a cross-origin poll, plain and JSONP.
func TestParkedAnswerHasTheHeldAnswersHeaders(t *testing.T) {
	answer := func(t *testing.T, lpo longpoll.Options, header []string, q url.Values) (http.Header, string) {
		rc := newRecorder()
		ts := newTestServer(t, rc, Options{LongPoll: lpo, AllowedOrigins: []string{"https://app.example"}})
		c, s := openSession(t, ts, rc)
		conn := dialRaw(t, ts)
		conn.request(t, http.MethodGet, pollURL(c, q), header...)
		if lpo.NoHijack {
			if !ts.clock.WaitPending(25*time.Second, 1, testCtx(t).Done()) {
				t.Fatal("no heartbeat timer")
			}
		} else {
			waitParks(t, ts, 1)
		}
		if err := s.Send(testCtx(t), "x</script>"); err != nil {
			t.Fatal(err)
		}
		resp, body := conn.response(t)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		resp.Header.Del("Date")
		return resp.Header, body
	}
	for _, tc := range []struct {
		name   string
		header []string
		q      url.Values
	}{
		{"same origin", nil, nil},
		{"cross origin", []string{"Origin: https://app.example"}, nil},
		{"jsonp", nil, url.Values{"callback": {"cb"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heldH, heldBody := answer(t, longpoll.Options{NoHijack: true}, tc.header, tc.q)
			parkedH, parkedBody := answer(t, longpoll.Options{ParkAfter: -1}, tc.header, tc.q)
			if fmt.Sprint(heldH) != fmt.Sprint(parkedH) || heldBody != parkedBody {
				t.Fatalf("held answer:\n%v %q\nparked answer:\n%v %q", heldH, heldBody, parkedH, parkedBody)
			}
		})
	}
}

// A parked poll is answered by the session's heartbeat.
func TestHeartbeatAnswersParkedPoll(t *testing.T) {
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	c, _ := openSession(t, ts, rc)
	done := pollAsync(t, c)
	waitParked(t, ts, 1)
	ts.clock.Advance(25 * time.Second)
	res := <-done
	if len(res.Frames) != 1 || res.Frames[0].Kind != wire.KindHeartbeat {
		t.Fatalf("heartbeat answer: %+v", res.Frames)
	}
}

// A parked poll replaced by a newer one is told so (x4010), and the newer
// one gets the next message, once.
func TestNewerPollEndsParkedPoll(t *testing.T) {
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	c, s := openSession(t, ts, rc)
	first := pollAsync(t, c)
	waitParks(t, ts, 1)
	second := pollAsync(t, c)
	res := <-first
	if res.End == nil || res.End.Code != int(session.CodeReplaced) || len(res.Frames) != 1 {
		t.Fatalf("older parked poll answered %+v; want only an end frame 4010", res.Frames)
	}
	waitParks(t, ts, 2)
	if err := s.Send(testCtx(t), "for the newer poll"); err != nil {
		t.Fatal(err)
	}
	if res := <-second; len(res.Messages) != 1 || res.Messages[0] != "for the newer poll" {
		t.Fatalf("newer poll: %+v", res.Frames)
	}
}

// A client that closes its connection while its poll is parked detaches
// the session at once: the disconnect timeout starts then, as it does when
// net/http sees a held poll abandoned.
func TestClientHangsUpParkedPoll(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hang-ups of parked polls are watched on Linux only")
	}
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	c, s := openSession(t, ts, rc)
	conn := dialRaw(t, ts)
	conn.request(t, http.MethodGet, pollURL(c, nil))
	waitParked(t, ts, 1)
	if ts.clock.Pending(30*time.Second) != 0 {
		t.Fatal("disconnect timer armed while the poll is parked")
	}
	conn.Close()
	st := waitParked(t, ts, 0)
	if st.HangUps != 1 {
		t.Fatalf("stats after the hang-up: %+v", st)
	}
	if ts.clock.Pending(30*time.Second) != 1 {
		t.Fatal("disconnect timer not armed after the parked poll's client left")
	}
	// Nothing was lost: the next poll gets what was sent meanwhile.
	if err := s.Send(testCtx(t), "after the hang-up"); err != nil {
		t.Fatal(err)
	}
	if got := pollFor(t, c, 1); got[0] != "after the hang-up" {
		t.Fatalf("got %q", got)
	}
}

// Shutdown answers parked polls with their close frame, and returns once
// the answers are written.
func TestShutdownAnswersParkedPolls(t *testing.T) {
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	var conns []*rawConn
	for i := 0; i < 3; i++ {
		c, _ := openSession(t, ts, rc)
		conn := dialRaw(t, ts)
		conn.request(t, http.MethodGet, pollURL(c, nil))
		conns = append(conns, conn)
	}
	waitParked(t, ts, 3)
	if err := ts.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if st, _ := ts.longpoll.ParkStats(); st.Parked != 0 {
		t.Fatalf("Shutdown returned with %d polls parked", st.Parked)
	}
	for _, conn := range conns {
		resp, body := conn.response(t)
		frames, err := wire.ParseBatch(body, 10)
		if resp.StatusCode != http.StatusOK || err != nil || len(frames) != 1 || frames[0].Kind != wire.KindClose || frames[0].Code != int(session.CodeGoingAway) {
			t.Fatalf("parked poll at Shutdown: %d %q", resp.StatusCode, body)
		}
	}
}

// Close answers parked polls too (c1001, the session is over).
func TestClosedServerAnswersParkedPoll(t *testing.T) {
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	c, _ := openSession(t, ts, rc)
	done := pollAsync(t, c)
	waitParked(t, ts, 1)
	ts.Close()
	if res := <-done; res.Close == nil || res.Close.Code != int(session.CodeGoingAway) || res.End != nil {
		t.Fatalf("parked poll at Close: %+v", res.Frames)
	}
}

// With CloseParked, and for a request that asks for it, the answer says
// Connection: close and the server closes the connection after it.
func TestParkedPollConnectionClose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lpo    longpoll.Options
		header []string
	}{
		{"CloseParked", longpoll.Options{CloseParked: true}, nil},
		{"client asks", longpoll.Options{}, []string{"Connection: close"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRecorder()
			ts := newParkingServer(t, rc, tc.lpo)
			c, s := openSession(t, ts, rc)
			conn := dialRaw(t, ts)
			conn.request(t, http.MethodGet, pollURL(c, nil), tc.header...)
			waitParked(t, ts, 1)
			if err := s.Send(testCtx(t), "last"); err != nil {
				t.Fatal(err)
			}
			resp, body := conn.response(t)
			if !resp.Close || body != "7:m1:last\n" {
				t.Fatalf("answer: close=%v %q", resp.Close, body)
			}
			if n, err := conn.br.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the answer: %d bytes, %v; want EOF", n, err)
			}
		})
	}
}

// A request the client sent after its poll, before the answer (pipelining),
// is served after the answer, on the connection handed back.
func TestParkedPollKeepsPipelinedRequest(t *testing.T) {
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	c, s := openSession(t, ts, rc)
	conn := dialRaw(t, ts)
	// Both requests in one write, so the server reads them together.
	both := rawRequest(http.MethodGet, pollURL(c, nil)) + rawRequest(http.MethodPost, c.URL("send", nil))
	if _, err := io.WriteString(conn, both); err != nil {
		t.Fatal(err)
	}
	waitParked(t, ts, 1)
	if err := s.Send(testCtx(t), "one"); err != nil {
		t.Fatal(err)
	}
	if _, body := conn.response(t); body != "6:m1:one\n" {
		t.Fatalf("poll: %q", body)
	}
	if resp, body := conn.response(t); resp.StatusCode != http.StatusOK || body != "2:a1\n" {
		t.Fatalf("pipelined send: %d %q", resp.StatusCode, body)
	}
}

// HTTP/1.0 polls are not parked (their keep-alive rules differ); they are
// held and answered as before.
func TestHTTP10PollIsHeld(t *testing.T) {
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	c, s := openSession(t, ts, rc)
	conn := dialRaw(t, ts)
	req := strings.Replace(rawRequest(http.MethodGet, pollURL(c, nil)), "HTTP/1.1", "HTTP/1.0", 1)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if !ts.clock.WaitPending(25*time.Second, 1, testCtx(t).Done()) {
		t.Fatal("poll not held")
	}
	if err := s.Send(testCtx(t), "old"); err != nil {
		t.Fatal(err)
	}
	if _, body := conn.response(t); body != "6:m1:old\n" {
		t.Fatalf("HTTP/1.0 poll: %q", body)
	}
	if st, _ := ts.longpoll.ParkStats(); st.Parks != 0 {
		t.Fatalf("HTTP/1.0 poll parked: %+v", st)
	}
}

// Eight clients exchange 200 messages each with a real clock, 2 ms
// heartbeats, every waiting poll parked at once (half the polls wait, as
// only every other one follows a send), and polls abandoned at random
// moments: nothing is lost, nothing doubled, everything in order.
func TestStressParkedPolls(t *testing.T) {
	ts := newTestServer(t, echo, Options{
		Session:  session.Config{HeartbeatInterval: 2 * time.Millisecond, DisconnectTimeout: 2 * time.Second, Clock: session.RealClock{}},
		LongPoll: longpoll.Options{ParkAfter: -1, Clock: session.RealClock{}},
	})
	stressAbandonedPolls(t, ts, 11, true)
	st, _ := ts.longpoll.ParkStats()
	t.Logf("%+v", st)
	if st.Parks == 0 {
		t.Fatal("no poll was parked")
	}
}

// Over TLS a parked poll is answered the same way, and its connection, a
// *tls.Conn handed back to the http.Server, serves the next request.
func TestParkedPollOverTLS(t *testing.T) {
	rc := newRecorder()
	srv, err := New(rc, Options{HashKey: []byte("0123456789abcdef0123456789abcdef-test-key"), Logger: discard,
		Session: session.Config{Clock: fakeclock.New()}, LongPoll: longpoll.Options{ParkAfter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewTLSServer(srv)
	t.Cleanup(func() { srv.Close(); hs.Close() })
	c, err := testclient.Negotiate(testCtx(t), hs.Client(), hs.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(testCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	s := rc.session(t)
	conn, err := tls.Dial("tcp", hs.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	raw := &rawConn{Conn: conn, br: bufio.NewReader(conn)}
	raw.request(t, http.MethodGet, pollURL(c, nil))
	for {
		st, changed := srv.longpoll.ParkStats()
		if st.Parked == 1 {
			break
		}
		select {
		case <-changed:
		case <-testCtx(t).Done():
			t.Fatal("the TLS poll was not parked")
		}
	}
	if err := s.Send(testCtx(t), "secret"); err != nil {
		t.Fatal(err)
	}
	if resp, body := raw.response(t); resp.StatusCode != http.StatusOK || resp.Close || body != "9:m1:secret\n" {
		t.Fatalf("parked TLS poll: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	raw.request(t, http.MethodPost, c.URL("send", nil))
	if resp, body := raw.response(t); resp.StatusCode != http.StatusOK || body != "2:a1\n" {
		t.Fatalf("next request on the TLS connection: %d %q", resp.StatusCode, body)
	}
}

// An HTTP/2 poll has no connection of its own to take: it is held.
func TestHTTP2PollIsHeld(t *testing.T) {
	rc := newRecorder()
	clock := fakeclock.New()
	srv, err := New(rc, Options{HashKey: []byte("0123456789abcdef0123456789abcdef-test-key"), Logger: discard,
		Session: session.Config{Clock: clock}, LongPoll: longpoll.Options{ParkAfter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(func() { srv.Close(); hs.Close() })
	pollIsHeldNotParked(t, srv, hs, rc, clock, "over h2")
}

// pollIsHeldNotParked opens a session on hs, whose srv parks every poll it
// can at once (ParkAfter -1), and checks that its poll is held by net/http
// instead: answered when a message comes, and never counted parked.
func pollIsHeldNotParked(t *testing.T, srv *Server, hs *httptest.Server, rc *recorder, clock *fakeclock.Clock, text string) {
	t.Helper()
	c, err := testclient.Negotiate(testCtx(t), hs.Client(), hs.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(testCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	s := rc.session(t)
	done := pollAsync(t, c)
	if !clock.WaitPending(25*time.Second, 1, testCtx(t).Done()) {
		t.Fatal("poll not held")
	}
	if err := s.Send(testCtx(t), text); err != nil {
		t.Fatal(err)
	}
	if res := <-done; len(res.Messages) != 1 || res.Messages[0] != text {
		t.Fatalf("poll: %+v", res.Frames)
	}
	if st, _ := srv.longpoll.ParkStats(); st.Parks != 0 {
		t.Fatalf("a poll that cannot be parked was parked: %+v", st)
	}
}

// hidingWriter is middleware's ResponseWriter that neither hijacks nor
// unwraps.
type hidingWriter struct{ w http.ResponseWriter }

func (h hidingWriter) Header() http.Header         { return h.w.Header() }
func (h hidingWriter) Write(p []byte) (int, error) { return h.w.Write(p) }
func (h hidingWriter) WriteHeader(code int)        { h.w.WriteHeader(code) }

// Behind a ResponseWriter that cannot be hijacked, a poll is held.
func TestUnhijackablePollIsHeld(t *testing.T) {
	rc := newRecorder()
	clock := fakeclock.New()
	srv, err := New(rc, Options{HashKey: []byte("0123456789abcdef0123456789abcdef-test-key"), Logger: discard,
		Session: session.Config{Clock: clock}, LongPoll: longpoll.Options{ParkAfter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { srv.ServeHTTP(hidingWriter{w}, r) }))
	t.Cleanup(func() { srv.Close(); hs.Close() })
	pollIsHeldNotParked(t, srv, hs, rc, clock, "held")
}

// A connection handed back after a parked answer is a kept-alive one: with
// only IdleTimeout set on the http.Server, it is closed after IdleTimeout
// with no request, as net/http closes its own idle connections. (net/http
// sets no deadline for a new connection's first request in that case.)
func TestHandedBackConnectionKeepsIdleTimeout(t *testing.T) {
	rc := newRecorder()
	srv, err := New(rc, Options{HashKey: []byte("0123456789abcdef0123456789abcdef-test-key"), Logger: discard,
		LongPoll: longpoll.Options{ParkAfter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.IdleTimeout = 200 * time.Millisecond
	hs.Start()
	t.Cleanup(func() { srv.Close(); hs.Close() })
	ts := &testServer{Server: srv, http: hs, base: hs.URL}
	c, s := openSession(t, ts, rc)
	conn := dialRaw(t, ts)
	conn.request(t, http.MethodGet, pollURL(c, nil))
	waitParked(t, ts, 1)
	if err := s.Send(testCtx(t), "one"); err != nil {
		t.Fatal(err)
	}
	if resp, body := conn.response(t); resp.Close || body != "6:m1:one\n" {
		t.Fatalf("answer: close=%v %q", resp.Close, body)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle handed-back connection: %v after %v, want the server to close it", err, time.Since(start))
	}
}

// A parked poll on a connection handed back with pipelined bytes (wrapped
// to replay them) is still watched: the client leaving is seen at once.
func TestHangUpSeenAfterPipelinedHandBack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hang-ups of parked polls are watched on Linux only")
	}
	rc := newRecorder()
	ts := newParkingServer(t, rc, longpoll.Options{})
	c, s := openSession(t, ts, rc)
	conn := dialRaw(t, ts)
	both := rawRequest(http.MethodGet, pollURL(c, nil)) + rawRequest(http.MethodPost, c.URL("send", nil))
	if _, err := io.WriteString(conn, both); err != nil {
		t.Fatal(err)
	}
	waitParked(t, ts, 1)
	if err := s.Send(testCtx(t), "one"); err != nil {
		t.Fatal(err)
	}
	conn.response(t)
	conn.response(t)
	c.Take(testclient.Event{Frame: wire.Frame{Kind: wire.KindMessage, Seq: 1}})
	conn.request(t, http.MethodGet, pollURL(c, nil)) // parks on the wrapped connection
	waitParks(t, ts, 2)
	conn.Close()
	if st := waitParked(t, ts, 0); st.HangUps != 1 {
		t.Fatalf("stats after the hang-up: %+v", st)
	}
}
