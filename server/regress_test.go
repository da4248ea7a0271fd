package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
)

// waitFor blocks until cond holds, re-checking whenever the server's
// sessions or handlers change.
func waitFor(t *testing.T, s *Server, cond func() bool) {
	t.Helper()
	for {
		s.mu.RLock()
		changed := s.changed
		s.mu.RUnlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-testCtx(t).Done():
			t.Fatal("condition never held")
		}
	}
}

// A poll held when the server frees its session gets a close frame (the
// session is over), not an end frame (which would mean "poll again").
func TestClosedServerAnswersHeldPollWithClose(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	done := pollAsync(t, c)
	rc.session(t)
	ts.Close()
	if res := <-done; res.Close == nil || res.Close.Code != int(session.CodeGoingAway) || res.End != nil {
		t.Fatalf("held poll at Close: %+v", res.Frames)
	}
}

// Shutdown frees sessions once clients have their close frames, but a
// message the server acknowledged before that still reaches the application.
func TestShutdownKeepsAcceptedMessages(t *testing.T) {
	release := make(chan struct{})
	opened := make(chan struct{})
	got := make(chan string, 1)
	h := HandlerFunc(func(s *session.Session) {
		close(opened)
		<-release // the application is busy
		m, err := s.Recv(s.Context())
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- m
	})
	ts := newTestServer(t, h, Options{})
	c := ts.negotiate(t)
	if res, err := c.Send(testCtx(t), "accepted"); err != nil || res.Ack != 1 {
		t.Fatalf("send: %+v %v", res, err)
	}
	<-opened // a send opens the session, poll or no poll
	polled := pollAsync(t, c)
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(testCtx(t)) }()
	if res := <-polled; res.Close == nil || res.Close.Code != int(session.CodeGoingAway) {
		t.Fatalf("poll during shutdown: %+v", res.Frames)
	}
	waitFor(t, ts.Server, func() bool { return ts.Len() == 0 })
	close(release)
	if m := <-got; m != "accepted" {
		t.Fatalf("application got %s", m)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestSendToClosingSessionCarriesTheClose(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	c.Send(testCtx(t), "hi")
	s := rc.session(t)
	s.Close(4500, "app says bye")
	res, err := c.SendRaw(testCtx(t), "")
	if err != nil || res.Ack != 1 || res.Close == nil || res.Close.Code != 4500 {
		t.Fatalf("empty send to a closing session: %+v %v", res, err)
	}
}

func TestRefusedSendReportsWhatWasAccepted(t *testing.T) {
	ts := newTestServer(t, echo, Options{Session: session.Config{MaxMessageBytes: 10}})
	c := ts.negotiate(t)
	_, err := c.Send(testCtx(t), "fine", strings.Repeat("z", 11))
	var he *testclient.Error
	if !errors.As(err, &he) || he.Status != http.StatusRequestEntityTooLarge || !strings.Contains(he.Body, `"ack":1`) {
		t.Fatalf("send with a too-large second message: %v", err)
	}
}

func TestClientMayNotCloseWithAConnectionCode(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	for _, code := range []int{4010, 4011} {
		if _, err := c.Close(testCtx(t), code, ""); err == nil || !strings.Contains(err.Error(), "bad_close_code") {
			t.Fatalf("client close with %d: %v", code, err)
		}
	}
	if ts.Session(c.SessionID).State() == session.Closing {
		t.Fatal("session closed by a refused close")
	}
}

func TestWildcardOriginGetsNoCredentials(t *testing.T) {
	ts := newTestServer(t, echo, Options{AllowedOrigins: []string{"*"}})
	resp, _ := do(t, ts, http.MethodPost, ts.base+"/negotiate", http.Header{"Origin": {"https://anywhere.example"}}, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://anywhere.example" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("wildcard origin: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestBadConfigRefused(t *testing.T) {
	for _, cfg := range []session.Config{
		{MaxQueueBytes: 100, MaxMessageBytes: 1000},
		{HeartbeatInterval: time.Minute, DisconnectTimeout: time.Second},
	} {
		if _, err := New(echo, Options{Session: cfg, Logger: discard}); err == nil {
			t.Fatalf("config %+v accepted", cfg)
		}
	}
}

// Eight clients exchange 200 messages each with a real clock, 3 ms
// heartbeats and polls abandoned at random moments: nothing is lost, nothing
// doubled, everything in order.
func TestStressRandomlyAbandonedPolls(t *testing.T) {
	ts := newTestServer(t, echo, Options{
		Session: session.Config{HeartbeatInterval: 3 * time.Millisecond, DisconnectTimeout: 2 * time.Second, Clock: session.RealClock{}},
	})
	stressAbandonedPolls(t, ts, 9, false)
}

// stressAbandonedPolls has eight clients of ts exchange 200 messages each
// with the echo handler, every poll abandoned at a random moment (rng seeded
// with seed and the client's number), sending before every poll or, with
// sometimes, before about half of them; each checks that what came back is
// everything it sent, once, in order.
func stressAbandonedPolls(t *testing.T, ts *testServer, seed uint64, sometimes bool) {
	t.Helper()
	const perClient = 200
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ctx := testCtx(t)
			c, err := testclient.Negotiate(ctx, ts.http.Client(), ts.base, nil)
			if err != nil {
				t.Error(err)
				return
			}
			rng := rand.New(rand.NewPCG(uint64(w), seed))
			var got []string
			for sent := 0; len(got) < perClient; {
				if sent < perClient && (!sometimes || rng.IntN(2) == 0) {
					if _, err := c.Send(ctx, fmt.Sprint(sent)); err != nil {
						t.Error(err)
						return
					}
					sent++
				}
				// Abandoned at a random moment: before it is held (or
				// parked), while it is, or while it is answered.
				pctx, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
				res, err := c.Poll(pctx)
				cancel()
				if err != nil {
					continue // abandoned: the next poll resumes
				}
				if res.Close != nil {
					t.Errorf("client %d: closed %+v", w, res.Close)
					return
				}
				got = append(got, res.Messages...)
			}
			for i, m := range got {
				if m != fmt.Sprint(i) {
					t.Errorf("client %d: message %d is %q", w, i, m)
					return
				}
			}
		}(w)
	}
	wg.Wait()
}

// The application reads the negotiation's header and address in its
// session (the session keeps the header packed; each read is a copy).
func TestSessionKeepsTheNegotiationHeader(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c, err := testclient.Negotiate(testCtx(t), ts.http.Client(), ts.base, http.Header{"X-App": {"one", "two"}, "Cookie": {"k=v"}})
	if err != nil {
		t.Fatal(err)
	}
	polled := pollAsync(t, c)
	s := rc.session(t)
	defer func() { s.Close(session.CodeNormal, ""); <-polled }()
	h := s.Header()
	if got := h.Values("X-App"); len(got) != 2 || got[0] != "one" || got[1] != "two" || h.Get("Cookie") != "k=v" {
		t.Fatalf("Header = %v", h)
	}
	h.Set("Cookie", "changed")
	info := s.Info()
	if info.Header.Get("Cookie") != "k=v" || info.RequestURI != "/rt/negotiate" || info.RemoteAddr == "" {
		t.Fatalf("Info = %+v", info)
	}
}

// A request bearing the very token minted for its session passes on the
// entry's sum of it, with no signature check (nothing allocated); one
// token byte off goes to the full check and is refused; a raw WebSocket's
// session, which has no token, matches none.
func TestAuthorizeByTokenSum(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	req := func(id, tok string) *http.Request {
		return httptest.NewRequest(http.MethodGet, "/rt/s/"+id+"/poll?ack=0&t="+url.QueryEscape(tok), nil)
	}
	gone := func(w http.ResponseWriter, _ *http.Request, _ session.Code, _ string) { w.WriteHeader(http.StatusGone) }
	r := req(c.SessionID, c.Token)
	if n := testing.AllocsPerRun(100, func() {
		if ts.authorize(nil, r, c.SessionID, gone) == nil {
			t.Fatal("the minted token refused")
		}
	}); n != 0 {
		t.Fatalf("%v allocations: not the fast path", n)
	}
	last := c.Token[len(c.Token)-5]
	last = map[bool]byte{true: 'A', false: 'B'}[last != 'A']
	w := httptest.NewRecorder()
	if ts.authorize(w, req(c.SessionID, c.Token[:len(c.Token)-5]+string(last)+c.Token[len(c.Token)-4:]), c.SessionID, gone) != nil || w.Code != http.StatusForbidden {
		t.Fatalf("a token one byte off: %d", w.Code)
	}
	raw, err := ts.create(httptest.NewRequest(http.MethodGet, "/rt/websocket", nil), session.NewID(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Terminate(session.CodeGoingAway, "test over")
	w = httptest.NewRecorder()
	if ts.authorize(w, req(raw.ID(), ""), raw.ID(), gone) != nil || w.Code != http.StatusUnauthorized {
		t.Fatalf("a raw session's request with an empty token: %d", w.Code)
	}
}
