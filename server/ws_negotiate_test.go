package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

// openAnswer reads a WebSocket's first frame, which must be an o frame, and
// returns the negotiate answer it carries.
func openAnswer(t *testing.T, msg string) negotiateAnswer {
	t.Helper()
	f, err := wire.ParseFrame(msg)
	if err != nil || f.Kind != wire.KindOpen {
		t.Fatalf("first frame %q (%v), want an o frame", msg, err)
	}
	var n negotiateAnswer
	if err := json.Unmarshal([]byte(f.Data), &n); err != nil {
		t.Fatalf("o frame's answer %q: %v", f.Data, err)
	}
	if n.Version != 1 || len(n.SessionID) != 36 || n.Token == "" || n.Heartbeat <= 0 || n.MaxMessage <= 0 ||
		strings.Join(n.Transports, ",") != "websocket,eventstream,longpoll" {
		t.Fatalf("o frame's answer %+v", n)
	}
	return n
}

// The WebSocket endpoint negotiates: its first frame is the session's
// negotiate answer, then the session runs on it as on .../s/{sid}/websocket,
// and the client resumes it anywhere with the token it was given.
func TestWebSocketNegotiatesInItsFirstFrame(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	conn := dialWS(t, ts.base+"/negotiate/websocket", nil)
	msg, code, _ := conn.next()
	if code != 0 {
		t.Fatalf("closed %d before the o frame", code)
	}
	n := openAnswer(t, msg)
	s := rc.session(t)
	if s.ID() != n.SessionID || s.Transport() != "websocket" {
		t.Fatalf("session %s on %q, the o frame says %s", s.ID(), s.Transport(), n.SessionID)
	}
	if err := s.Send(testCtx(t), "welcome"); err != nil {
		t.Fatal(err)
	}
	if f := conn.frame(); f.Kind != wire.KindMessage || f.Seq != 1 || f.Data != "welcome" {
		t.Fatalf("after the o frame: %+v", f)
	}
	conn.sendFrame(wire.Frame{Kind: wire.KindMessage, Seq: 1, Data: "hello"})
	if got := rc.next(t); got != "hello" {
		t.Fatalf("app got %q", got)
	}
	if f := conn.frame(); f.Kind != wire.KindAck || f.Seq != 1 {
		t.Fatalf("ack frame %+v", f)
	}
	// The socket drops; the session waits, and resumes on the session
	// endpoint with the token from the o frame.
	conn.nc.Close()
	if err := s.Send(testCtx(t), "two"); err != nil {
		t.Fatal(err)
	}
	u := ts.base + "/s/" + n.SessionID + "/websocket?ack=1&t=" + url.QueryEscape(n.Token)
	conn2 := dialWS(t, u, nil)
	if f := conn2.frame(); f.Kind != wire.KindMessage || f.Seq != 2 || f.Data != "two" {
		t.Fatalf("after resume: %+v", f)
	}
	if ts.Len() != 1 {
		t.Fatalf("%d sessions, want the one", ts.Len())
	}
}

// A hixie-76 browser (Safari 5) negotiates the same way.
func TestWebSocketNegotiatesHixie(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	_, br := hixieDial(t, ts.base+"/negotiate/websocket")
	msg, err := hixieNext(br)
	if err != nil {
		t.Fatal(err)
	}
	n := openAnswer(t, msg)
	s := rc.session(t)
	if s.ID() != n.SessionID {
		t.Fatalf("session %s, the o frame says %s", s.ID(), n.SessionID)
	}
	if err := s.Send(testCtx(t), "welcome"); err != nil {
		t.Fatal(err)
	}
	if msg, err := hixieNext(br); err != nil || msg != "m1:welcome" {
		t.Fatalf("after the o frame: %q %v", msg, err)
	}
}

// The topics a client followed come with the upgrade, as with negotiate.
func TestWebSocketNegotiateCarriesTopics(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	q := url.Values{"topics": {`{"room:1":"42","b":"18446744073709551615"}`}}
	conn := dialWS(t, ts.base+"/negotiate/websocket?"+q.Encode(), nil)
	msg, _, _ := conn.next()
	openAnswer(t, msg)
	got := rc.session(t).Info().TopicOffsets
	if len(got) != 2 || got["room:1"] != 42 || got["b"] != 1<<64-1 {
		t.Fatalf("topic offsets %v", got)
	}
}

// What negotiate refuses is refused before the upgrade, with the same
// status and error name; a handshake that fails leaves no session behind.
func TestWebSocketNegotiateRefusals(t *testing.T) {
	ts := newTestServer(t, echo, Options{MaxSessions: 1, AllowedOrigins: []string{"https://app.example"}})
	upgrade := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	with := func(k, v string) http.Header {
		h := upgrade.Clone()
		h.Set(k, v)
		return h
	}
	cases := []struct {
		name   string
		query  string
		header http.Header
		status int
		error  string
	}{
		{"not an upgrade", "", nil, http.StatusUpgradeRequired, "upgrade_required"},
		{"bad topics", "?topics=" + url.QueryEscape(`{"a":"01"}`), upgrade, http.StatusBadRequest, "bad_topics"},
		{"foreign origin", "", with("Origin", "https://evil.example"), http.StatusForbidden, "origin_not_allowed"},
	}
	for _, tc := range cases {
		resp, body := get(t, ts, ts.base+"/negotiate/websocket"+tc.query, tc.header)
		if resp.StatusCode != tc.status || !strings.Contains(body, `"error":"`+tc.error+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, body, tc.status, tc.error)
		}
	}
	// A handshake net/http cannot complete (no key): the session made for
	// it is gone at once, so the one session allowed is still free.
	resp, _ := get(t, ts, ts.base+"/negotiate/websocket", with("Sec-Websocket-Key", ""))
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatalf("upgraded without a key")
	}
	waitFor(t, ts.Server, func() bool { return ts.Len() == 0 })
	conn := dialWS(t, ts.base+"/negotiate/websocket", nil)
	msg, _, _ := conn.next()
	openAnswer(t, msg)
	resp, body := get(t, ts, ts.base+"/negotiate/websocket", upgrade)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over MaxSessions: %d %s", resp.StatusCode, body)
	}
	if ts.Len() != 1 {
		t.Fatalf("%d sessions", ts.Len())
	}
}

// The o frame goes from server to client only: a client that sends one
// broke the protocol, on a socket (1002) or in a send (400 malformed).
func TestOpenFrameFromClientRefused(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	conn := dialWS(t, ts.base+"/negotiate/websocket", nil)
	msg, _, _ := conn.next()
	n := openAnswer(t, msg)
	conn.send(`o{"sid":"x"}`)
	conn.expectClose(1002)
	c := ts.negotiate(t)
	_, err := c.SendRaw(testCtx(t), `12:o{"sid":"x"}`+"\n")
	if err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("send of an o frame: %v", err)
	}
	if ts.Session(n.SessionID) == nil {
		t.Fatal("the session ended with its socket's protocol error; it should wait for its client")
	}
}

// The event stream negotiates too: its first event is the o frame, then the
// session's messages; the client resumes anywhere with the token it got.
func TestEventStreamNegotiatesInItsFirstEvent(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	q := url.Values{"pad": {"1"}, "topics": {`{"room":"7"}`}}
	c, st, err := testclient.NegotiateStream(testCtx(t), ts.http.Client(), ts.base, q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if !strings.HasPrefix(st.Prelude, ":") || st.Comments != 1 {
		t.Fatalf("prelude %q, %d comments: the 2 KB pad was asked for", st.Prelude[:min(len(st.Prelude), 20)], st.Comments)
	}
	s := rc.session(t)
	if s.ID() != c.SessionID || s.Transport() != "eventstream" || s.Info().TopicOffsets["room"] != 7 {
		t.Fatalf("session %s on %q with %v; the o frame says %s", s.ID(), s.Transport(), s.Info().TopicOffsets, c.SessionID)
	}
	sendN(t, s, 1, 4)
	checkSeq(t, streamFor(t, c, st, 3), 1)
	// Sends go to the session endpoint with the token from the o frame.
	if _, err := c.Send(testCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	if got := rc.next(t); got != "hello" {
		t.Fatalf("app got %q", got)
	}
	// A new stream on the session endpoint resumes after what it had.
	st.Close()
	sendN(t, s, 4, 6)
	st2 := openStream(t, c, url.Values{"ack": {"3"}}, nil)
	checkSeq(t, streamFor(t, c, st2, 2), 4)
	resp, body := do(t, ts, http.MethodPost, ts.base+"/negotiate/eventstream", nil, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
}

// An origin that only "*" allows gets no credentials (PROTOCOL.md section
// 9), on a WebSocket too, whose handshake a browser sends with the user's
// cookies from any page and whose answer the page reads: the session does
// not see them. A named origin's session does. (A review found the
// negotiating and raw endpoints handing such a page a session holding the
// victim's cookies.)
func TestWildcardOriginSessionsGetNoCredentials(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, HandlerFunc(func(s *session.Session) {
		rc.opened <- s
		echo(s)
	}), Options{AllowedOrigins: []string{"*", "https://app.example"}})
	creds := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Cookie": {"auth=victim"}, "Authorization": {"Bearer x"}}
	}
	for _, path := range []string{"/negotiate/websocket", "/websocket"} {
		conn := dialWS(t, ts.base+path, creds("https://evil.example"))
		if path != "/websocket" {
			msg, _, _ := conn.next()
			openAnswer(t, msg)
		}
		h := rc.session(t).Header()
		if h.Get("Cookie") != "" || h.Get("Authorization") != "" || h.Get("Origin") != "https://evil.example" {
			t.Errorf("%s from an origin allowed only by *: session header %v", path, h)
		}
		conn = dialWS(t, ts.base+path, creds("https://app.example"))
		if path != "/websocket" {
			msg, _, _ := conn.next()
			openAnswer(t, msg)
		}
		if h := rc.session(t).Header(); h.Get("Cookie") != "auth=victim" || h.Get("Authorization") != "Bearer x" {
			t.Errorf("%s from a named origin: session header %v", path, h)
		}
	}
}

// The negotiating stream carries the session's token at a URL the same for
// every user: no cache may keep it.
func TestNegotiatingStreamIsNotStored(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, ts.base+"/negotiate/eventstream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Fatalf("Cache-Control %q", cc)
	}
}
