package longpoll

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// parkedServer is a real http.Server serving with serve; connState, if
// set, is its ConnState hook.
func parkedServer(t *testing.T, serve http.HandlerFunc, connState func(net.Conn, http.ConnState)) *httptest.Server {
	t.Helper()
	hs := httptest.NewUnstartedServer(serve)
	hs.Config.ConnState = connState
	hs.Start()
	t.Cleanup(hs.Close)
	return hs
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// dialPoll opens a connection to hs and writes a poll request on it.
func dialPoll(t *testing.T, hs *httptest.Server, extra string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hung test fails instead
	if _, err := io.WriteString(conn, "GET /poll HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

func waitStats(t *testing.T, lp *Transport, ok func(ParkStats) bool) ParkStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		st, changed := lp.ParkStats()
		if ok(st) {
			return st
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("park stats stuck at %+v", st)
		}
	}
}

// From the moment net/http lets go of a poll's connection (its ConnState
// hook sees it hijacked, and http.Server.Shutdown no longer waits for it),
// the poll is counted as parked: WaitParked cannot return in between.
func TestPollCountedParkedBeforeHijacked(t *testing.T) {
	lp := New(Options{ParkAfter: -1, Logger: quietLogger()})
	s := newSession(t)
	parkedAtHijack := make(chan ParkStats, 1)
	waitErr := make(chan error, 1)
	hs := parkedServer(t, func(w http.ResponseWriter, r *http.Request) { lp.ServePoll(w, r, s) },
		func(_ net.Conn, st http.ConnState) {
			if st != http.StateHijacked {
				return
			}
			stats, _ := lp.ParkStats()
			parkedAtHijack <- stats
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			waitErr <- lp.WaitParked(ctx)
		})
	_, br := dialPoll(t, hs, "")
	if st := <-parkedAtHijack; st.Parked != 1 {
		t.Fatalf("at the hijack: %+v, want the poll counted as parked", st)
	}
	if err := <-waitErr; err == nil {
		t.Fatal("WaitParked returned while a poll was being parked")
	}
	waitStats(t, lp, func(st ParkStats) bool { return st.Parks == 1 })
	if err := s.Send(context.Background(), "one"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := lp.WaitParked(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A parked poll whose http.Server was closed meanwhile is answered with
// Connection: close, as net/http answers a request of a server that is
// stopping, and its connection is closed after the answer (it cannot go
// back to the server).
func TestParkedAnswerOfClosedServerSaysClose(t *testing.T) {
	lp := New(Options{ParkAfter: -1, Logger: quietLogger()})
	s := newSession(t)
	hs := parkedServer(t, func(w http.ResponseWriter, r *http.Request) { lp.ServePoll(w, r, s) }, nil)
	_, br := dialPoll(t, hs, "")
	waitStats(t, lp, func(st ParkStats) bool { return st.Parks == 1 })
	if err := hs.Config.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "one"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "6:m1:one\n" || !resp.Close {
		t.Fatalf("answer after the server closed: close=%v %q; want Connection: close", resp.Close, body)
	}
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the answer: %d bytes, %v; want EOF", n, err)
	}
	if err := lp.WaitParked(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// http.Server.Shutdown does not wait for hijacked connections: the polls
// parked on its connections are answered at once (a heartbeat, as nothing
// was due; with Connection: close), those parked before Shutdown and
// those of requests it was waiting for that park after it began.
func TestHTTPServerShutdownAnswersParkedPolls(t *testing.T) {
	lp := New(Options{ParkAfter: -1, Logger: quietLogger()})
	early, late := newSession(t), newSession(t)
	arrived, gate := make(chan struct{}), make(chan struct{})
	hs := parkedServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/late" {
			close(arrived)
			<-gate // in flight when Shutdown begins: it waits for this request
			lp.ServePoll(w, r, late)
			return
		}
		lp.ServePoll(w, r, early)
	}, nil)
	var opened sync.Once
	open := func() { opened.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the server's: a failing test must not leave the request waiting
	_, earlyBr := dialPoll(t, hs, "")
	waitStats(t, lp, func(st ParkStats) bool { return st.Parks == 1 })
	lateConn, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer lateConn.Close()
	_ = lateConn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(lateConn, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	lateBr := bufio.NewReader(lateConn)
	<-arrived
	shut := make(chan struct{})
	var shutErr error
	go func() {
		defer close(shut)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutErr = hs.Config.Shutdown(ctx)
	}()
	t.Cleanup(func() { <-shut })

	expect := func(br *bufio.Reader, which string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s poll: %v", which, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "1:h\n" || !resp.Close {
			t.Fatalf("%s poll at Shutdown: %d close=%v %q; want a heartbeat and Connection: close", which, resp.StatusCode, resp.Close, body)
		}
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("%s poll: after the answer %d bytes, %v; want EOF", which, n, err)
		}
	}
	expect(earlyBr, "parked")
	open()
	expect(lateBr, "late")
	<-shut // the late request was hijacked: Shutdown waits for it no more
	if shutErr != nil {
		t.Fatal(shutErr)
	}
	if err := lp.WaitParked(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The sessions go on: their messages wait for the clients' next polls.
	if err := early.Send(context.Background(), "after"); err != nil {
		t.Fatal(err)
	}
}
