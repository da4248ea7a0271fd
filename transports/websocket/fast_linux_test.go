//go:build linux

package websocket

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/internal/fakeclock"
	"github.com/cometkit/cometkit/internal/netpoll"
	"github.com/cometkit/cometkit/session"
)

// tcpPair is a connected pair of TCP connections on loopback.
func tcpPair(t *testing.T) (srv, cli *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

// unread is the count of bytes the socket holds (SIOCINQ).
func unread(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var errno syscall.Errno
	_ = rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	})
	if errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}

// polledLink is a bare link on srv, registered with the poller, whose
// reports come to the test (on the channel) instead of to the link.
func polledLink(t *testing.T, srv *net.TCPConn) (*link, chan netpoll.Report) {
	t.Helper()
	c := newRFCConn(srv, nil, 1<<16, time.Minute, time.Minute)
	if !c.initRaw() {
		t.Fatal("no raw connection")
	}
	l := &link{conn: c, rfc: c}
	reports := make(chan netpoll.Report, 16)
	desc, err := netpoll.Register(c.rc, netpoll.Edge, func(r netpoll.Report) { reports <- r })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desc.Close() })
	l.desc = desc
	return l, reports
}

// A peer that sends frames the poller takes itself faster than it reads
// them does not keep the poller's goroutine: one report reads a bounded
// amount, and a re-arm reports the connection again after the others'.
func TestFastReadIsBounded(t *testing.T) {
	srv, cli := tcpPair(t)
	if err := srv.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	l, reports := polledLink(t, srv)

	// 8 bytes a pong: every read of a whole buffer ends on a frame's end,
	// and nothing is handed on to a reader goroutine.
	pong := ws.MustCompileFrame(ws.MaskFrame(ws.NewPongFrame([]byte("hi"))))
	const total = 40 * 4096 // reads of 4 KiB
	flood := bytes.Repeat(pong, total/len(pong))
	if _, err := cli.Write(flood); err != nil {
		t.Fatal(err)
	}
	for unread(t, srv) < total { // all of it in the socket, as from a fast peer
		runtime.Gosched()
	}
	var report netpoll.Report
	select {
	case report = <-reports:
	case <-time.After(10 * time.Second):
		t.Fatal("no report of the flood")
	}
	l.rstate.Store(rFast)
	l.fastRead(report)
	if left := unread(t, srv); left == 0 || left%len(pong) != 0 {
		t.Fatalf("one report read %d of %d bytes; want a bounded part, in whole frames", total-left, total)
	}
	if st := l.rstate.Load(); st != rParked {
		t.Fatalf("reader state %d after its turn, want parked", st)
	}
	select {
	case <-reports: // re-armed: the rest is reported again
	case <-time.After(10 * time.Second):
		t.Fatal("the rest of the flood was not reported again")
	}
}

// testSession is a session for a link to carry, ended with the test.
func testSession(t *testing.T) *session.Session {
	cfg := session.Config{Clock: fakeclock.New()}.Defaults()
	s := session.New(session.NewID(), session.Info{}, &cfg, nil)
	t.Cleanup(func() { s.Terminate(session.CodeGoingAway, "done") })
	return s
}

// The read-timeout sweep leaves alone a link whose bytes are being read
// just then, though its peer had been silent until then: no deadline of
// the sweep's is left on it to fail its reads after. (Here the poller's
// goroutine reads a pong that came at the last moment.)
func TestSweepLeavesALinkBeingReadAlone(t *testing.T) {
	srv, cli := tcpPair(t)
	tr := New(Options{ReadTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c := newRFCConn(srv, nil, 1<<16, tr.opts.ReadTimeout, tr.opts.WriteTimeout)
	if !c.initRaw() {
		t.Fatal("no raw connection")
	}
	c.setParked(true)
	s := testSession(t)
	l := &link{t: tr, ep: s, conn: c, rfc: c}
	l.runner.F = func() {}
	desc, err := netpoll.Register(c.rc, netpoll.Edge, func(netpoll.Report) {}) // reports are the test's to make
	if err != nil {
		t.Fatal(err)
	}
	l.desc = desc
	l.mu.Lock()
	tr.watch.add(l, tr.opts.ReadTimeout)
	l.watched = true
	l.mu.Unlock()
	defer l.end(session.CodeNormal, "", false)

	l.waitSince.Store(time.Now().Add(-2 * tr.opts.ReadTimeout).UnixNano()) // silent for two timeouts
	if _, err := cli.Write(ws.MustCompileFrame(ws.MaskFrame(ws.NewPongFrame(nil)))); err != nil {
		t.Fatal(err)
	}
	for unread(t, srv) == 0 {
		runtime.Gosched()
	}
	l.rstate.Store(rFast) // the poller took the report of the pong
	tr.sweepWatched()     // the sweep comes meanwhile
	l.fastRead(netpoll.Report{})
	if l.closed.Load() || c.readErr != nil || l.rstate.Load() != rParked {
		t.Fatalf("after the pong: closed %v, read error %v, state %d; want the link parked", l.closed.Load(), c.readErr, l.rstate.Load())
	}
	// And it reads on: the next frame, too.
	if _, err := cli.Write(ws.MustCompileFrame(ws.MaskFrame(ws.NewPongFrame(nil)))); err != nil {
		t.Fatal(err)
	}
	for unread(t, srv) == 0 {
		runtime.Gosched()
	}
	l.rstate.Store(rFast)
	l.fastRead(netpoll.Report{})
	if l.closed.Load() || c.readErr != nil {
		t.Fatalf("the next pong: closed %v, read error %v", l.closed.Load(), c.readErr)
	}
}

// threadReads is the count of read system calls this thread has made
// (/proc/thread-self/io); the caller keeps to its thread.
func threadReads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/io")
	if err != nil {
		// Linux has had /proc/thread-self since 3.17 and per-task I/O counts
		// since 2.6.20 (CONFIG_TASK_IO_ACCOUNTING, on in Debian's kernels and
		// on CI's machine): a kernel without them fails here, not skips.
		t.Fatalf("no per-thread I/O accounting (/proc/thread-self/io): %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no syscr in %q", b)
	return 0
}

// An acknowledgement (or heartbeat, or pong) reported alone costs the
// poller one read: the short read drains the socket, and whatever comes
// next is reported anew. Without that report (a hang-up, or a failing
// poller's report), it reads on until EAGAIN.
func TestFastReadStopsAtAShortRead(t *testing.T) {
	srv, cli := tcpPair(t)
	l, reports := polledLink(t, srv)
	pong := ws.MustCompileFrame(ws.MaskFrame(ws.NewPongFrame([]byte("hi"))))

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadReads(t)
	own := threadReads(t) - start // the reads of reading the count
	for _, tc := range []struct {
		name   string
		report func(netpoll.Report) netpoll.Report
		reads  int
	}{
		{"bytes alone", func(r netpoll.Report) netpoll.Report { return r }, 1},
		{"not known to be drained", func(netpoll.Report) netpoll.Report { return netpoll.Report{} }, 2},
	} {
		if _, err := cli.Write(pong); err != nil {
			t.Fatal(err)
		}
		var r netpoll.Report
		select {
		case r = <-reports:
		case <-time.After(10 * time.Second):
			t.Fatal("no report of the pong")
		}
		if !r.Drained() {
			t.Fatal("the report of a pong alone is not drained by a short read")
		}
		l.rstate.Store(rFast)
		before := threadReads(t)
		l.fastRead(tc.report(r))
		reads := threadReads(t) - before - own
		if reads != tc.reads {
			t.Errorf("%s: the poller read %d times; want %d", tc.name, reads, tc.reads)
		}
		if left := unread(t, srv); left != 0 || l.rstate.Load() != rParked {
			t.Fatalf("%s: %d bytes left, state %d; want all read and the link parked", tc.name, left, l.rstate.Load())
		}
	}
}

// writingLink is a link on a TCP connection, attached to a session, whose
// writer the test runs itself (pumpNow), with no ping due; cli is the
// peer's end.
func writingLink(t *testing.T) (*Transport, *link, *session.Session, *net.TCPConn) {
	t.Helper()
	srv, cli := tcpPair(t)
	tr := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c := newRFCConn(srv, nil, 1<<16, tr.opts.ReadTimeout, tr.opts.WriteTimeout)
	if !c.initRaw() {
		t.Fatal("no raw connection")
	}
	s := testSession(t)
	l := &link{t: tr, ep: s, conn: c, rfc: c, opened: true, pinged: time.Now().UnixNano()}
	l.runner.F = func() {}
	if err := s.Attach(l); err != nil {
		t.Fatal(err)
	}
	return tr, l, s, cli
}

// pumpNow runs l's writer once, as its runner would.
func pumpNow(l *link) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pumpOnce()
}

// Once the batch of acknowledgements is flushed, the link's
// acknowledgement goes out with its next write, alone if need be, even
// when another message from the client put the link back in the batch
// between the flush and that write (which used to put it off for another
// ackDelay, and again each time the race recurred).
func TestFlushedAckGoesAloneThoughQueuedAgain(t *testing.T) {
	tr, l, _, cli := writingLink(t)
	l.acknowledge(1)
	tr.flushAcks() // the batch's timer, come early
	l.acknowledge(2)
	if st := l.ackState.Load(); st&ackWaiting == 0 {
		t.Fatalf("state %b: the second message did not put the link back in the batch", st)
	}
	pumpNow(l)
	if err := cli.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	f, err := ws.ReadFrame(cli)
	if err != nil {
		t.Fatalf("nothing written after the flush: %v", err)
	}
	if f.Header.OpCode != ws.OpText || string(f.Payload) != "a2" {
		t.Fatalf("written %v %q, want the text a2", f.Header.OpCode, f.Payload)
	}
}

// A flush that finds the acknowledgement already carried leaves nothing
// due: the next one waits for a frame to go with again, and is not sent
// alone by a write woken for something else (the client's own
// acknowledgement, say, just ahead of the application's answer).
func TestFlushAfterCarriedAckLeavesNothingDue(t *testing.T) {
	tr, l, s, cli := writingLink(t)
	if err := cli.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		f, err := ws.ReadFrame(cli)
		if err != nil {
			t.Fatal(err)
		}
		return string(f.Payload)
	}
	// The answer carries the acknowledgement.
	l.acknowledge(1)
	if err := s.Send(context.Background(), "answer"); err != nil {
		t.Fatal(err)
	}
	pumpNow(l)
	if m, a := next(), next(); m != "m1:answer" || a != "a1" {
		t.Fatalf("wrote %q then %q, want the answer then a1", m, a)
	}
	tr.flushAcks() // nothing left to send
	l.acknowledge(2)
	pumpNow(l) // woken for something else
	if n := unread(t, cli); n != 0 {
		t.Fatalf("%d bytes written before the flush: a2 went alone", n)
	}
	tr.flushAcks()
	pumpNow(l)
	if a := next(); a != "a2" {
		t.Fatalf("after the flush: %q, want a2", a)
	}
}
