//go:build linux

package netpoll

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bound fails a test that waits too long instead of hanging it; nothing
// waits for it to pass.
const bound = 10 * time.Second

// pairs returns n connected TCP pairs on loopback: server ends, client ends.
func pairs(t *testing.T, n int) (srv, cli []*net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		srv = append(srv, s.(*net.TCPConn))
		cli = append(cli, c.(*net.TCPConn))
	}
	t.Cleanup(func() {
		for i := range srv {
			srv[i].Close()
			cli[i].Close()
		}
	})
	return srv, cli
}

func raw(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// wait is the next value from ch (what names the event awaited: readiness
// or a Report), or a failed test after bound.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("%s: nothing reported", what)
		var zero T
		return zero
	}
}

// pollers counts the goroutines dispatching readiness.
func pollers() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "netpoll.(*instance).run(")
}

// One report per arming; a re-arm on a socket with unread bytes reports at
// once (the watch is level-triggered); a peer's close is readable.
func TestOneReportPerArm(t *testing.T) {
	srv, cli := pairs(t, 1)
	fired := make(chan int, 16)
	d, err := Register(raw(t, srv[0]), OneShot, func(Report) { fired <- 1 })
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cli[0].Write([]byte("a"))
	wait(t, fired, "first byte")
	cli[0].Write([]byte("b")) // not armed: no report
	if err := d.Arm(); err != nil {
		t.Fatal(err)
	}
	wait(t, fired, "re-armed with unread bytes")
	buf := make([]byte, 8)
	if n, _ := io.ReadAtLeast(srv[0], buf, 2); string(buf[:n]) != "ab" {
		t.Fatalf("read %q", buf[:n])
	}
	if err := d.Arm(); err != nil {
		t.Fatal(err)
	}
	cli[0].Close()
	wait(t, fired, "peer closed")
	if n, err := srv[0].Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the peer's close: %d %v", n, err)
	}
	if len(fired) != 0 {
		t.Fatalf("%d reports more than armings", len(fired))
	}
}

// Many connections share one goroutine, which ends with the last
// registration.
func TestManyConnectionsOneGoroutine(t *testing.T) {
	const n = 500
	srv, cli := pairs(t, n)
	fired := make(chan int, n)
	descs := make([]*Desc, n)
	for i := range srv {
		d, err := Register(raw(t, srv[i]), OneShot, func(Report) { fired <- i })
		if err != nil {
			t.Fatal(err)
		}
		descs[i] = d
	}
	for round := 0; round < 3; round++ {
		for _, c := range cli {
			c.Write([]byte{byte(round)})
		}
		seen := make([]bool, n)
		for range n {
			i := wait(t, fired, "round")
			if seen[i] {
				t.Fatalf("connection %d reported twice in one arming", i)
			}
			seen[i] = true
			var b [1]byte
			if _, err := srv[i].Read(b[:]); err != nil || b[0] != byte(round) {
				t.Fatalf("connection %d: %v %v", i, b, err)
			}
			if err := descs[i].Arm(); err != nil {
				t.Fatal(err)
			}
		}
		// Counted once it has run (a goroutine not yet started is not
		// in runtime.Stack's dump).
		if got := pollers(); got != 1 {
			t.Fatalf("%d poller goroutines for %d connections", got, n)
		}
	}
	for _, d := range descs {
		d.Close()
	}
	goleak.VerifyNone(t) // the poller's goroutine is gone
	// And it comes back for the next registration.
	d, err := Register(raw(t, srv[0]), OneShot, func(Report) { fired <- 0 })
	if err != nil {
		t.Fatal(err)
	}
	cli[0].Write([]byte("x"))
	wait(t, fired, "after a restart")
	d.Close()
}

func TestArmAfterClose(t *testing.T) {
	srv, _ := pairs(t, 2)
	d, err := Register(raw(t, srv[0]), OneShot, func(Report) {})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	d.Close() // twice is fine
	if err := d.Arm(); !errors.Is(err, ErrClosed) {
		t.Fatalf("arm after Close: %v", err)
	}
	d2, err := Register(raw(t, srv[1]), Edge, func(Report) {})
	if err != nil {
		t.Fatal(err)
	}
	srv[1].Close()
	if err := d2.Arm(); err == nil {
		t.Fatal("arm on a closed connection succeeded")
	}
	d2.Close()
}

// Edge mode reports each arrival with no arming, and a peer's close.
func TestEdgeReportsEachArrival(t *testing.T) {
	srv, cli := pairs(t, 1)
	fired := make(chan int, 16)
	d, err := Register(raw(t, srv[0]), Edge, func(Report) { fired <- 1 })
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 8)
	for _, b := range []string{"a", "b", "c"} {
		cli[0].Write([]byte(b))
		wait(t, fired, "arrival "+b)
		if n, err := srv[0].Read(buf); err != nil || string(buf[:n]) != b {
			t.Fatalf("read %q %v", buf[:n], err)
		}
	}
	cli[0].Close()
	wait(t, fired, "peer closed")
}

// A poller that fails reports each registration once more, then never;
// Arm fails and Closed says so; the next registration gets a new poller.
func TestFailedPollerLetsGo(t *testing.T) {
	srv, cli := pairs(t, 2)
	oneShot := make(chan int, 16)
	d1, err := Register(raw(t, srv[0]), OneShot, func(Report) { oneShot <- 1 })
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close()
	edge := make(chan int, 16)
	d2, err := Register(raw(t, srv[1]), Edge, func(Report) { edge <- 1 })
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	FailForTests()
	wait(t, oneShot, "one-shot registration at the failure")
	wait(t, edge, "edge registration at the failure")
	if !d1.Closed() || !d2.Closed() {
		t.Fatal("registrations of a failed poller not closed")
	}
	if err := d1.Arm(); !errors.Is(err, ErrClosed) {
		t.Fatalf("arm on a failed poller: %v", err)
	}
	cli[1].Write([]byte("x"))
	d3, err := Register(raw(t, srv[0]), OneShot, func(Report) { oneShot <- 3 })
	if err != nil {
		t.Fatal(err)
	}
	defer d3.Close()
	cli[0].Write([]byte("y"))
	if v := wait(t, oneShot, "a registration after the failure"); v != 3 {
		t.Fatalf("report %d, want the new registration's", v)
	}
	if len(edge) != 0 {
		t.Fatal("a failed poller reported a registration again")
	}
}

// unixConn makes fd (one end of a socketpair) a *net.UnixConn, closed with
// the test.
func unixConn(t *testing.T, fd int) *net.UnixConn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close() // FileConn dups it
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// closeWaiting reports whether c's peer has half-closed (TCP_INFO's state
// is CLOSE_WAIT): its FIN has arrived.
func closeWaiting(t *testing.T, c *net.TCPConn) bool {
	t.Helper()
	var info *syscall.TCPInfo
	var err error
	if cerr := raw(t, c).Control(func(fd uintptr) {
		var ti syscall.TCPInfo
		size := uint32(syscall.SizeofTCPInfo)
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&ti)), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			err = errno
		}
		info = &ti
	}); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	const tcpCloseWait = 8 // include/net/tcp_states.h
	return info.State == tcpCloseWait
}

// An edge report of bytes alone says that a short read drains the socket;
// one that came after the peer's FIN does not (the FIN shows only on a
// read of its own); one-shot reports never do (nothing comes before Arm).
func TestReportDrained(t *testing.T) {
	srv, cli := pairs(t, 3)
	reports := make(chan Report, 16)
	hold := make(chan struct{})
	first := true
	d, err := Register(raw(t, srv[0]), Edge, func(r Report) {
		reports <- r
		if first { // keep the poller here until the FIN is in
			first = false
			<-hold
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	release := sync.OnceFunc(func() { close(hold) })
	defer release() // before Close, which waits for the poller
	if _, err := cli[0].Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	r := wait(t, reports, "the first bytes")
	if !r.Drained() {
		t.Fatal("a report of bytes alone is not drained by a short read")
	}
	if err := cli[0].CloseWrite(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(bound)
	for !closeWaiting(t, srv[0]) {
		if time.Now().After(deadline) {
			t.Fatal("the FIN did not arrive")
		}
		runtime.Gosched()
	}
	release()
	r = wait(t, reports, "the FIN")
	if r.Drained() {
		t.Fatal("a report after the peer's FIN says a short read drains the socket")
	}

	// Urgent data stops a read at its mark, bytes still queued after it:
	// a report that came with it is not drained by a short read.
	urgent := make(chan Report, 16)
	d2, err := Register(raw(t, srv[2]), Edge, func(r Report) { urgent <- r })
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	if err := raw(t, cli[2]).Control(func(fd uintptr) {
		sendErr = syscall.Sendto(int(fd), []byte{'!'}, syscall.MSG_OOB, nil)
	}); err != nil || sendErr != nil {
		t.Fatalf("sending urgent data: %v %v", err, sendErr)
	}
	r = wait(t, urgent, "urgent data")
	if r.Drained() {
		t.Fatal("a report of urgent data says a short read drains the socket")
	}
	d2.Close()

	// A Unix socket's read stops after a message that carried descriptors,
	// which no report shows: never drained.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unixSrv, unixCli := unixConn(t, fds[0]), unixConn(t, fds[1])
	src, err := unixSrv.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	onUnix := make(chan Report, 16)
	d3, err := Register(src, Edge, func(r Report) { onUnix <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer d3.Close()
	if _, err := unixCli.Write([]byte("u")); err != nil {
		t.Fatal(err)
	}
	r = wait(t, onUnix, "a Unix socket's bytes")
	if r.Drained() {
		t.Fatal("a report on a Unix socket says a short read drains it")
	}

	once := make(chan Report, 1)
	d1, err := Register(raw(t, srv[1]), OneShot, func(r Report) { once <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close()
	if _, err := cli[1].Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	r = wait(t, once, "a one-shot registration's bytes")
	if r.Drained() {
		t.Fatal("a one-shot report says a short read drains the socket")
	}
	if (Report{}).Drained() {
		t.Fatal("the zero Report (a failing poller's) says drained")
	}
}
