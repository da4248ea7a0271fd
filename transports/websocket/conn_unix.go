//go:build unix

package websocket

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// initRaw makes readNB and tryWrite available: on a TCP or Unix socket.
func (c *rfcConn) initRaw() bool {
	var sc syscall.Conn
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		sc = nc
	case *net.UnixConn:
		sc = nc
	default:
		return false // a wrapper might buffer out of sight (TLS does)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	c.rc = rc
	return true
}

// rawOp is one non-blocking read or write on a socket, with its method
// values bound once: a closure handed to syscall.RawConn escapes (it is
// an interface's method), so one made per call cost three allocations per
// message written — its captured results and itself. rawOps are pooled.
type rawOp struct {
	p       []byte
	n       int
	err     error
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

var rawOps = sync.Pool{New: func() any {
	op := new(rawOp)
	op.readFn, op.writeFn = op.read, op.write
	return op
}}

func getRawOp(p []byte) *rawOp {
	op := rawOps.Get().(*rawOp)
	op.p, op.n, op.err = p, 0, nil
	return op
}

func (op *rawOp) put() {
	op.p, op.err = nil, nil
	rawOps.Put(op)
}

// read reads once (retrying EINTR); it never asks to wait.
func (op *rawOp) read(fd uintptr) bool {
	for {
		m, e := syscall.Read(int(fd), op.p)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			op.err = errWouldBlock
		case e != nil:
			op.err = &net.OpError{Op: "read", Net: "tcp", Err: e}
		case m == 0:
			op.err = io.EOF
		default:
			op.n = m
		}
		return true
	}
}

// write writes as much of op.p as the socket takes now; it never asks to
// wait.
func (op *rawOp) write(fd uintptr) bool {
	for op.n < len(op.p) {
		m, e := syscall.Write(int(fd), op.p[op.n:])
		if m > 0 {
			op.n += m
		}
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return true
		case e != nil:
			op.err = &net.OpError{Op: "write", Net: "tcp", Err: e}
			return true
		case m <= 0:
			return true
		}
	}
	return true
}

// readNB reads what the socket holds now, without waiting: errWouldBlock
// if nothing, io.EOF at the peer's end. Not while another read runs.
func (c *rfcConn) readNB(p []byte) (n int, err error) {
	op := getRawOp(p)
	defer op.put()
	if cerr := c.rc.Read(op.readFn); cerr != nil {
		return 0, cerr // closed, or past the read deadline
	}
	return op.n, op.err
}

// tryWrite writes what the socket takes now, without waiting. When it
// returns n < len(b) with no error, the rest must wait: held says whether
// the write lock is still held (it is, after a partial write, so that no
// other frame cuts into this one) for writeRest to finish and release; it
// is not when another write had the lock (n is then 0).
func (c *rfcConn) tryWrite(b []byte) (n int, held bool, err error) {
	if !c.wmu.TryLock() {
		return 0, false, nil
	}
	if c.closed || c.closeSent {
		c.wmu.Unlock()
		return 0, false, net.ErrClosed
	}
	p := b
	if c.head != nil { // the 101 answer goes first, in the same write
		p = append(c.head.b, b...)
	}
	op := getRawOp(p)
	cerr := c.rc.Write(op.writeFn)
	n, err = op.n, op.err
	op.put()
	if cerr != nil {
		err = cerr
	}
	if c.head != nil {
		if h := c.head.b; n < len(h) {
			c.head.b = h[n:] // writeRest sends the rest of it first
			n = 0
		} else {
			n -= len(h)
			c.head = nil
		}
	}
	if err != nil {
		c.closed = true
		_ = c.nc.Close()
		c.wmu.Unlock()
		return n, false, err
	}
	if n < len(b) {
		return n, true, nil
	}
	c.wmu.Unlock()
	return n, false, nil
}

// writeNowLocked writes what the socket takes of b now, without waiting,
// and drops the rest. Under wmu.
func (c *rfcConn) writeNowLocked(b []byte) {
	op := getRawOp(b)
	_ = c.rc.Write(op.writeFn)
	op.put()
}
