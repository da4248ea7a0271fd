//go:build linux

package netpoll

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Supported reports whether Register can work on this system.
const Supported = true

// readyDesc is a registration epoll reported, with what it reported.
type readyDesc struct {
	d      *Desc
	report Report
}

// reportOf reads epoll's event bits: on an edge-triggered TCP socket, a
// report of bytes alone (no hang-up, error or urgent data) means that
// whatever comes after it (more bytes, the peer's FIN or RST) is reported
// again, since each arrival on the socket queues an edge-triggered
// registration anew once epoll_wait has taken this report. Urgent data
// (EPOLLPRI) stops a read at its mark with bytes still queued; a Unix
// socket's read stops after a message that carried descriptors, with
// nothing to show for it: neither is drained by a short read.
func (d *Desc) reportOf(events uint32) Report {
	const ended = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR | syscall.EPOLLPRI
	edge := d.events&(syscall.EPOLLET&0xFFFFFFFF) != 0
	return Report{bytesOnly: edge && d.tcp && events&ended == 0}
}

// isTCP reports whether rc is a TCP socket.
func isTCP(rc syscall.RawConn) bool {
	proto := -1
	if err := rc.Control(func(fd uintptr) {
		proto, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PROTOCOL)
	}); err != nil {
		return false
	}
	return proto == syscall.IPPROTO_TCP
}

// instance is one epoll instance, registered in Go's runtime poller as a
// file: its goroutine parks there, not in a blocking epoll_wait, and ends
// when the file is closed.
type instance struct {
	f      *os.File
	rc     syscall.RawConn
	n      int         // registrations not yet closed; under reg.mu
	failed atomic.Bool // given up (fail): run reports nothing more
}

// reg is the process's poller: one instance at a time, made at the first
// registration and closed (its goroutine ending) after the last.
var reg struct {
	mu    sync.Mutex
	inst  *instance
	descs map[uint64]*Desc
	next  uint64
}

// Desc is one connection's registration.
type Desc struct {
	inst   *instance
	id     uint64
	rc     syscall.RawConn
	events uint32
	tcp    bool // a TCP socket: a short read can drain it (reportOf)
	fn     func(Report)
	closed atomic.Bool
}

// Register watches a connection, by its RawConn (from SyscallConn). In
// OneShot mode the watch is armed: fn is called, from the poller's
// goroutine, the next time the connection is readable (or the peer hung
// up, or the socket failed), and then not again until Arm. In Edge mode fn
// is called whenever bytes arrive (or the peer hangs up), with no arming:
// what arrived before Register, or while fn's reader was busy, brings no
// call of its own, so the reader must read until the socket has nothing
// left before it waits for fn. The Report says how far that is (see
// Report.Drained).
//
// fn must not block, nor call Close: it may read without waiting
// (syscall.RawConn) or hand the reading to a goroutine. The connection
// must not buffer reads of its own out of sight (a *net.TCPConn or
// *net.UnixConn is right; a *tls.Conn is not even a syscall.Conn).
func Register(rc syscall.RawConn, mode Mode, fn func(Report)) (*Desc, error) {
	tcp := mode == Edge && isTCP(rc)
	reg.mu.Lock()
	if reg.inst == nil {
		inst, err := newInstance()
		if err != nil {
			reg.mu.Unlock()
			return nil, err
		}
		reg.inst = inst
		if reg.descs == nil {
			reg.descs = map[uint64]*Desc{}
		}
		go inst.run()
	}
	reg.next++
	d := &Desc{inst: reg.inst, id: reg.next, rc: rc, fn: fn, tcp: tcp,
		events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLPRI}
	if mode == Edge {
		d.events |= syscall.EPOLLET & 0xFFFFFFFF
	} else {
		d.events |= syscall.EPOLLONESHOT
	}
	// In the table first: the event may come before EpollCtl returns.
	reg.descs[d.id] = d
	d.inst.n++
	if err := d.ctl(syscall.EPOLL_CTL_ADD); err != nil {
		d.closed.Store(true)
		delete(reg.descs, d.id)
		f := d.inst.releaseLocked()
		reg.mu.Unlock()
		if f != nil {
			_ = f.Close()
		}
		return nil, fmt.Errorf("netpoll: register: %w", err)
	}
	reg.mu.Unlock()
	return d, nil
}

func newInstance() (*instance, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netpoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	return &instance{f: f, rc: rc}, nil
}

// releaseLocked drops one registration; after the last it returns the
// instance's file, which the caller closes once reg.mu is released (Close
// waits for run's callback, which may be waiting for reg.mu); that ends
// the instance's goroutine.
func (inst *instance) releaseLocked() *os.File {
	inst.n--
	if inst.n > 0 {
		return nil
	}
	if reg.inst == inst {
		reg.inst = nil
	}
	return inst.f
}

// run dispatches readiness until the instance is closed. The runtime's
// poller watches the epoll descriptor edge-triggered, so each wake-up
// drains every ready event before waiting again; a registration re-armed
// meanwhile on a readable socket is a new event, and so a new wake-up.
func (inst *instance) run() {
	events := make([]syscall.EpollEvent, 128)
	var ready []readyDesc
	err := inst.rc.Read(func(epfd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(epfd), events, 0)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				inst.fail()
				return true
			}
			if n == 0 {
				return false
			}
			if inst.failed.Load() {
				return true
			}
			reg.mu.Lock()
			for _, ev := range events[:n] {
				id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				if d := reg.descs[id]; d != nil && d.inst == inst {
					ready = append(ready, readyDesc{d, d.reportOf(ev.Events)})
				}
			}
			reg.mu.Unlock()
			for i, r := range ready {
				r.d.fn(r.report)
				ready[i] = readyDesc{}
			}
			ready = ready[:0]
			if n < len(events) {
				return false
			}
		}
	})
	if err != nil && inst.alive() {
		inst.fail() // not closed by us: the runtime refused the descriptor
	}
}

func (inst *instance) alive() bool {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return inst.n > 0
}

// fail gives up on an instance that cannot wait any more (which should not
// happen): no new registration goes to it, and each of its connections is
// reported readable once, so that its reader runs and, failing to re-arm,
// reads with a goroutine instead.
func (inst *instance) fail() {
	if inst.failed.Swap(true) {
		return
	}
	reg.mu.Lock()
	if reg.inst == inst {
		reg.inst = nil
	}
	var all []*Desc
	for _, d := range reg.descs {
		if d.inst == inst {
			all = append(all, d)
		}
	}
	reg.mu.Unlock()
	for _, d := range all {
		d.closed.Store(true) // Arm fails from now on
		d.fn(Report{})       // not drained by a short read: nothing is known
	}
}

// FailForTests gives up on the current poller as if waiting on it had
// failed: each of its registrations is reported once more and then never,
// Arm fails, Closed is true, and the next Register makes a new poller.
// It lets callers' tests try their way back to reading with a goroutine.
func FailForTests() {
	reg.mu.Lock()
	inst := reg.inst
	reg.mu.Unlock()
	if inst != nil {
		inst.fail()
	}
}

// Closed reports whether the registration is closed: by Close, or because
// its poller failed (no report will come any more: read with a goroutine).
func (d *Desc) Closed() bool { return d.closed.Load() }

// ctl applies op to the registration, holding both descriptors open
// meanwhile, so that neither number can be reused under the call.
func (d *Desc) ctl(op int) error {
	var err error
	cerr := d.rc.Control(func(fd uintptr) {
		ierr := d.inst.rc.Control(func(epfd uintptr) {
			ev := syscall.EpollEvent{
				Events: d.events,
				Fd:     int32(uint32(d.id)),
				Pad:    int32(uint32(d.id >> 32)),
			}
			err = syscall.EpollCtl(int(epfd), op, int(fd), &ev)
		})
		if ierr != nil {
			err = ierr
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// Arm asks for one more call of fn when the connection is readable; if it
// is readable already, the call comes at once. (OneShot mode; in Edge mode
// it makes a call if the connection is readable now.) It fails once the
// registration or the connection is closed.
func (d *Desc) Arm() error {
	if d.closed.Load() {
		return ErrClosed
	}
	if err := d.ctl(syscall.EPOLL_CTL_MOD); err != nil {
		return fmt.Errorf("netpoll: arm: %w", err)
	}
	return nil
}

// Close ends the registration. fn may still be running, or about to be
// called once, for an event that was already on its way. Close before or
// after closing the connection; it never closes the connection.
func (d *Desc) Close() error {
	reg.mu.Lock()
	d.closed.Store(true)
	if reg.descs[d.id] != d {
		reg.mu.Unlock()
		return nil // closed before
	}
	delete(reg.descs, d.id)
	_ = d.ctl(syscall.EPOLL_CTL_DEL) // a closed socket has left the set by itself
	f := d.inst.releaseLocked()
	reg.mu.Unlock()
	if f != nil {
		_ = f.Close()
	}
	return nil
}
