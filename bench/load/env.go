// Package load is the benchmark's load generator: a small client for every
// implementation and transport under test (cometkit's WebSocket, event
// stream and long-poll; sockjs's WebSocket, xhr-polling and eventsource;
// socket.io's WebSocket and polling; centrifuge's WebSocket; a raw
// WebSocket), and the scenarios that drive them. A client is just enough
// of its protocol to open a session, keep it alive (acks, pongs, re-polls),
// send, and receive; it holds tens of thousands of connections cheaply: a
// goroutine and a 1 KiB read buffer per WebSocket, kept-alive connections
// read on the caller's goroutine for HTTP (transport.go).
package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cometkit/cometkit/bench/servers"
)

// Limits of this machine that the load generator respects.
const (
	// PerSourceAddr is how many connections are dialled from one loopback
	// source address before the next (127.0.0.2, …) is used. The
	// ephemeral port range (32768–60999) gives about 28,000 per address,
	// but connect's search for a free port slows down long before that
	// (past ~14,000 it scans the other half of the range), and ports in
	// TIME_WAIT from earlier connections count against it.
	PerSourceAddr = 5_000
	// fdReserve is kept free below the open-file limit for the process's
	// own files (pipes, the control connection, DNS-free but still).
	fdReserve   = 60
	dialTimeout = 10 * time.Second
)

// Env is where a scenario runs: the server's base URL and the client side's
// shared dialer and HTTP client.
type Env struct {
	Base string // http://127.0.0.1:PORT
	HTTP *http.Client
	// Control is a separate client for the control endpoints, so that a
	// control call never waits behind the load's connections.
	Control *http.Client
	// CPU, when set, reads the CPU seconds used so far by the server and
	// by this process: a scenario that times its own phase reports what
	// each side spent on it, which its latencies alone cannot tell apart.
	CPU    func() (server, client float64)
	dialer *Dialer
}

// NewEnv makes an Env for the server at base (http://host:port).
func NewEnv(base string, d *Dialer) *Env {
	// The load's own requests go through a transport that does its work on
	// the caller's goroutine (transport.go): net/http's made the client as
	// busy as the server under test.
	tr := newLeanTransport(d.DialContext, 512, 2048) // a held poll's connection is busy, not idle
	tr.shed = d.Starved
	ctl := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
	// A control call outlives the longest /_wait, and no more: a hung
	// server fails the measurement instead of stalling the run.
	control := &http.Client{Transport: ctl, Timeout: waitTimeout + 30*time.Second}
	// Near the file limit, idle keep-alive connections (a WebSocket
	// client's negotiate, say) are what gives way.
	var ic idleCloser = tr
	d.onLimit.Store(&ic)
	return &Env{Base: base, HTTP: &http.Client{Transport: tr}, Control: control, dialer: d}
}

// Close drops idle connections.
func (e *Env) Close() {
	e.HTTP.CloseIdleConnections()
	e.Control.CloseIdleConnections()
}

// WSBase is Base with the ws scheme.
func (e *Env) WSBase() string { return "ws" + e.Base[len("http"):] }

// Dial opens a TCP connection for a client, from the next source address.
func (e *Env) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return e.dialer.DialContext(ctx, "tcp", addr)
}

// idleCloser is a transport whose idle connections can be let go.
type idleCloser interface{ CloseIdleConnections() }

// Dialer dials loopback connections, spreading them over source addresses
// 127.0.0.1, 127.0.0.2, … (PerSourceAddr each, counted over the process's
// whole life), and refuses to go past the open-file limit: a refusal is a
// clear error where EMFILE would fail something else at random.
type Dialer struct {
	dials   atomic.Uint64
	open    atomic.Int64
	limit   int64
	onLimit atomic.Pointer[idleCloser] // its idle connections are closed at the limit
	waiting atomic.Int32               // dials waiting at the limit for a connection to close

	mu       sync.Mutex
	released chan struct{} // closed and replaced when a connection closes
}

// NewDialer makes a Dialer bounded by the process's open-file limit.
func NewDialer() *Dialer {
	var rl syscall.Rlimit
	limit := int64(1 << 20)
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		limit = int64(rl.Cur) - fdReserve
	}
	return &Dialer{limit: limit, released: make(chan struct{})}
}

// limitWait is how long a dial waits at the file limit for a connection
// to close (a send's, a negotiation's) before it gives up.
const limitWait = 5 * time.Second

// reserve takes a slot below the limit, closing idle keep-alive
// connections and then waiting for others to close when there is none.
func (d *Dialer) reserve(ctx context.Context) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for tried := false; ; tried = true {
		d.mu.Lock()
		ch := d.released
		d.mu.Unlock()
		if d.open.Add(1) <= d.limit {
			return nil
		}
		d.open.Add(-1)
		if !tried {
			if tr := d.onLimit.Load(); tr != nil {
				(*tr).CloseIdleConnections()
			}
			timer = time.NewTimer(limitWait)
			continue
		}
		d.waiting.Add(1)
		select {
		case <-ch:
		case <-timer.C:
			d.waiting.Add(-1)
			return ErrFileLimit
		case <-ctx.Done():
			d.waiting.Add(-1)
			return ctx.Err()
		}
		d.waiting.Add(-1)
	}
}

// Starved reports whether a dial is waiting for a connection to close: a
// connection that would be kept idle is better closed then.
func (d *Dialer) Starved() bool { return d.waiting.Load() > 0 }

func (d *Dialer) release() {
	d.open.Add(-1)
	d.mu.Lock()
	close(d.released)
	d.released = make(chan struct{})
	d.mu.Unlock()
}

// Open is how many connections dialled by d are open now.
func (d *Dialer) Open() int64 { return d.open.Load() }

// Limit is the most connections d will hold open at once.
func (d *Dialer) Limit() int64 { return d.limit }

// ErrFileLimit is returned instead of dialling past the open-file limit.
var ErrFileLimit = errors.New("load: open-file limit reached on the client side")

// DialContext dials addr (a loopback host:port) from the next source address.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := d.reserve(ctx); err != nil {
		return nil, err
	}
	n := d.dials.Add(1) - 1
	src := net.IPv4(127, 0, 0, byte(1+(n/PerSourceAddr)%250))
	nd := net.Dialer{
		Timeout:   dialTimeout,
		LocalAddr: &net.TCPAddr{IP: src},
		// Bind the address only, and let connect pick the port for the
		// 4-tuple: without this, bind reserves a port for every
		// destination and the range runs out twice as fast.
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		d.release()
		return nil, err
	}
	return &countedConn{Conn: c, d: d}, nil
}

// countedConn gives its slot back when closed (once).
type countedConn struct {
	net.Conn
	d      *Dialer
	closed atomic.Bool
}

// SyscallConn lets the load's HTTP transport look at an idle connection.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("load: not a socket")
	}
	return sc.SyscallConn()
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.d.release()
	}
	return c.Conn.Close()
}

// Stats asks the server for /_stats; gc=true collects and returns freed
// memory to the OS first, so RSS is what an idle process converges to.
func (e *Env) Stats(ctx context.Context, gc bool) (servers.Stats, error) {
	var st servers.Stats
	u := e.Base + "/_stats"
	if gc {
		u += "?gc=1"
	}
	err := e.control(ctx, http.MethodGet, u, &st)
	return st, err
}

// Wait returns once the server has n sessions open, or fails after timeout.
func (e *Env) Wait(ctx context.Context, n int, timeout time.Duration) (int, error) {
	var r servers.WaitReply
	q := url.Values{"sessions": {strconv.Itoa(n)}, "timeout": {timeout.String()}}
	err := e.control(ctx, http.MethodGet, e.Base+"/_wait?"+q.Encode(), &r)
	return r.Sessions, err
}

// Broadcast asks the server to send count messages of size bytes to every session.
func (e *Env) Broadcast(ctx context.Context, size, count int) (servers.BroadcastReply, error) {
	var r servers.BroadcastReply
	q := url.Values{"size": {strconv.Itoa(size)}, "count": {strconv.Itoa(count)}}
	err := e.control(ctx, http.MethodPost, e.Base+"/_broadcast?"+q.Encode(), &r)
	return r, err
}

func (e *Env) control(ctx context.Context, method, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	resp, err := e.Control.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(body, into) // a timed-out /_wait still says how many
		return fmt.Errorf("%s %s: HTTP %d: %s", method, u, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	return nil
}
