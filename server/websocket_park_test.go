package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/internal/netpoll"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/websocket"
	"github.com/cometkit/cometkit/transports/wire"
)

// linkGoroutines counts the goroutines working for WebSocket connections
// (readers, writers, watchdogs) and the poller's.
func linkGoroutines() (links, pollers int) {
	buf := make([]byte, 16<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		switch {
		case strings.Contains(g, "transports/websocket.(*link)"), strings.Contains(g, "internal/wakeup."):
			links++
		case strings.Contains(g, "internal/netpoll.(*instance).run"):
			pollers++
		}
	}
	return links, pollers
}

// waitLinksIdle waits until no goroutine works for a WebSocket connection
// (the last writer of a burst may still be returning when its bytes have
// arrived), and checks that one poller goroutine watches them all.
func waitLinksIdle(t *testing.T) {
	t.Helper()
	ctx := testCtx(t)
	for {
		links, pollers := linkGoroutines()
		if links == 0 {
			if netpoll.Supported && pollers != 1 {
				t.Fatalf("%d poller goroutines", pollers)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d goroutines still serve idle WebSocket connections", links)
		default:
			runtime.Gosched()
		}
	}
}

// Idle WebSocket connections hold no goroutine of ours (on Linux: they are
// parked in the poller), and still deliver both ways, exactly once.
func TestWebSocketIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if !netpoll.Supported {
		t.Skip("no poller on this system: each connection has a reader goroutine")
	}
	const n = 200
	ts := newTestServer(t, echo, Options{})
	conns := make([]*wsConn, n)
	for i := range conns {
		c := ts.negotiate(t)
		conns[i] = dialWS(t, sessionWS(c, 0), nil)
		if f := conns[i].frame(); f.Kind != wire.KindHeartbeat {
			t.Fatalf("first frame %+v", f)
		}
	}
	waitLinksIdle(t)
	for round := uint64(1); round <= 3; round++ {
		for i, c := range conns {
			c.sendFrame(wire.Frame{Kind: wire.KindMessage, Seq: round, Data: fmt.Sprintf("%d/%d", i, round)})
		}
		for i, c := range conns {
			// The ack of ours and the echo, in either order, each once.
			var gotAck, gotEcho bool
			for !gotAck || !gotEcho {
				f := c.frame()
				switch {
				case f.Kind == wire.KindAck && f.Seq == round && !gotAck:
					gotAck = true
				case f.Kind == wire.KindMessage && f.Seq == round && f.Data == fmt.Sprintf("%d/%d", i, round) && !gotEcho:
					gotEcho = true
				case f.Kind == wire.KindHeartbeat:
				default:
					t.Fatalf("connection %d, round %d: frame %+v", i, round, f)
				}
			}
			c.sendFrame(wire.Frame{Kind: wire.KindAck, Seq: round})
		}
		waitLinksIdle(t)
	}
	if ts.Len() != n {
		t.Fatalf("%d sessions, want %d", ts.Len(), n)
	}
}

// Parked connections whose peers went silent are cut at the read timeout,
// and their sessions wait for them to come back.
func TestWebSocketParkedSilentPeersAreCut(t *testing.T) {
	const n = 20
	rc := &recorder{opened: make(chan *session.Session, n+1), got: make(chan string, 16), ended: make(chan error, n+1)}
	ts := newTestServer(t, rc, Options{WebSocket: websocket.Options{ReadTimeout: 300 * time.Millisecond}})
	conns := make([]*wsConn, n)
	for i := range conns {
		c := ts.negotiate(t)
		conns[i] = dialWS(t, sessionWS(c, 0), nil)
		conns[i].frame()
		rc.session(t)
	}
	// And a hixie-76 peer (no pings: its read timeout needs its heartbeats).
	hc := ts.negotiate(t)
	_, hbr := hixieDial(t, sessionWS(hc, 0))
	if _, err := hixieNext(hbr); err != nil {
		t.Fatal(err)
	}
	rc.session(t)
	// Read nothing more, answer no ping: every session detaches and arms
	// its disconnect timer.
	if !ts.clock.WaitPending(30*time.Second, n+1, testCtx(t).Done()) {
		t.Fatal("silent peers never cut")
	}
	for _, c := range conns {
		_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c.r); err != nil && !isClosedOrReset(err) {
			t.Fatalf("after the cut: %v", err)
		}
	}
	if _, err := hixieNext(hbr); err == nil {
		t.Fatal("hixie peer: a frame after the cut")
	}
	if ts.Len() != n+1 {
		t.Fatalf("%d sessions, want %d waiting", ts.Len(), n+1)
	}
}

func isClosedOrReset(err error) bool {
	return strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed")
}

// A client may send its first frames in the same packet as its handshake:
// they are read from the handshake's buffer, with no readiness to say so.
func TestWebSocketFramesWithTheHandshake(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	u, _ := url.Parse(ts.base + "/websocket")
	t.Run("rfc6455", func(t *testing.T) {
		nc, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		var req bytes.Buffer
		fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", u.Path, u.Host)
		for _, m := range []string{"early", "bird"} {
			_ = ws.WriteFrame(&req, ws.MaskFrame(ws.NewTextFrame([]byte(m))))
		}
		if _, err := nc.Write(req.Bytes()); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
		}
		for _, want := range []string{"early", "bird"} {
			f, err := ws.ReadFrame(br)
			if err != nil || string(f.Payload) != want {
				t.Fatalf("got %q %v, want %q", f.Payload, err, want)
			}
		}
	})
	t.Run("hixie-76", func(t *testing.T) {
		nc, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		// The draft's own key example, then two frames, in one write.
		fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key1: 4 @1  46546xW%%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n^n:ds[4U"+
			"\x00early\xff\x00bird\xff", u.Path, u.Host)
		br := bufio.NewReader(nc)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
		}
		if _, err := io.ReadFull(br, make([]byte, 16)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"early", "bird"} {
			if got, err := hixieNext(br); err != nil || got != want {
				t.Fatalf("got %q %v, want %q", got, err, want)
			}
		}
	})
}

// waitQueued waits until the session holds n messages for replay: the
// client's acknowledgements reach it through the connection's writer.
func waitQueued(t *testing.T, s *session.Session, n int) {
	t.Helper()
	ctx := testCtx(t)
	for {
		if got, _ := s.Queued(); got == n {
			return
		}
		select {
		case <-ctx.Done():
			got, _ := s.Queued()
			t.Fatalf("%d messages held, want %d", got, n)
		default:
			runtime.Gosched()
		}
	}
}

// Acknowledgements and heartbeats, which the poller takes itself, mixed in
// one packet with a message, which it hands on; and a message whose frame
// comes in two packets: each is taken once, in order.
func TestWebSocketMixedAndSplitFrames(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	conn := dialWS(t, sessionWS(c, 0), nil)
	conn.frame()
	s := ts.Session(c.SessionID)
	for _, m := range []string{"one", "two", "three"} {
		if err := s.Send(testCtx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		conn.frame()
	}
	var pkt bytes.Buffer
	for _, f := range []wire.Frame{{Kind: wire.KindAck, Seq: 2}, {Kind: wire.KindMessage, Seq: 1, Data: "up"},
		{Kind: wire.KindAck, Seq: 3}, {Kind: wire.KindHeartbeat}} {
		_ = ws.WriteFrame(&pkt, ws.MaskFrame(ws.NewTextFrame(wire.AppendFrame(nil, f))))
	}
	_ = ws.WriteFrame(&pkt, ws.MaskFrame(ws.NewPongFrame(nil)))
	if _, err := conn.nc.Write(pkt.Bytes()); err != nil {
		t.Fatal(err)
	}
	expect := func(seq uint64, data string) {
		t.Helper()
		var gotAck, gotEcho bool
		for !gotAck || !gotEcho {
			switch f := conn.frame(); {
			case f.Kind == wire.KindAck && f.Seq == seq && !gotAck:
				gotAck = true
			case f.Kind == wire.KindMessage && f.Data == data && !gotEcho:
				gotEcho = true
			case f.Kind == wire.KindHeartbeat:
			default:
				t.Fatalf("frame %+v", f)
			}
		}
	}
	expect(1, "up")
	waitQueued(t, s, 1) // one to three acknowledged; the echo not yet
	split := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame(wire.AppendFrame(nil,
		wire.Frame{Kind: wire.KindMessage, Seq: 2, Data: "in two packets"}))))
	for _, part := range [][]byte{split[:7], split[7:]} {
		if _, err := conn.nc.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	expect(2, "in two packets")
	conn.sendFrame(wire.Frame{Kind: wire.KindAck, Seq: 5})
	waitQueued(t, s, 0)
}

// countStacks counts the goroutines whose stack has every one of frames.
func countStacks(frames ...string) int {
	buf := make([]byte, 16<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		all := true
		for _, f := range frames {
			all = all && strings.Contains(g, f)
		}
		if all {
			n++
		}
	}
	return n
}

func waitStacks(t *testing.T, n int, frames ...string) {
	t.Helper()
	ctx := testCtx(t)
	for countStacks(frames...) < n {
		select {
		case <-ctx.Done():
			t.Fatalf("fewer than %d goroutines in %v", n, frames)
		default:
			runtime.Gosched()
		}
	}
}

// Peers that stop reading leave writes that cannot finish, and when they
// then break the protocol, their links' ends wait behind those writes: the
// writer pool's few goroutines must wait for none of it, or everyone's
// messages would wait out the write timeout.
func TestWebSocketStuckPeersDoNotStallOthers(t *testing.T) {
	if !netpoll.Supported {
		t.Skip("no writer pool without the poller")
	}
	const bad, good = 6, 20 // more stuck links than the pool has goroutines
	ts := newTestServer(t, echo, Options{
		Session:   session.Config{MaxQueueBytes: 64 << 20, MaxQueueMessages: 4096},
		WebSocket: websocket.Options{WriteTimeout: 20 * time.Second},
	})
	big := strings.Repeat("x", 60<<10)
	stuck := make([]*session.Session, bad)
	stuckConns := make([]*wsConn, bad)
	for i := range stuck {
		c := ts.negotiate(t)
		stuckConns[i] = dialWS(t, sessionWS(c, 0), nil)
		stuckConns[i].frame()
		stuck[i] = ts.Session(c.SessionID)
		for j := 0; j < 400; j++ { // far more than the socket buffers hold
			if err := stuck[i].Send(testCtx(t), big); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitStacks(t, bad, "(*link).writeRest", "(*rfcConn).writeRest")
	goods := make([]*wsConn, good)
	sessions := make([]*session.Session, good)
	for i := range goods {
		c := ts.negotiate(t)
		goods[i] = dialWS(t, sessionWS(c, 0), nil)
		goods[i].frame()
		sessions[i] = ts.Session(c.SessionID)
	}
	// Each stuck peer breaks the protocol: its reader ends the link, and
	// waits behind the write, holding the link.
	for _, c := range stuckConns {
		c.send("not a session frame")
	}
	waitStacks(t, bad, "(*link).end", "(*rfcConn).Close")
	for _, s := range stuck { // their writers are woken too
		_ = s.Offer("more")
	}
	for _, s := range sessions {
		if err := s.Send(testCtx(t), "for the good"); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range goods {
		if f := c.frame(); f.Kind != wire.KindMessage || f.Data != "for the good" {
			t.Fatalf("good peer %d: %+v", i, f)
		}
	}
	// Served while the stuck writes still wait (20 s): none has given up.
	if n := countStacks("(*link).writeRest", "(*rfcConn).writeRest"); n != bad {
		t.Fatalf("%d of %d stuck writes still waiting when the good peers were served", n, bad)
	}
	for _, c := range stuckConns {
		c.nc.Close() // the stuck writes fail now, and the links end
	}
}

// Many connections, frames of every kind written in packets cut at random
// bytes, while the server writes back: every message reaches each side
// once, in order, and every acknowledgement reaches the session.
func TestWebSocketRandomlyCutFramesExactlyOnce(t *testing.T) {
	const conns, msgs = 40, 150
	got := make(chan [2]string, conns*msgs)
	ts := newTestServer(t, HandlerFunc(func(s *session.Session) {
		for {
			m, err := s.Recv(context.Background())
			if err != nil {
				return
			}
			got <- [2]string{s.ID(), m}
			if err := s.Send(context.Background(), "echo "+m); err != nil {
				return
			}
		}
	}), Options{Session: session.Config{MaxQueueMessages: 4096}})
	var wg sync.WaitGroup
	errs := make(chan error, 2*conns)
	wsConns := make([]*wsConn, conns)
	sessions := make([]*session.Session, conns)
	for i := 0; i < conns; i++ {
		c := ts.negotiate(t)
		conn := dialWS(t, sessionWS(c, 0), nil)
		conn.frame()
		wsConns[i], sessions[i] = conn, ts.Session(c.SessionID)
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		var seen atomic.Uint64 // highest echo the reader has, for the writer to acknowledge
		wg.Add(2)
		go func() { // the only writer: messages, acknowledgements, heartbeats, pongs
			defer wg.Done()
			var pending []byte
			frame := func(f ws.Frame) { pending = append(pending, ws.MustCompileFrame(ws.MaskFrame(f))...) }
			acked := uint64(0)
			for seq := uint64(1); seq <= msgs; seq++ {
				frame(ws.NewTextFrame(wire.AppendFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: seq, Data: fmt.Sprintf("%d-%d", i, seq)})))
				switch rng.IntN(4) {
				case 0:
					frame(ws.NewTextFrame([]byte("h")))
				case 1:
					frame(ws.NewPongFrame(nil))
				case 2:
					if a := seen.Load(); a > acked {
						frame(ws.NewTextFrame(wire.AppendFrame(nil, wire.Frame{Kind: wire.KindAck, Seq: a})))
						acked = a
					}
				}
				for len(pending) > 0 && rng.IntN(3) > 0 {
					n := 1 + rng.IntN(len(pending))
					if _, err := conn.nc.Write(pending[:n]); err != nil {
						errs <- err
						return
					}
					pending = pending[n:]
				}
			}
			if _, err := conn.nc.Write(pending); err != nil {
				errs <- err
			}
		}()
		go func() { // each echo once, in order
			defer wg.Done()
			for next := uint64(1); next <= msgs; {
				f, err := ws.ReadFrame(conn.r)
				if err != nil {
					errs <- err
					return
				}
				if f.Header.OpCode != ws.OpText {
					continue
				}
				fr, err := wire.ParseFrame(string(f.Payload))
				if err != nil {
					errs <- err
					return
				}
				if fr.Kind != wire.KindMessage {
					continue
				}
				if want := fmt.Sprintf("echo %d-%d", i, next); fr.Data != want || fr.Seq != next {
					errs <- fmt.Errorf("connection %d: got %d %q, want %d %q", i, fr.Seq, fr.Data, next, want)
					return
				}
				seen.Store(next)
				next++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	perSession := map[string][]string{}
	for len(got) > 0 {
		g := <-got
		perSession[g[0]] = append(perSession[g[0]], g[1])
	}
	for i, s := range sessions {
		ms := perSession[s.ID()]
		if len(ms) != msgs {
			t.Fatalf("session %d: %d messages, want %d", i, len(ms), msgs)
		}
		for k, m := range ms {
			if want := fmt.Sprintf("%d-%d", i, k+1); m != want {
				t.Fatalf("session %d: message %d is %q, want %q", i, k, m, want)
			}
		}
		wsConns[i].sendFrame(wire.Frame{Kind: wire.KindAck, Seq: msgs})
		waitQueued(t, s, 0)
	}
}

// noPoller makes newTestServer's WebSocket connections read with a
// goroutine each and write without the pool (websocket.Options.NoPoller),
// as on systems without the poller, or behind TLS.
var noPoller bool

// The WebSocket tests again, without the poller: the way every connection
// goes where there is none, and behind TLS.
func TestWebSocketWithoutPoller(t *testing.T) {
	noPoller = true
	defer func() { noPoller = false }()
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"EchoResumeAcrossTransports", TestWebSocketSessionEchoResumeAcrossTransports},
		{"RawEcho", TestWebSocketRawEcho},
		{"ViolationsCloseWithTheirCodes", TestWebSocketViolationsCloseWithTheirCodes},
		{"PingFragmentsAndCloseEcho", TestWebSocketPingFragmentsAndCloseEcho},
		{"ReplacedUnknownAndClosed", TestWebSocketReplacedUnknownAndClosed},
		{"HeartbeatAndPing", TestWebSocketHeartbeatAndPing},
		{"DeadAndStalledPeers", TestWebSocketDeadAndStalledPeers},
		{"RawListenerOnBusyFeedIsPinged", TestRawListenerOnBusyFeedIsPinged},
		{"RawEmptyCloseIs1000", TestRawEmptyCloseIs1000},
		{"HixieSessionBatch", TestWebSocketHixieSessionBatch},
		{"HixieRawBurst", TestWebSocketHixieRawBurst},
		{"MixedAndSplitFrames", TestWebSocketMixedAndSplitFrames},
		{"FramesWithTheHandshake", TestWebSocketFramesWithTheHandshake},
		{"RandomlyCutFramesExactlyOnce", TestWebSocketRandomlyCutFramesExactlyOnce},
	} {
		t.Run(tc.name, tc.f)
	}
}

// A peer that sends a frame the poller takes itself (a pong) and closes
// TCP at once: its FIN may come in the same readiness report as the bytes,
// and show only on a read after them. Every such session must end.
func TestWebSocketPeerLeavingRightAfterAFrameIsSeen(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{})
	u, _ := url.Parse(ts.base + "/websocket")
	const n = 16 // the recorder's buffer of ends: a failing run must not block its cleanup
	conns := make([]net.Conn, n)
	for i := range conns {
		nc, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", u.Path, u.Host)
		br := bufio.NewReader(nc)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
		}
		rc.session(t)
		conns[i] = nc
	}
	waitLinksIdle(t) // every connection parked
	for _, nc := range conns {
		var b bytes.Buffer
		_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewPongFrame(nil)))
		if _, err := nc.Write(b.Bytes()); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	for i := 0; i < n; i++ {
		select {
		case <-rc.ended:
		case <-testCtx(t).Done():
			t.Fatalf("%d of %d sessions still open after their peers left", n-i, n)
		}
	}
}

// Peers that send part of a frame and go silent are cut at the read
// timeout: the reader that waits for the rest of the frame has a
// deadline of its own (the watchdog sweeps parked links only).
func TestWebSocketPeersSilentMidFrameAreCut(t *testing.T) {
	rc := newRecorder()
	ts := newTestServer(t, rc, Options{WebSocket: websocket.Options{ReadTimeout: 300 * time.Millisecond}})
	conn := dialWS(t, sessionWS(ts.negotiate(t), 0), nil)
	conn.frame()
	rc.session(t)
	frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame(wire.AppendFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: 1, Data: "cut short"}))))
	if _, err := conn.nc.Write(frame[:len(frame)-3]); err != nil {
		t.Fatal(err)
	}
	hc := ts.negotiate(t)
	hnc, hbr := hixieDial(t, sessionWS(hc, 0))
	if _, err := hixieNext(hbr); err != nil {
		t.Fatal(err)
	}
	rc.session(t)
	if _, err := io.WriteString(hnc, "\x00m1:cut sho"); err != nil {
		t.Fatal(err)
	}
	if !ts.clock.WaitPending(30*time.Second, 2, testCtx(t).Done()) {
		t.Fatal("peers silent in the middle of a frame never cut")
	}
	select {
	case m := <-rc.got:
		t.Fatalf("the application got %q", m)
	default:
	}
}

// When the poller fails (netpoll gives up on it), every parked connection
// goes back to reading with a goroutine of its own, and goes on working;
// later connections get a new poller.
func TestWebSocketPollerFailureFallsBackToGoroutines(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	const n = 4
	conns := make([]*wsConn, n)
	for i := range conns {
		conns[i] = dialWS(t, sessionWS(ts.negotiate(t), 0), nil)
		conns[i].frame()
	}
	hnc, hbr := hixieDial(t, sessionWS(ts.negotiate(t), 0))
	if _, err := hixieNext(hbr); err != nil {
		t.Fatal(err)
	}
	waitLinksIdle(t)
	netpoll.FailForTests()
	later := dialWS(t, sessionWS(ts.negotiate(t), 0), nil)
	later.frame()
	echoed := func(c *wsConn, seq uint64, data string) {
		t.Helper()
		c.sendFrame(wire.Frame{Kind: wire.KindMessage, Seq: seq, Data: data})
		var gotAck, gotEcho bool
		for !gotAck || !gotEcho {
			switch f := c.frame(); {
			case f.Kind == wire.KindAck && f.Seq == seq:
				gotAck = true
			case f.Kind == wire.KindMessage && f.Data == data:
				gotEcho = true
			case f.Kind == wire.KindHeartbeat:
			default:
				t.Fatalf("frame %+v", f)
			}
		}
		c.sendFrame(wire.Frame{Kind: wire.KindAck, Seq: seq})
	}
	hixieEchoed := func(seq uint64, data string) {
		t.Helper()
		fmt.Fprintf(hnc, "\x00%s\xff", wire.AppendFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: seq, Data: data}))
		var gotAck, gotEcho bool
		for !gotAck || !gotEcho {
			msg, err := hixieNext(hbr)
			if err != nil {
				t.Fatalf("hixie peer: %v", err)
			}
			switch f, _ := wire.ParseFrame(msg); {
			case f.Kind == wire.KindAck && f.Seq == seq:
				gotAck = true
			case f.Kind == wire.KindMessage && f.Data == data:
				gotEcho = true
			case f.Kind == wire.KindHeartbeat:
			default:
				t.Fatalf("hixie peer: frame %q", msg)
			}
		}
		fmt.Fprintf(hnc, "\x00%s\xff", wire.AppendFrame(nil, wire.Frame{Kind: wire.KindAck, Seq: seq}))
	}
	for round := uint64(1); round <= 2; round++ {
		for i, c := range append(conns, later) {
			echoed(c, round, fmt.Sprintf("%d/%d", i, round))
		}
		hixieEchoed(round, fmt.Sprintf("hixie/%d", round))
	}
}

// A peer slow to read leaves a write pending; the acknowledgements it sends
// meanwhile (taken by the poller) reach the session at once, freeing its
// queue, not once the write is done.
func TestWebSocketAcksTakenDuringAPendingWrite(t *testing.T) {
	ts := newTestServer(t, echo, Options{
		Session:   session.Config{MaxQueueBytes: 64 << 20, MaxQueueMessages: 4096},
		WebSocket: websocket.Options{WriteTimeout: time.Minute},
	})
	c := ts.negotiate(t)
	conn := dialWS(t, sessionWS(c, 0), nil)
	conn.frame()
	s := ts.Session(c.SessionID)
	waitLinksIdle(t)
	big := strings.Repeat("x", 60<<10)
	const n = 400 // far more than the socket buffers hold
	for i := 0; i < n; i++ {
		if err := s.Send(testCtx(t), big); err != nil {
			t.Fatal(err)
		}
	}
	waitStacks(t, 1, "(*link).writeRest", "(*rfcConn).writeRest")
	conn.sendFrame(wire.Frame{Kind: wire.KindAck, Seq: 2})
	waitQueued(t, s, n-2)
	if got := countStacks("(*link).writeRest", "(*rfcConn).writeRest"); got != 1 {
		t.Fatalf("%d writes pending after the acknowledgement, want the one still", got)
	}
	conn.nc.Close() // the pending write fails now
}
