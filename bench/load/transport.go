package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// leanTransport is the load generator's http.RoundTripper: HTTP/1.1 on
// kept-alive connections, each request written and its answer read on the
// caller's goroutine. net/http's Transport runs a reader and a writer
// goroutine per connection and hands every request and answer between them
// over channels; on the load generator's one core that made the client as
// busy as the server it measured (both at ~90 % of their core in the
// long-poll round-trip scenario), so the figure said as much about the
// client as about the server. Every peer's client goes through this one.
//
// It does what the bench's clients need and no more: http:// only, no
// proxies, no compression, no redirects of its own (http.Client follows
// them), no HTTP/2, bodies of known length only. A connection kept idle
// for probeAfter or longer is looked at before it is used again (a peek
// that does not wait): one the server closed meanwhile is dropped. A
// request on a reused connection is tried once more on a new one when
// writing it failed, or, for a GET or HEAD, when the connection closed
// before any byte of the answer; a POST that was written is not sent
// twice, as net/http does not: the server may have taken it.
type leanTransport struct {
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle    int // idle connections kept per host
	bufferSize int
	probeAfter time.Duration // idle this long, a connection is looked at before use
	// shed, when it says so, closes a connection that no request of ours
	// waits for and that would be kept idle: a dial elsewhere (a WebSocket
	// client's) is waiting at the open-file limit for a file.
	shed func() bool

	mu      sync.Mutex
	idle    map[string][]*leanConn      // by host:port, most recently used last
	waiters map[string][]chan *leanConn // requests dialling host, first come first
}

type leanConn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

func newLeanTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle, bufferSize int) *leanTransport {
	return &leanTransport{dial: dial, maxIdle: maxIdle, bufferSize: bufferSize, probeAfter: time.Second,
		idle: map[string][]*leanConn{}, waiters: map[string][]chan *leanConn{}}
}

// RoundTrip sends req and reads the head of its answer; the body is read
// from the connection as the caller reads it, and the connection is kept
// for the next request once the body has been read to its end.
func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		closeBody(req)
		return nil, fmt.Errorf("lean transport: scheme %q: only http", req.URL.Scheme)
	}
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength <= 0 {
		closeBody(req)
		return nil, errors.New("lean transport: a body of unknown length")
	}
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.conn(req.Context(), host)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.exchange(c, host, req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, ctxErr)
		}
		var stale staleConnError
		idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead
		if attempt == 0 && reused && errors.As(err, &stale) && (!stale.written || idempotent) &&
			(req.Body == nil || req.GetBody != nil) {
			if req.GetBody != nil {
				body, gerr := req.GetBody()
				if gerr != nil {
					return nil, fmt.Errorf("%s %s: replaying the body: %w", req.Method, req.URL, gerr)
				}
				req = req.Clone(req.Context())
				req.Body = body
			}
			continue // the server closed it while it was idle: once more on a new one
		}
		closeBody(req)
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// staleConnError is a failure before any byte of the answer was read;
// written says whether the whole request had been sent.
type staleConnError struct {
	err     error
	written bool
}

func (e staleConnError) Error() string {
	return "connection closed before the answer: " + e.err.Error()
}
func (e staleConnError) Unwrap() error { return e.err }

// conn takes an idle connection to host, or dials one; while the dial is
// under way (it may wait at the open-file limit), a connection another
// request frees is handed to this one instead, as net/http does, and the
// dialled one, when it comes, is kept for later.
func (t *leanTransport) conn(ctx context.Context, host string) (*leanConn, bool, error) {
	for {
		t.mu.Lock()
		l := t.idle[host]
		if len(l) == 0 {
			break // still locked: register as a waiter below
		}
		c := l[len(l)-1]
		t.idle[host] = l[:len(l)-1]
		t.mu.Unlock()
		if time.Since(c.idleSince) >= t.probeAfter && closedWhileIdle(c.nc) {
			c.nc.Close()
			continue
		}
		return c, true, nil
	}
	handed := make(chan *leanConn, 1) // put sends at most one: it drops the waiter as it does
	t.waiters[host] = append(t.waiters[host], handed)
	t.mu.Unlock()
	dialed := make(chan *leanConn, 1)
	var dialErr error
	go func() {
		nc, err := t.dial(ctx, "tcp", host)
		if err != nil {
			dialErr = err
			close(dialed)
			return
		}
		dialed <- &leanConn{nc: nc, br: bufio.NewReaderSize(nc, t.bufferSize), bw: bufio.NewWriterSize(nc, t.bufferSize)}
	}()
	select {
	case c := <-handed: // put took this waiter off the list as it sent
		go func() {
			if d, ok := <-dialed; ok {
				t.put(host, d)
			}
		}()
		return c, true, nil
	case d, ok := <-dialed:
		t.dropWaiter(host, handed)
		select {
		case c := <-handed: // handed one as the dial ended
			if !ok {
				return c, true, nil
			}
			t.put(host, c)
		default:
		}
		if !ok {
			return nil, false, dialErr
		}
		return d, false, nil
	}
}

// dropWaiter takes w off host's waiters, if put has not already (by
// handing it a connection, which w then holds).
func (t *leanTransport) dropWaiter(host string, w chan *leanConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws := t.waiters[host]
	for i := range ws {
		if ws[i] == w {
			t.waiters[host] = append(ws[:i], ws[i+1:]...)
			return
		}
	}
}

// put hands c to a request waiting for a connection to host, or keeps it
// for the next, or closes it if enough are kept or a dial is starved of
// files.
func (t *leanTransport) put(host string, c *leanConn) {
	t.mu.Lock()
	if ws := t.waiters[host]; len(ws) > 0 {
		// Sent under the lock (buffered, and this waiter is sent nothing
		// else: it never blocks), so that a waiter whose dial ends now
		// finds it once dropWaiter has the lock.
		t.waiters[host] = ws[1:]
		ws[0] <- c
		t.mu.Unlock()
		return
	}
	if t.shed != nil && t.shed() {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	if l := t.idle[host]; len(l) < t.maxIdle {
		c.idleSince = time.Now()
		t.idle[host] = append(l, c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.nc.Close()
}

// CloseIdleConnections closes every kept connection (http.Client calls it).
func (t *leanTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*leanConn{}
	t.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.nc.Close()
		}
	}
}

// exchange writes req on c and reads its answer's head. The request's
// context, when it ends, cuts the connection's deadline short, which fails
// whatever read or write is under way (the connection is then dropped).
func (t *leanTransport) exchange(c *leanConn, host string, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(req.Context(), func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	if err := writeRequest(c.bw, host, req); err != nil {
		stop()
		return nil, staleConnError{err: err}
	}
	if _, err := c.br.Peek(1); err != nil {
		stop()
		return nil, staleConnError{err: err, written: true}
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		stop()
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	resp.Body = &leanBody{t: t, c: c, host: host, body: resp.Body, reuse: !resp.Close, stop: stop}
	return resp, nil
}

// writeRequest writes req's head and body (a body needs a known length:
// the bench's requests are strings).
func writeRequest(w *bufio.Writer, host string, req *http.Request) error {
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if err := req.Header.Write(w); err != nil {
		return err
	}
	if req.Body != nil { // of known length: RoundTrip checked
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(req.ContentLength, 10))
		w.WriteString("\r\n\r\n")
		_, err := io.CopyN(w, req.Body, req.ContentLength)
		req.Body.Close()
		if err != nil {
			return err
		}
	} else {
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// leanBody hands its connection back once read to the end and closed (or
// closes it, when the answer was not read through or said Connection:
// close).
type leanBody struct {
	t     *leanTransport
	c     *leanConn
	host  string
	body  io.ReadCloser
	reuse bool
	stop  func() bool
	eof   bool
	once  sync.Once
}

func (b *leanBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *leanBody) Close() error {
	b.once.Do(func() {
		if !b.eof { // unread: the client gave up on it (a stream it ends, say)
			b.reuse = false
		}
		notCut := b.stop() // false: the context ended and cut the deadline
		if b.reuse && notCut && b.c.br.Buffered() == 0 {
			b.t.put(b.host, b.c)
			return
		}
		b.c.nc.Close()
	})
	return nil
}

// closedWhileIdle reports whether the server closed nc (or wrote on it,
// which no answer-less idle connection should see) while it sat idle: a
// peek that does not wait finds an end of file or data. A connection that
// cannot be looked at is taken as alive.
func closedWhileIdle(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	dead := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		dead = n > 0 || (n == 0 && rerr == nil) || (rerr != nil && rerr != unix.EAGAIN)
		return true // looked once: never wait
	})
	return dead || err != nil
}
