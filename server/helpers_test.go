package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/goleak"

	"github.com/cometkit/cometkit/internal/fakeclock"
	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is a Server mounted at /rt in chi behind a real HTTP listener.
type testServer struct {
	*Server
	http  *httptest.Server
	clock *fakeclock.Clock
	base  string
}

func newTestServer(t *testing.T, h Handler, opts Options) *testServer {
	t.Helper()
	if noPoller {
		opts.WebSocket.NoPoller = true
	}
	clock := fakeclock.New()
	if opts.Session.Clock == nil {
		opts.Session.Clock = clock
	}
	if opts.HashKey == nil {
		opts.HashKey = []byte("0123456789abcdef0123456789abcdef-test-key")
	}
	if opts.Logger == nil {
		opts.Logger = discard
	}
	srv, err := New(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Mount("/rt", srv)
	ts := httptest.NewServer(r)
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return &testServer{Server: srv, http: ts, clock: clock, base: ts.URL + "/rt"}
}

func (ts *testServer) negotiate(t *testing.T) *testclient.Client {
	t.Helper()
	c, err := testclient.Negotiate(testCtx(t), ts.http.Client(), ts.base, nil)
	if err != nil {
		t.Fatalf("negotiate: %v", err)
	}
	return c
}

// testCtx ends with the test, and after a generous bound so that a hung
// request fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recorder is an application that records what each session receives and
// lets the test send to sessions.
type recorder struct {
	opened chan *session.Session
	got    chan string
	ended  chan error
}

func newRecorder() *recorder {
	return &recorder{opened: make(chan *session.Session, 16), got: make(chan string, 4096), ended: make(chan error, 4096)}
}

func (rc *recorder) ServeSession(s *session.Session) {
	rc.opened <- s
	for {
		m, err := s.Recv(context.Background())
		if err != nil {
			rc.ended <- err
			return
		}
		rc.got <- m
	}
}

func (rc *recorder) session(t *testing.T) *session.Session {
	t.Helper()
	select {
	case s := <-rc.opened:
		return s
	case <-testCtx(t).Done():
		t.Fatal("no session opened")
		return nil
	}
}

func (rc *recorder) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-rc.got:
		return m
	case <-testCtx(t).Done():
		t.Fatal("no message received by the application")
		return ""
	}
}

// echo sends back every message received.
var echo = HandlerFunc(func(s *session.Session) {
	for {
		m, err := s.Recv(context.Background())
		if err != nil {
			return
		}
		if err := s.Send(context.Background(), m); err != nil {
			return
		}
	}
})

// welcome sends "welcome" on open, then echoes.
var welcome = HandlerFunc(func(s *session.Session) {
	if err := s.Send(context.Background(), "welcome"); err != nil {
		return
	}
	echo(s)
})

func get(t *testing.T, ts *testServer, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	return do(t, ts, http.MethodGet, url, header, nil)
}

func do(t *testing.T, ts *testServer, method, url string, header http.Header, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// pollAsync starts a poll in its own goroutine and hands back its result
// (a failed poll fails the test).
func pollAsync(t *testing.T, c *testclient.Client) <-chan *testclient.Result {
	out := make(chan *testclient.Result, 1)
	go func() {
		res, err := c.Poll(testCtx(t))
		if err != nil {
			t.Error(err)
		}
		out <- res
	}()
	return out
}
