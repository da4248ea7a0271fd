package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

// pollFor polls until n new messages have arrived, failing on any close.
func pollFor(t *testing.T, c *testclient.Client, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		res, err := c.Poll(testCtx(t))
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if res.Close != nil {
			t.Fatalf("poll: session closed: %d %s (after %d messages)", res.Close.Code, res.Close.Data, len(got))
		}
		got = append(got, res.Messages...)
	}
	return got
}

func TestOpenAndEchoBothWays(t *testing.T) {
	ts := newTestServer(t, welcome, Options{})
	c := ts.negotiate(t)
	if c.Version != 1 || len(c.SessionID) != 36 || c.Token == "" || strings.Join(c.Transports, ",") != "websocket,eventstream,longpoll" {
		t.Fatalf("negotiation = %+v", c.Negotiation)
	}
	if c.Heartbeat != 25000 || c.Disconnect != 30000 {
		t.Fatalf("timings = %d, %d; want the defaults 25000, 30000", c.Heartbeat, c.Disconnect)
	}
	if got := pollFor(t, c, 1); got[0] != "welcome" {
		t.Fatalf("server to client: got %q", got)
	}
	for _, m := range []string{"hello", "ünïcödé ✓ 😀", ""} {
		res, err := c.Send(testCtx(t), m)
		if err != nil || res.Status != http.StatusOK {
			t.Fatalf("send %q: %v %+v", m, err, res)
		}
		if got := pollFor(t, c, 1); got[0] != m {
			t.Fatalf("echo of %q: got %q", m, got[0])
		}
	}
	if got := ts.Session(c.SessionID).Transport(); got != "longpoll" {
		t.Fatalf("Transport() = %q", got)
	}
}

func TestMountedInServeMux(t *testing.T) {
	srv, err := New(welcome, Options{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/deep/rt/", srv)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	defer srv.Close()
	c, err := testclient.Negotiate(testCtx(t), hs.Client(), hs.URL+"/deep/rt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pollFor(t, c, 1); got[0] != "welcome" {
		t.Fatalf("got %q", got)
	}
}

func TestThousandMessagesInOrderBothWays(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	const n = 1000
	sent := 0
	var got []string
	for len(got) < n {
		// Send in batches of up to 50 while polling, as a client would.
		if sent < n {
			var batch []string
			for i := 0; i < 50 && sent < n; i++ {
				batch = append(batch, fmt.Sprintf("msg-%04d", sent))
				sent++
			}
			if _, err := c.Send(testCtx(t), batch...); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, pollFor(t, c, 1)...)
	}
	for i, m := range got {
		if want := fmt.Sprintf("msg-%04d", i); m != want {
			t.Fatalf("message %d = %q, want %q", i, m, want)
		}
	}
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
}

// A poll answer the client never reads (the connection dropped) loses
// nothing: the next poll, acknowledging only what was really received,
// brings the same messages again, and after they are acknowledged they never
// come again.
func TestDroppedPollAnswerIsReplayedOnce(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	// Open the session with a poll that the client abandons while held.
	pollCtx, cancel := context.WithCancel(testCtx(t))
	held := make(chan error, 1)
	go func() { _, err := c.Poll(pollCtx); held <- err }()
	s := rc.session(t)
	cancel()
	if err := <-held; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned poll: %v", err)
	}
	for i := 1; i <= 3; i++ {
		if err := s.Send(testCtx(t), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The answer to this poll is "lost": read raw, not recorded by the client.
	resp, body := get(t, ts, c.URL("poll", url.Values{"ack": {"0"}}), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "m1:m1") || !strings.Contains(body, "m3:m3") {
		t.Fatalf("lost poll answer: %d %q", resp.StatusCode, body)
	}
	// Resume: the client still acknowledges 0, so all three come again.
	if got := pollFor(t, c, 3); strings.Join(got, ",") != "m1,m2,m3" {
		t.Fatalf("after resume got %q", got)
	}
	if err := s.Send(testCtx(t), "m4"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Poll(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Frames) != 1 || res.Frames[0].Seq != 4 || res.Frames[0].Data != "m4" {
		t.Fatalf("after ack 3 the poll brought %+v; want only m4", res.Frames)
	}
	if n, _ := s.Queued(); n != 1 {
		t.Fatalf("queued after ack 3 = %d, want 1 (m4 until acknowledged)", n)
	}
}

// The server drops every TCP connection while a poll is held; the client
// comes back on a new connection and misses nothing.
func TestConnectionCutMidPollResumes(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	// A raw connection: Go's HTTP client would silently retry the GET.
	u, _ := url.Parse(c.URL("poll", nil))
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)
	s := rc.session(t)
	ts.http.CloseClientConnections()
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("held poll answered %d bytes instead of being cut", n)
	}
	for i := 1; i <= 5; i++ {
		if err := s.Send(testCtx(t), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := pollFor(t, c, 5); strings.Join(got, ",") != "m1,m2,m3,m4,m5" {
		t.Fatalf("got %q", got)
	}
}

func TestRetriedSendIsNotDeliveredTwice(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	go c.Poll(testCtx(t)) // open the session
	rc.session(t)
	batch := string(wire.AppendBatchFrame(wire.AppendBatchFrame(nil,
		wire.Frame{Kind: wire.KindMessage, Seq: 1, Data: "one"}),
		wire.Frame{Kind: wire.KindMessage, Seq: 2, Data: "two"}))
	for try := 0; try < 3; try++ { // the same request, as a client retries it after a lost answer
		res, err := c.SendRaw(testCtx(t), batch)
		if err != nil || res.Ack != 2 {
			t.Fatalf("try %d: ack %+v, %v", try, res, err)
		}
	}
	// A retry overlapping new messages: 2 again, then 3.
	res, err := c.SendRaw(testCtx(t), string(wire.AppendBatchFrame(wire.AppendBatchFrame(nil,
		wire.Frame{Kind: wire.KindMessage, Seq: 2, Data: "two"}),
		wire.Frame{Kind: wire.KindMessage, Seq: 3, Data: "three"})))
	if err != nil || res.Ack != 3 {
		t.Fatalf("overlapping retry: %+v, %v", res, err)
	}
	for _, want := range []string{"one", "two", "three"} {
		if got := rc.next(t); got != want {
			t.Fatalf("application got %q, want %q", got, want)
		}
	}
	select {
	case m := <-rc.got:
		t.Fatalf("application got %q a second time", m)
	default:
	}
	if got := ts.Session(c.SessionID).Received(); got != 3 {
		t.Fatalf("Received() = %d", got)
	}
}

func TestSequenceGapRefused(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	res, err := c.SendRaw(testCtx(t), string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: 2, Data: "x"})))
	var he *testclient.Error
	if !errors.As(err, &he) || res.Status != http.StatusBadRequest || !strings.Contains(he.Body, `"sequence_gap"`) {
		t.Fatalf("gap: %+v %v", res, err)
	}
}

func TestExpiredSessionAnswersReset(t *testing.T) {
	ts := newTestServer(t, welcome, Options{})
	c := ts.negotiate(t)
	pollFor(t, c, 1)
	// The poll answer detached the transport before it was written, so the
	// disconnect timer is running now.
	if ts.clock.Pending(30*time.Second) != 1 {
		t.Fatalf("disconnect timer not armed")
	}
	ts.clock.Advance(29 * time.Second)
	if ts.Session(c.SessionID) == nil {
		t.Fatal("session gone before its disconnect timeout")
	}
	ts.clock.Advance(time.Second)
	if ts.Session(c.SessionID) != nil {
		t.Fatal("session alive after its disconnect timeout")
	}
	res, err := c.Poll(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	// 200 with the close frame: XDomainRequest can read no other status's body.
	if res.Status != http.StatusOK || res.Close == nil || res.Close.Code != int(session.CodeSessionUnknown) {
		t.Fatalf("poll of expired session: %+v", res)
	}
	res, err = c.Send(testCtx(t), "late")
	if err != nil || res.Status != http.StatusOK || res.Close == nil || res.Close.Code != 4004 {
		t.Fatalf("send to expired session: %+v %v", res, err)
	}
	if st := ts.Stats(); st.Resets != 2 || st.Closed != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestNeverAttachedSessionExpires(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	ts.clock.Advance(30 * time.Second)
	if ts.Session(c.SessionID) != nil || ts.Len() != 0 {
		t.Fatal("a session no transport ever attached to outlived the disconnect timeout")
	}
}

func TestHeartbeatAnswersHeldPoll(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	done := pollAsync(t, c)
	rc.session(t)
	if !ts.clock.WaitPending(25*time.Second, 1, testCtx(t).Done()) {
		t.Fatal("heartbeat timer never armed")
	}
	ts.clock.Advance(24 * time.Second)
	select {
	case res := <-done:
		t.Fatalf("poll answered before the heartbeat interval: %+v", res)
	default:
	}
	ts.clock.Advance(time.Second)
	res := <-done
	if len(res.Frames) != 1 || res.Frames[0].Kind != wire.KindHeartbeat {
		t.Fatalf("heartbeat answer: %+v", res.Frames)
	}
}

func TestSecondPollEndsFirst(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	first := pollAsync(t, c)
	s := rc.session(t)
	second := pollAsync(t, c)
	res := <-first
	if res.End == nil || res.End.Code != int(session.CodeReplaced) || len(res.Messages) != 0 {
		t.Fatalf("older poll answered %+v; want only an end frame 4010", res.Frames)
	}
	if err := s.Send(testCtx(t), "for the newer poll"); err != nil {
		t.Fatal(err)
	}
	if res := <-second; len(res.Messages) != 1 || res.Messages[0] != "for the newer poll" {
		t.Fatalf("newer poll: %+v", res.Frames)
	}
}

func TestClientClose(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	go c.Poll(testCtx(t))
	rc.session(t)
	if _, err := c.Send(testCtx(t), "last words"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Close(testCtx(t), 1000, "bye"); err != nil {
		t.Fatal(err)
	}
	if got := rc.next(t); got != "last words" {
		t.Fatalf("got %q", got)
	}
	err := <-rc.ended
	var ce *session.CloseError
	if !errors.As(err, &ce) || ce.Code != session.CodeNormal || ce.Reason != "bye" || !ce.ByClient {
		t.Fatalf("Recv after client close: %v", err)
	}
}

func TestReplayQueueOverflowClosesWithItsCode(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{Session: session.Config{MaxQueueMessages: 5}})
	c := ts.negotiate(t)
	pollCtx, cancel := context.WithCancel(testCtx(t))
	abandoned := make(chan struct{})
	go func() { c.Poll(pollCtx); close(abandoned) }()
	s := rc.session(t)
	cancel()
	<-abandoned // the test client takes one poll at a time
	for i := 1; i <= 5; i++ {
		if err := s.Send(testCtx(t), fmt.Sprint(i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	err := s.Send(testCtx(t), "6")
	if !errors.Is(err, session.ErrQueueFull) {
		t.Fatalf("sixth send: %v", err)
	}
	if err := s.Send(testCtx(t), "7"); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("send after overflow: %v", err)
	}
	// The client still gets the five, then the close frame with the code.
	var got []string
	var closed *wire.Frame
	for closed == nil {
		res, err := c.Poll(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.Messages...)
		closed = res.Close
	}
	if strings.Join(got, "") != "12345" || closed.Code != int(session.CodeQueueOverflow) {
		t.Fatalf("got %q then close %+v", got, closed)
	}
}

func TestBadTokens(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	a := ts.negotiate(t)
	b := ts.negotiate(t)
	other, err := New(echo, Options{HashKey: []byte("another key, 32 bytes or longer!!"), Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	otherTok, _ := other.tokens.mint(token{SessionID: a.SessionID})
	cases := []struct {
		name, token string
		status      int
		errName     string
	}{
		{"missing", "", http.StatusUnauthorized, "missing_token"},
		{"garbage", "not-a-token", http.StatusForbidden, "bad_token"},
		{"tampered", a.Token[:len(a.Token)-4] + "AAAA", http.StatusForbidden, "bad_token"},
		{"other key", otherTok, http.StatusForbidden, "bad_token"},
		{"foreign", b.Token, http.StatusForbidden, "foreign_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, op := range []string{"poll", "send"} {
				u := ts.base + "/s/" + a.SessionID + "/" + op + "?t=" + url.QueryEscape(tc.token)
				method := http.MethodGet
				if op == "send" {
					method = http.MethodPost
				}
				resp, body := do(t, ts, method, u, nil, strings.NewReader(""))
				var eb struct{ Error, Message string }
				if resp.StatusCode != tc.status || json.Unmarshal([]byte(body), &eb) != nil || eb.Error != tc.errName {
					t.Fatalf("%s: %d %s", op, resp.StatusCode, body)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
					t.Fatalf("content type %q", ct)
				}
			}
		})
	}
}

func TestUnknownSessionAndEndpoint(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	id := session.NewID()
	tok, _ := ts.tokens.mint(token{SessionID: id, Node: ts.node})
	resp, body := get(t, ts, ts.base+"/s/"+id+"/poll?t="+url.QueryEscape(tok), nil)
	if resp.StatusCode != http.StatusOK || body != "32:c4004:session unknown or expired\n" {
		t.Fatalf("unknown session: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, ts, ts.base+"/nothing-here", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("unknown endpoint: %d %q", resp.StatusCode, body)
	}
}

func TestOriginPolicy(t *testing.T) {
	ts := newTestServer(t, echo, Options{AllowedOrigins: []string{"https://app.example.com", "https://*.trusted.example"}})
	neg := ts.base + "/negotiate"
	resp, body := do(t, ts, http.MethodPost, neg, http.Header{"Origin": {"https://evil.example"}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"origin_not_allowed"`) {
		t.Fatalf("disallowed origin: %d %s", resp.StatusCode, body)
	}
	c := ts.negotiate(t)
	resp, _ = get(t, ts, c.URL("poll", nil), http.Header{"Origin": {"https://evil.example"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("disallowed origin on poll with a good token: %d", resp.StatusCode)
	}
	for _, o := range []string{"https://app.example.com", "https://a.trusted.example"} {
		resp, _ = do(t, ts, http.MethodPost, neg, http.Header{"Origin": {o}}, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != o {
			t.Fatalf("allowed origin %s: %d, ACAO %q", o, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	resp, _ = do(t, ts, http.MethodOptions, neg, http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"POST"}}, nil)
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// Same origin is always allowed, and gets no CORS grant.
	resp, _ = do(t, ts, http.MethodPost, neg, http.Header{"Origin": {ts.http.URL}}, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("same origin: %d %v", resp.StatusCode, resp.Header)
	}
	// A JSONP negotiation (no Origin) must come from a page the policy allows.
	resp, _ = get(t, ts, neg+"?callback=cb", http.Header{"Referer": {"https://evil.example/page"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("JSONP negotiate from a foreign page: %d", resp.StatusCode)
	}
	resp, body = get(t, ts, neg+"?callback=cb", http.Header{"Referer": {"https://app.example.com/page"}})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, `/**/cb({"v":1,`) {
		t.Fatalf("JSONP negotiate from an allowed page: %d %s", resp.StatusCode, body)
	}
}

func TestOversizedBody(t *testing.T) {
	ts := newTestServer(t, echo, Options{MaxBodyBytes: 1024})
	c := ts.negotiate(t)
	res, err := c.Send(testCtx(t), strings.Repeat("x", 2000))
	var he *testclient.Error
	if !errors.As(err, &he) || res.Status != http.StatusRequestEntityTooLarge || !strings.Contains(he.Body, `"body_too_large"`) {
		t.Fatalf("oversized body: %+v %v", res, err)
	}
	// The session carries on.
	res, err = testclientFresh(t, ts, c).Send(testCtx(t), "small")
	if err != nil || res.Ack != 1 {
		t.Fatalf("after 413: %+v %v", res, err)
	}
}

// testclientFresh continues c's session but forgets its unacknowledged sends.
func testclientFresh(t *testing.T, ts *testServer, c *testclient.Client) *testclient.Client {
	return &testclient.Client{HTTP: ts.http.Client(), Base: ts.base, Negotiation: c.Negotiation}
}

func TestOversizedMessage(t *testing.T) {
	ts := newTestServer(t, echo, Options{Session: session.Config{MaxMessageBytes: 100}})
	c := ts.negotiate(t)
	res, err := c.Send(testCtx(t), strings.Repeat("y", 101))
	if err == nil || res.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized message: %+v %v", res, err)
	}
}

func TestMalformedSend(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	for _, body := range []string{"5:m1:hi", "x", "3:m0:\n", "4:m01:\n", "2:a1", "4:zzzz\n", "\xff\xfe", "2:x1\n"} {
		res, err := c.SendRaw(testCtx(t), body)
		var he *testclient.Error
		if !errors.As(err, &he) || res.Status != http.StatusBadRequest {
			t.Fatalf("body %q: %+v %v", body, res, err)
		}
	}
}

func TestJSONP(t *testing.T) {
	ts := newTestServer(t, welcome, Options{})
	c := ts.negotiate(t)
	for _, cb := range []string{"alert(1)//", "a b", "1abc", "x;y", strings.Repeat("a", 65), "", "</script>"} {
		resp, body := get(t, ts, c.URL("poll", url.Values{"callback": {cb}}), nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"bad_callback"`) {
			t.Fatalf("callback %q: %d %s", cb, resp.StatusCode, body)
		}
	}
	resp, body := get(t, ts, c.URL("poll", url.Values{"callback": {"jQuery_1.cb$"}}), nil)
	if resp.StatusCode != http.StatusOK ||
		resp.Header.Get("Content-Type") != "application/javascript; charset=utf-8" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("JSONP poll: %d %v", resp.StatusCode, resp.Header)
	}
	const prefix, suffix = "/**/jQuery_1.cb$(", ");"
	if !strings.HasPrefix(body, prefix) || !strings.HasSuffix(body, suffix) {
		t.Fatalf("JSONP body %q", body)
	}
	var batch string
	if err := json.Unmarshal([]byte(body[len(prefix):len(body)-len(suffix)]), &batch); err != nil || batch != "10:m1:welcome\n" {
		t.Fatalf("JSONP payload %q (%v)", body, err)
	}
	// Sending by JSONP: a GET with the batch in d.
	d := string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: 1, Data: "</script><b>"}))
	resp, body = get(t, ts, c.URL("send", url.Values{"callback": {"cb"}, "d": {d}}), nil)
	if resp.StatusCode != http.StatusOK || body != `/**/cb("2:a1\n");` {
		t.Fatalf("JSONP send: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, ts, c.URL("poll", url.Values{"callback": {"cb"}, "ack": {"1"}}), nil)
	if strings.Contains(body, "</script>") || !strings.Contains(body, `\u003c/script\u003e\u003cb\u003e`) {
		t.Fatalf("JSONP echo not escaped for a script tag: %q", body)
	}
	resp, body = get(t, ts, ts.base+"/s/"+c.SessionID+"x/poll?callback=cb&t="+url.QueryEscape(c.Token), nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign path: %d %s", resp.StatusCode, body)
	}
	tok, _ := ts.tokens.mint(token{SessionID: "gone"})
	resp, body = get(t, ts, ts.base+"/s/gone/poll?callback=cb&t="+url.QueryEscape(tok), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `c4004:`) {
		t.Fatalf("JSONP reset: %d %s", resp.StatusCode, body)
	}
}

func TestFormPostSend(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	go c.Poll(testCtx(t))
	rc.session(t)
	form := url.Values{"d": {string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: 1, Data: "from a form"}))}}
	resp, body := do(t, ts, http.MethodPost, c.URL("send", nil),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
	if resp.StatusCode != http.StatusOK || body != "2:a1\n" {
		t.Fatalf("form post: %d %q", resp.StatusCode, body)
	}
	if got := rc.next(t); got != "from a form" {
		t.Fatalf("got %q", got)
	}
	// The iframe form of old IE: the batch percent-encoded in field e, so
	// that line breaks in it (and in the message) survive the form.
	batch := string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: 2, Data: "two\nlines, ünï++"}))
	form = url.Values{"e": {url.PathEscape(batch)}} // "+" left as is, as encodeURIComponent leaves none: it stays a plus
	resp, body = do(t, ts, http.MethodPost, c.URL("send", nil),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
	if resp.StatusCode != http.StatusOK || body != "2:a2\n" {
		t.Fatalf("iframe form post: %d %q", resp.StatusCode, body)
	}
	if got := rc.next(t); got != "two\nlines, ünï++" {
		t.Fatalf("got %q", got)
	}
	resp, body = do(t, ts, http.MethodPost, c.URL("send", nil),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader("e=%25zz"))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "bad_body") {
		t.Fatalf("bad field e: %d %q", resp.StatusCode, body)
	}
}

// A poll's answer is never stored: no-store, and Expires for HTTP/1.0
// caches; neither Pragma (no meaning in a response) nor Vary (nothing to
// key a stored copy on). A POSTed send's answer has no Expires either (no
// cache stores an answer to a POST); a JSONP send, a GET, keeps it. The
// client bundle, which caches do store, varies by Origin.
func TestNoCacheHeaders(t *testing.T) {
	ts := newTestServer(t, welcome, Options{})
	c := ts.negotiate(t)
	resp, _ := get(t, ts, c.URL("poll", nil), nil)
	if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "no-store") ||
		resp.Header.Get("Expires") != "0" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("poll headers: %v", resp.Header)
	}
	for _, name := range []string{"Pragma", "Vary"} {
		if v, ok := resp.Header[name]; ok {
			t.Errorf("poll answer carries %s: %q", name, v)
		}
	}
	batch := func(seq uint64) string {
		return string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: seq, Data: "hi"}))
	}
	resp, body := do(t, ts, http.MethodPost, c.URL("send", nil), http.Header{"Content-Type": {"text/plain"}}, strings.NewReader(batch(1)))
	if resp.StatusCode != http.StatusOK || body != "2:a1\n" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "no-transform") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("POSTed send: %d %q, headers %v", resp.StatusCode, body, resp.Header)
	}
	for _, name := range []string{"Expires", "Pragma", "Vary"} {
		if v, ok := resp.Header[name]; ok {
			t.Errorf("POSTed send's answer carries %s: %q", name, v)
		}
	}
	resp, body = get(t, ts, c.URL("send", url.Values{"callback": {"cb"}, "d": {batch(2)}}), nil)
	if resp.StatusCode != http.StatusOK || body != `/**/cb("2:a2\n");` || resp.Header.Get("Expires") != "0" {
		t.Fatalf("JSONP send: %d %q, headers %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = get(t, ts, ts.base+"/client.js", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Vary") != "Origin" {
		t.Fatalf("client bundle: %d, headers %v", resp.StatusCode, resp.Header)
	}
}

func TestMaxSessions(t *testing.T) {
	ts := newTestServer(t, echo, Options{MaxSessions: 2})
	ts.negotiate(t)
	ts.negotiate(t)
	_, err := testclient.Negotiate(testCtx(t), ts.http.Client(), ts.base, nil)
	var he *testclient.Error
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("third session: %v", err)
	}
}

func TestShutdownTellsClientsToComeBack(t *testing.T) {
	rc := newRecorder()
	srv, err := New(rc, Options{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, err := testclient.Negotiate(testCtx(t), hs.Client(), hs.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	polled := pollAsync(t, c)
	s := rc.session(t)
	if err := s.Send(testCtx(t), "before shutdown"); err != nil {
		t.Fatal(err)
	}
	if res := <-polled; len(res.Messages) != 1 {
		t.Fatalf("first poll: %+v", res.Frames)
	}
	polled = pollAsync(t, c)
	if err := srv.Shutdown(testCtx(t)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	res := <-polled
	if res.Close == nil || res.Close.Code != int(session.CodeGoingAway) {
		t.Fatalf("held poll at shutdown: %+v", res.Frames)
	}
	if srv.Len() != 0 {
		t.Fatalf("%d sessions left after shutdown", srv.Len())
	}
	if _, err := testclient.Negotiate(testCtx(t), hs.Client(), hs.URL, nil); err == nil {
		t.Fatal("negotiation accepted during shutdown")
	}
}

func TestFormPostWithoutBatchRefused(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	resp, body := do(t, ts, http.MethodPost, c.URL("send", nil),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader("7:m1:hiya\n"))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"bad_body"`) {
		t.Fatalf("form post without d: %d %s", resp.StatusCode, body)
	}
}

func TestServesTheClient(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	resp, body := get(t, ts, ts.base+"/client.js", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "CometKit") ||
		resp.Header.Get("Content-Type") != "application/javascript; charset=utf-8" ||
		resp.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("client.js: %d %v", resp.StatusCode, resp.Header)
	}
	etag := resp.Header.Get("ETag")
	resp, _ = get(t, ts, ts.base+"/client.js", http.Header{"If-None-Match": {etag}})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: %d", resp.StatusCode)
	}
	resp, _ = get(t, ts, ts.base+"/client.js?v="+ClientVersion(), nil)
	if !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("versioned URL: %v", resp.Header)
	}
}
