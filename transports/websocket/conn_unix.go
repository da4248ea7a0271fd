//go:build unix

package websocket

import (
	"io"
	"net"
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

// readNB reads what the socket holds now, without waiting: errWouldBlock
// if nothing, io.EOF at the peer's end. Not while another read runs.
func (c *rfcConn) readNB(p []byte) (n int, err error) {
	cerr := c.rc.Read(func(fd uintptr) bool {
		for {
			m, e := syscall.Read(int(fd), p)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				err = errWouldBlock
			case e != nil:
				err = &net.OpError{Op: "read", Net: "tcp", Err: e}
			case m == 0:
				err = io.EOF
			default:
				n = m
			}
			return true // never wait
		}
	})
	if cerr != nil {
		return 0, cerr // closed, or past the read deadline
	}
	return n, err
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
	cerr := c.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return true
			case e != nil:
				err = &net.OpError{Op: "write", Net: "tcp", Err: e}
				return true
			case m <= 0:
				return true
			}
		}
		return true // never wait
	})
	if cerr != nil {
		err = cerr
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
