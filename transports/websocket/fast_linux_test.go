//go:build linux

package websocket

import (
	"bytes"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/internal/netpoll"
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

// A peer that sends frames the poller takes itself faster than it reads
// them does not keep the poller's goroutine: one report reads a bounded
// amount, and a re-arm reports the connection again after the others'.
func TestFastReadIsBounded(t *testing.T) {
	srv, cli := tcpPair(t)
	if err := srv.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	c := newRFCConn(srv, nil, 1<<16, time.Minute, time.Minute)
	if !c.initRaw() {
		t.Fatal("no raw connection")
	}
	l := &link{conn: c, rfc: c}
	reports := make(chan struct{}, 16)
	desc, err := netpoll.Register(c.rc, netpoll.Edge, func() { reports <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer desc.Close()
	l.desc = desc

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
	select {
	case <-reports:
	case <-time.After(10 * time.Second):
		t.Fatal("no report of the flood")
	}
	l.rstate.Store(rFast)
	l.fastRead()
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
