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
	"time"
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
// them), no HTTP/2. A request on a reused connection that fails before
// any byte of its answer arrives is tried once more on a new connection
// when its body can be replayed, as net/http does for a connection the
// server closed while idle.
type leanTransport struct {
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle    int // idle connections kept per host
	bufferSize int
	// shed, when it says so, closes a connection that would be kept idle:
	// a dial is waiting at the open-file limit for one to close. (net/http
	// hands a freed connection to a request waiting on its dial; here the
	// waiting dial gets its file.)
	shed func() bool

	mu   sync.Mutex
	idle map[string][]*leanConn // by host:port, most recently used last
}

type leanConn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newLeanTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle, bufferSize int) *leanTransport {
	return &leanTransport{dial: dial, maxIdle: maxIdle, bufferSize: bufferSize, idle: map[string][]*leanConn{}}
}

// RoundTrip sends req and reads the head of its answer; the body is read
// from the connection as the caller reads it, and the connection is kept
// for the next request once the body has been read to its end.
func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		closeBody(req)
		return nil, fmt.Errorf("lean transport: scheme %q: only http", req.URL.Scheme)
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
		if attempt == 0 && reused && errors.As(err, &stale) && (req.Body == nil || req.GetBody != nil) {
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

// staleConnError is a failure before any byte of the answer was read.
type staleConnError struct{ err error }

func (e staleConnError) Error() string {
	return "connection closed before the answer: " + e.err.Error()
}
func (e staleConnError) Unwrap() error { return e.err }

// conn takes an idle connection to host, or dials one.
func (t *leanTransport) conn(ctx context.Context, host string) (*leanConn, bool, error) {
	t.mu.Lock()
	if l := t.idle[host]; len(l) > 0 {
		c := l[len(l)-1]
		t.idle[host] = l[:len(l)-1]
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	nc, err := t.dial(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	return &leanConn{nc: nc, br: bufio.NewReaderSize(nc, t.bufferSize), bw: bufio.NewWriterSize(nc, t.bufferSize)}, false, nil
}

// put keeps c for the next request to host, or closes it if enough are kept.
func (t *leanTransport) put(host string, c *leanConn) {
	if t.shed != nil && t.shed() {
		c.nc.Close()
		return
	}
	t.mu.Lock()
	if l := t.idle[host]; len(l) < t.maxIdle {
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
		return nil, staleConnError{err}
	}
	if _, err := c.br.Peek(1); err != nil {
		stop()
		return nil, staleConnError{err}
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
	if req.Body != nil {
		if req.ContentLength < 0 || (req.ContentLength == 0 && req.Body != http.NoBody) {
			return errors.New("lean transport: a body of unknown length")
		}
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
