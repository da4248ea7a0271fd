package longpoll

import (
	"crypto/tls"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// watcher learns that clients hang up parked connections, with one epoll
// set for all of them and one goroutine, which the Go runtime's poller
// parks until the set has an event (an epoll descriptor is itself
// pollable). Only hang-ups are asked for (EPOLLRDHUP, and the errors and
// hang-ups epoll always reports): a client that sends more is not a client
// that left. The set and its goroutine exist only while something is
// watched, and watcherLinger after, so an idle server keeps neither, and a
// busy one does not make a set (five system calls and a goroutine) each
// time the last parked poll is answered just before the next parks.
type watcher struct {
	mu     sync.Mutex
	file   *os.File // the epoll descriptor, nil while nothing is watched
	fd     int
	next   int32
	m      map[int32]watched
	linger *time.Timer // closes the set once it has been empty for watcherLinger
}

// watcherLinger is how long an empty set is kept for the next parked poll.
const watcherLinger = 100 * time.Millisecond

type watched struct {
	rc     syscall.RawConn
	hangUp func()
}

// watchHandle names one watched connection; the zero value none.
type watchHandle struct{ id int32 }

const watchEvents = syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add watches conn and calls hangUp, from the watcher's goroutine, when its
// client hangs up. A connection that cannot be watched (it has no
// descriptor of its own) is not: the client's leaving is then learnt when
// the answer is written.
func (w *watcher) add(conn net.Conn, hangUp func()) watchHandle {
	rc := rawConn(conn)
	if rc == nil {
		return watchHandle{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil && !w.startLocked() {
		return watchHandle{}
	}
	for {
		if w.next++; w.next <= 0 {
			w.next = 1
		}
		if _, used := w.m[w.next]; !used {
			break
		}
	}
	id := w.next
	ev := syscall.EpollEvent{Events: watchEvents, Fd: id}
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.EpollCtl(w.fd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); cerr != nil || err != nil {
		w.stopIfIdleLocked()
		return watchHandle{}
	}
	w.m[id] = watched{rc: rc, hangUp: hangUp}
	return watchHandle{id: id}
}

// remove stops watching; after it returns, hangUp is not called, unless it
// had already been taken from the set (the caller's own lock sorts that out).
func (w *watcher) remove(h watchHandle) {
	if h.id == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.m[h.id]
	if !ok {
		return
	}
	delete(w.m, h.id)
	// Before the connection is closed or handed back, while its
	// descriptor is still its own.
	_ = wd.rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(w.fd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	w.stopIfIdleLocked()
}

func (w *watcher) startLocked() bool {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return false
	}
	f := os.NewFile(uintptr(fd), "longpoll-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	w.file, w.fd, w.m = f, fd, map[int32]watched{}
	go w.run(rc)
	return true
}

// stopIfIdleLocked closes the set, and its goroutine ends, once nothing
// has been in it for watcherLinger.
func (w *watcher) stopIfIdleLocked() {
	if len(w.m) > 0 || w.file == nil {
		return
	}
	if w.linger == nil {
		w.linger = time.AfterFunc(watcherLinger, w.closeIfIdle)
		return
	}
	w.linger.Reset(watcherLinger)
}

func (w *watcher) closeIfIdle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) > 0 || w.file == nil {
		return // watching again, or closed already
	}
	_ = w.file.Close()
	w.file, w.fd, w.m = nil, -1, nil
}

// run waits for the set's events until the set is closed.
func (w *watcher) run(rc syscall.RawConn) {
	var events [64]syscall.EpollEvent
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, werr = syscall.EpollWait(int(fd), events[:], 0)
				if werr != syscall.EINTR {
					return n > 0 || werr != nil
				}
			}
		})
		if err != nil || n <= 0 {
			return // the set was closed (or failed, which it cannot)
		}
		for _, ev := range events[:n] {
			w.mu.Lock()
			wd, ok := w.m[ev.Fd]
			w.mu.Unlock()
			if ok {
				wd.hangUp()
			}
		}
	}
}

// rawConn is the connection's descriptor, under a TLS layer or a wrapper
// that says what it wraps (NetConn) if need be.
func rawConn(c net.Conn) syscall.RawConn {
	for {
		switch cc := c.(type) {
		case *tls.Conn:
			c = cc.NetConn()
			continue
		case syscall.Conn:
			rc, err := cc.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case interface{ NetConn() net.Conn }: // a wrapper: ours (replayed bytes), or a listener's
			c = cc.NetConn()
			continue
		}
		return nil
	}
}
