package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/websocket"
	"github.com/cometkit/cometkit/transports/wire"
)

// wsConn is a test client connection (RFC 6455, via gobwas/ws's client side).
type wsConn struct {
	t  *testing.T
	nc net.Conn
	r  io.Reader
}

func dialWS(t *testing.T, rawURL string, header http.Header) *wsConn {
	t.Helper()
	u := strings.Replace(rawURL, "http://", "ws://", 1)
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(header), Timeout: 5 * time.Second}
	nc, br, _, err := d.Dial(testCtx(t), u)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { nc.Close() })
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second)) // a hung test fails instead of hanging
	return &wsConn{t: t, nc: nc, r: r}
}

func (c *wsConn) send(msg string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.nc, []byte(msg)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next data message, or the close frame's code and reason.
func (c *wsConn) next() (msg string, code int, reason string) {
	c.t.Helper()
	for {
		f, err := ws.ReadFrame(c.r)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText:
			return string(f.Payload), 0, ""
		case ws.OpClose:
			cd, rs := ws.ParseCloseFrameData(f.Payload)
			return "", int(cd), rs
		case ws.OpPing:
			_ = ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewPongFrame(f.Payload)))
		}
	}
}

// frame returns the next message parsed as a session frame.
func (c *wsConn) frame() wire.Frame {
	c.t.Helper()
	msg, code, reason := c.next()
	if code != 0 {
		c.t.Fatalf("closed %d %s, wanted a frame", code, reason)
	}
	f, err := wire.ParseFrame(msg)
	if err != nil {
		c.t.Fatalf("frame %q: %v", msg, err)
	}
	return f
}

func (c *wsConn) sendFrame(f wire.Frame) { c.send(string(wire.AppendFrame(nil, f))) }

func (c *wsConn) expectClose(code int) {
	c.t.Helper()
	for {
		_, got, reason := c.next()
		if got != 0 {
			if got != code {
				c.t.Fatalf("closed with %d (%s), want %d", got, reason, code)
			}
			return
		}
	}
}

func sessionWS(c *testclient.Client, ack uint64) string {
	return c.URL("websocket", url.Values{"ack": {fmt.Sprint(ack)}})
}

func TestWebSocketSessionEchoResumeAcrossTransports(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	conn := dialWS(t, sessionWS(c, 0), nil)
	s := rc.session(t)
	if f := conn.frame(); f.Kind != wire.KindHeartbeat {
		t.Fatalf("first frame %+v", f)
	}
	if s.Transport() != "websocket" {
		t.Fatalf("transport %q", s.Transport())
	}
	conn.sendFrame(wire.Frame{Kind: wire.KindMessage, Seq: 1, Data: "hello ünïcode 😀"})
	if got := rc.next(t); got != "hello ünïcode 😀" {
		t.Fatalf("app got %q", got)
	}
	if f := conn.frame(); f.Kind != wire.KindAck || f.Seq != 1 {
		t.Fatalf("ack frame %+v", f)
	}
	s.Send(testCtx(t), "one")
	if f := conn.frame(); f.Kind != wire.KindMessage || f.Seq != 1 || f.Data != "one" {
		t.Fatalf("message frame %+v", f)
	}
	// The connection drops; the session waits. Two messages meanwhile.
	conn.nc.Close()
	s.Send(testCtx(t), "two")
	s.Send(testCtx(t), "three")
	// Back on WebSocket, acknowledging 1: two and three, nothing else.
	conn2 := dialWS(t, sessionWS(c, 1), nil)
	for _, want := range []string{"two", "three"} {
		if f := conn2.frame(); f.Kind != wire.KindMessage || f.Data != want {
			t.Fatalf("after resume: %+v, want %q", f, want)
		}
	}
	conn2.sendFrame(wire.Frame{Kind: wire.KindAck, Seq: 3})
	conn2.sendFrame(wire.Frame{Kind: wire.KindMessage, Seq: 2, Data: "up again"})
	if got := rc.next(t); got != "up again" {
		t.Fatalf("app got %q", got)
	}
	// And across transports: a long-poll picks up where the socket left off.
	conn2.nc.Close()
	s.Send(testCtx(t), "four")
	c.Take(testclient.Event{Frame: wire.Frame{Kind: wire.KindMessage, Seq: 1}})
	c.Take(testclient.Event{Frame: wire.Frame{Kind: wire.KindMessage, Seq: 2}})
	c.Take(testclient.Event{Frame: wire.Frame{Kind: wire.KindMessage, Seq: 3}})
	if got := pollFor(t, c, 1); got[0] != "four" {
		t.Fatalf("long-poll after WebSocket: %q", got)
	}
}

// The acknowledgement of a message the application answers at once goes
// with the answer, after it: one write and one frame for the client to
// read, not an acknowledgement written alone ahead of it. One the
// application does not answer still comes, alone.
func TestWebSocketAckRidesWithTheAnswer(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	conn := dialWS(t, sessionWS(c, 0), nil)
	if f := conn.frame(); f.Kind != wire.KindHeartbeat {
		t.Fatalf("first frame %+v", f)
	}
	const rounds = 50
	for seq := uint64(1); seq <= rounds; seq++ {
		data := fmt.Sprint("echo ", seq)
		conn.sendFrame(wire.Frame{Kind: wire.KindMessage, Seq: seq, Data: data})
		if f := conn.frame(); f.Kind != wire.KindMessage || f.Seq != seq || f.Data != data {
			t.Fatalf("round %d: first frame %+v, want the echo (an acknowledgement ahead of it was written alone)", seq, f)
		}
		if f := conn.frame(); f.Kind != wire.KindAck || f.Seq != seq {
			t.Fatalf("round %d: after the echo %+v, want a%d", seq, f, seq)
		}
		conn.sendFrame(wire.Frame{Kind: wire.KindAck, Seq: seq})
	}
}

// A client's acknowledgement alone, with nothing for the server to write,
// still reaches the session (within the acknowledgement batch's delay): a
// Send waiting for room in a replay queue of one goes on once the client
// acknowledges the message before it.
func TestWebSocketAckAloneFreesRoom(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{Session: session.Config{MaxQueueMessages: 1, Overflow: session.OverflowWait}})
	c := ts.negotiate(t)
	conn := dialWS(t, sessionWS(c, 0), nil)
	s := rc.session(t)
	if f := conn.frame(); f.Kind != wire.KindHeartbeat {
		t.Fatalf("first frame %+v", f)
	}
	if err := s.Send(testCtx(t), "1"); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if f := conn.frame(); f.Kind != wire.KindMessage || f.Seq != seq {
			t.Fatalf("frame %+v, want message %d", f, seq)
		}
		sent := make(chan error, 1)
		go func() { sent <- s.Send(testCtx(t), fmt.Sprint(seq+1)) }() // waits for room
		conn.sendFrame(wire.Frame{Kind: wire.KindAck, Seq: seq})
		if err := <-sent; err != nil {
			t.Fatalf("send after ack %d: %v", seq, err)
		}
	}
}

func TestWebSocketRawEcho(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, HandlerFunc(func(s *session.Session) {
		rc.opened <- s
		echo(s)
	}), Options{})
	conn := dialWS(t, ts.base+"/websocket", nil)
	big := strings.Repeat("é", 32<<10) // 64 KiB of two-byte characters
	for _, m := range []string{"plain", "ünïcode 😀", big} {
		conn.send(m)
		if got, code, _ := conn.next(); code != 0 || got != m {
			t.Fatalf("echo of %d bytes: %d bytes back, close %d", len(m), len(got), code)
		}
	}
	s := rc.session(t)
	if n, _ := s.Queued(); n != 0 {
		t.Fatalf("raw endpoint holds %d written messages; nothing acknowledges them but the write", n)
	}
	// A clean close from the client ends the session.
	if err := ws.WriteFrame(conn.nc, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))); err != nil {
		t.Fatal(err)
	}
	conn.expectClose(1000)
	waitFor(t, ts.Server, func() bool { return ts.Len() == 0 })
}

// Each violation closes the connection with RFC 6455's code; the server
// and its other connections carry on.
func TestWebSocketViolationsCloseWithTheirCodes(t *testing.T) {
	ts := newTestServer(t, echo, Options{WebSocket: websocket.Options{MaxMessageBytes: 1024}})
	cases := []struct {
		name  string
		frame ws.Frame
		code  int
	}{
		{"unmasked", ws.NewTextFrame([]byte("hi")), 1002},
		{"invalid UTF-8", ws.MaskFrame(ws.NewTextFrame([]byte{0xff, 0xfe})), 1007},
		{"too big", ws.MaskFrame(ws.NewTextFrame(make([]byte, 1025))), 1009},
		{"binary", ws.MaskFrame(ws.NewBinaryFrame([]byte{1, 2})), 1003},
		{"reserved bits", ws.MaskFrame(ws.Frame{Header: ws.Header{Fin: true, Rsv: ws.Rsv(true, false, false), OpCode: ws.OpText}}), 1002},
		{"unexpected continuation", ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, []byte("x"))), 1002},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialWS(t, ts.base+"/websocket", nil)
			if err := ws.WriteFrame(conn.nc, tc.frame); err != nil {
				t.Fatal(err)
			}
			conn.expectClose(tc.code)
		})
	}
	conn := dialWS(t, ts.base+"/websocket", nil)
	conn.send("still fine")
	if got, _, _ := conn.next(); got != "still fine" {
		t.Fatalf("after violations: %q", got)
	}
}

func TestWebSocketPingFragmentsAndCloseEcho(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	conn := dialWS(t, ts.base+"/websocket", nil)
	if err := ws.WriteFrame(conn.nc, ws.MaskFrame(ws.NewPingFrame([]byte("are you there")))); err != nil {
		t.Fatal(err)
	}
	f, err := ws.ReadFrame(conn.r)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "are you there" {
		t.Fatalf("pong: %+v %v", f.Header, err)
	}
	// A message in three fragments with a ping between them.
	for i, part := range []struct {
		op  ws.OpCode
		fin bool
		p   string
	}{{ws.OpText, false, "frag"}, {ws.OpPing, true, ""}, {ws.OpContinuation, false, "men"}, {ws.OpContinuation, true, "ted 😀"}} {
		if err := ws.WriteFrame(conn.nc, ws.MaskFrame(ws.NewFrame(part.op, part.fin, []byte(part.p)))); err != nil {
			t.Fatal(i, err)
		}
	}
	if got, _, _ := conn.next(); got != "fragmented 😀" {
		t.Fatalf("reassembled %q", got)
	}
	// A close with an application code is echoed.
	ws.WriteFrame(conn.nc, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4321, "mine"))))
	conn.expectClose(4321)
}

func TestWebSocketReplacedUnknownAndClosed(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	first := dialWS(t, sessionWS(c, 0), nil)
	s := rc.session(t)
	first.frame()
	second := dialWS(t, sessionWS(c, 0), nil)
	if f := first.frame(); f.Kind != wire.KindEnd || f.Code != int(session.CodeReplaced) {
		t.Fatalf("replaced: %+v", f)
	}
	first.expectClose(int(session.CodeReplaced))
	second.frame()
	s.Close(4500, "done here")
	if f := second.frame(); f.Kind != wire.KindClose || f.Code != 4500 {
		t.Fatalf("close frame %+v", f)
	}
	second.expectClose(4500)

	tok, _ := ts.tokens.mint(token{SessionID: "gone"})
	gone := dialWS(t, ts.base+"/s/gone/websocket?t="+url.QueryEscape(tok), nil)
	if f := gone.frame(); f.Kind != wire.KindClose || f.Code != int(session.CodeSessionUnknown) {
		t.Fatalf("unknown session: %+v", f)
	}
	gone.expectClose(int(session.CodeSessionUnknown))

	bad := dialWS(t, sessionWS(c, 99), nil) // the session is closing: its close again
	if f := bad.frame(); f.Kind != wire.KindClose {
		t.Fatalf("closing session: %+v", f)
	}
}

func TestWebSocketResumeFromGarbage(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	conn := dialWS(t, c.URL("websocket", url.Values{"ack": {"x1"}}), nil)
	if f := conn.frame(); f.Kind != wire.KindClose || f.Code != int(session.CodeResumeFailed) {
		t.Fatalf("garbage ack: %+v", f)
	}
	conn.expectClose(int(session.CodeResumeFailed))
}

func TestWebSocketOriginPolicy(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	for _, h := range []http.Header{
		{"Origin": {"https://evil.example"}},
		{"Sec-WebSocket-Origin": {"https://evil.example"}},
	} {
		u := strings.Replace(ts.base, "http://", "ws://", 1) + "/websocket"
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(h), Timeout: 5 * time.Second}
		_, _, _, err := d.Dial(testCtx(t), u)
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != http.StatusForbidden {
			t.Fatalf("%v: %v", h, err)
		}
	}
}

func TestWebSocketHeartbeatAndPing(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	c := ts.negotiate(t)
	conn := dialWS(t, sessionWS(c, 0), nil)
	rc.session(t)
	conn.frame()
	if !ts.clock.WaitPending(25*time.Second, 1, testCtx(t).Done()) {
		t.Fatal("heartbeat timer never armed")
	}
	ts.clock.Advance(25 * time.Second)
	if f := conn.frame(); f.Kind != wire.KindHeartbeat {
		t.Fatalf("heartbeat: %+v", f)
	}
	f, err := ws.ReadFrame(conn.r)
	if err != nil || f.Header.OpCode != ws.OpPing {
		t.Fatalf("ping after heartbeat: %+v %v", f.Header, err)
	}
}

// A peer that goes silent is cut at the read deadline, and one that stops
// reading at the write deadline; either way its session waits to resume.
func TestWebSocketDeadAndStalledPeers(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{
		Session:   session.Config{MaxQueueBytes: 64 << 20, MaxQueueMessages: 4096},
		WebSocket: websocket.Options{ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond},
	})
	t.Run("silent", func(t *testing.T) {
		c := ts.negotiate(t)
		conn := dialWS(t, sessionWS(c, 0), nil)
		rc.session(t)
		// Send nothing, answer no ping: the server gives up on us.
		_, err := io.ReadAll(conn.r)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("read: %v", err)
		}
		if !ts.clock.WaitPending(30*time.Second, 1, testCtx(t).Done()) {
			t.Fatal("silent peer never detached")
		}
	})
	t.Run("not reading", func(t *testing.T) {
		c := ts.negotiate(t)
		u, _ := url.Parse(strings.Replace(sessionWS(c, 0), "http://", "ws://", 1))
		nc, _, _, err := ws.Dialer{}.Dial(testCtx(t), u.String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// Keep the read deadline at bay with pings, but never read.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond): // a peer's own keep-alive rhythm
					if ws.WriteFrame(nc, ws.MaskFrame(ws.NewPingFrame(nil))) != nil {
						return
					}
				}
			}
		}()
		s := rc.session(t)
		big := strings.Repeat("x", 60<<10)
		for i := 0; i < 400; i++ {
			if err := s.Send(testCtx(t), big); err != nil {
				t.Fatal(err)
			}
		}
		if !ts.clock.WaitPending(30*time.Second, 2, testCtx(t).Done()) {
			t.Fatal("stalled peer never detached")
		}
		if s.State() != session.Open {
			t.Fatalf("state %v", s.State())
		}
	})
}

// A hybi-08 browser (Chrome 14–15, Firefox 6–10) sends version 8 and
// Sec-WebSocket-Origin; the handshake is otherwise RFC 6455's.
func TestWebSocketHybi08Handshake(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	u, _ := url.Parse(ts.base + "/websocket")
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Origin: %s\r\n\r\n",
		u.Path, u.Host, ts.http.URL)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %v %+v", err, resp)
	}
	ws.WriteFrame(nc, ws.MaskFrame(ws.NewTextFrame([]byte("hybi"))))
	f, err := ws.ReadFrame(br)
	if err != nil || string(f.Payload) != "hybi" {
		t.Fatalf("echo: %q %v", f.Payload, err)
	}
}

// Small message frames are taken on the poller's goroutine when the
// session can take them at once: the same checks and close codes as
// readRun's, and a full inbox hands them on to a reader that waits for
// room — every message reaches the application once, in order.
func TestWebSocketMessagesTakenByThePoller(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{Session: session.Config{MaxInbound: 2}})
	c := ts.negotiate(t)
	conn := dialWS(t, sessionWS(c, 0), nil)
	rc.session(t)
	conn.frame()
	// The recorder reads as messages come; the inbox of 2 fills whenever it
	// is behind, and the rest wait in the reader.
	const n = 50
	for i := 1; i <= n; i++ {
		conn.sendFrame(wire.Frame{Kind: wire.KindMessage, Seq: uint64(i), Data: fmt.Sprint("m", i)})
	}
	for i := 1; i <= n; i++ {
		if got := rc.next(t); got != fmt.Sprint("m", i) {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	for _, tc := range []struct {
		name    string
		payload string
		code    int
	}{
		{"invalid UTF-8", "m1:\xff\xfe", 1007},
		{"sequence gap", "m7:skipped six", 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.negotiate(t)
			conn := dialWS(t, sessionWS(c, 0), nil)
			conn.frame()
			conn.send(tc.payload)
			conn.expectClose(tc.code)
		})
	}
}
