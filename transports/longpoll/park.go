package longpoll

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometkit/cometkit/internal/httpx"
	"github.com/cometkit/cometkit/internal/wakeup"
	"github.com/cometkit/cometkit/transports/wire"
)

// parked is a poll whose connection has been taken off net/http: no
// goroutine waits for it, and nothing but the connection and the head of
// its answer is kept. The session's Wake and Kick start runner, which
// answers the poll if there is something to say.
type parked struct {
	p          *poller
	conn       net.Conn
	early      []byte  // bytes the client sent after the poll, already read by net/http
	srv        *served // the http.Server the poll came from, if known
	prev, next *parked // in srv.polls (under Transport.mu)
	callback   string
	head       []byte // the answer's header lines but Content-Type, Content-Length and Date
	runner     wakeup.Runner
	watched    watchHandle

	mu   sync.Mutex // serialises answering and hanging up
	done bool
	keep bool // hand the connection back to srv after the answer; else close it
}

// served is an http.Server that polls were parked from. Its Shutdown
// does not wait for hijacked connections, and tells of itself only to
// the functions given to RegisterOnShutdown: on that word its parked
// polls are answered at once.
type served struct {
	srv   *http.Server
	down  atomic.Bool // its Shutdown has begun
	polls *parked     // parked now, through prev and next (under Transport.mu)
}

// parkable reports whether r's connection may be parked: HTTP/1.1 (for
// HTTP/2 there is no connection of its own to take) with no body left to
// read before the next request.
func parkable(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor >= 1 && (r.Body == nil || r.Body == http.NoBody)
}

// park hijacks the poll's connection and hands the poll to the session's
// wake-ups. It returns false, having written nothing, if the connection
// cannot be hijacked; the request's goroutine then goes on holding the poll.
func (lp *Transport) park(w http.ResponseWriter, r *http.Request, p *poller, callback string) bool {
	// The answer's headers: those set so far (CORS, Vary, whatever
	// middleware added), and the no-cache ones every answer carries.
	h := w.Header()
	httpx.NoCache(h)
	// Counted before the hijack: from the moment net/http lets go of the
	// connection (http.Server.Shutdown stops waiting for it), WaitParked
	// waits for it instead.
	lp.parkChange(func(st *ParkStats) { st.Parked++ })
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		lp.parkChange(func(st *ParkStats) { st.Parked-- })
		return false
	}
	pk := &parked{p: p, conn: conn, callback: strings.Clone(callback), head: lp.internHead(appendHeaderLines(nil, h))}
	if n := brw.Reader.Buffered(); n > 0 {
		// A client that pipelines; rare, but its request must not be lost.
		pk.early, _ = brw.Reader.Peek(n)
		pk.early = bytes.Clone(pk.early)
	}
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	pk.keep = srv != nil && !r.Close && !lp.opts.CloseParked
	pk.runner.F = pk.pump
	pk.mu.Lock()
	lp.enlist(pk, srv)
	p.pk = pk
	p.parked.Store(true)
	if note, _ := p.note.Load().(chan struct{}); note != nil {
		p.note.Store(chan struct{}(nil)) // no one waits on it any more
	}
	pk.watched = lp.watch.add(conn, pk.hangUp)
	pk.mu.Unlock()
	// Whatever the session said since the last look is answered now.
	pk.runner.Wake()
	return true
}

// enlist counts pk parked, and lists it with the other polls parked from
// srv (if known), which is told to answer them when it shuts down.
func (lp *Transport) enlist(pk *parked, srv *http.Server) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if srv != nil {
		sv := lp.servers[srv]
		if sv == nil {
			if lp.servers == nil {
				lp.servers = map[*http.Server]*served{}
			}
			sv = &served{srv: srv}
			lp.servers[srv] = sv
			srv.RegisterOnShutdown(func() { lp.shutDown(sv) })
		}
		pk.srv, pk.next = sv, sv.polls
		if sv.polls != nil {
			sv.polls.prev = pk
		}
		sv.polls = pk
	}
	lp.stats.Parks++
	lp.changedLocked()
}

// delist counts pk no longer parked.
func (lp *Transport) delist(pk *parked) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if sv := pk.srv; sv != nil {
		if pk.prev != nil {
			pk.prev.next = pk.next
		} else if sv.polls == pk {
			sv.polls = pk.next
		}
		if pk.next != nil {
			pk.next.prev = pk.prev
		}
		pk.prev, pk.next = nil, nil
	}
	lp.stats.Parked--
	lp.changedLocked()
}

// shutDown answers the polls parked from sv, whose Shutdown has begun
// (it will not wait for them), and those parked from it from now on.
func (lp *Transport) shutDown(sv *served) {
	sv.down.Store(true)
	lp.mu.Lock()
	var polls []*parked
	for pk := sv.polls; pk != nil; pk = pk.next {
		polls = append(polls, pk)
	}
	lp.mu.Unlock()
	for _, pk := range polls {
		pk.runner.Wake()
	}
}

// internHead returns the head parked polls share when it equals head (as
// every same-origin poll's does), so that each keeps no copy of its own.
func (lp *Transport) internHead(head []byte) []byte {
	if last := lp.head.Load(); last != nil && bytes.Equal(*last, head) {
		return *last
	}
	head = slices.Clip(head)
	lp.head.Store(&head)
	return head
}

// appendHeaderLines appends h's header lines as net/http writes them (sorted,
// invalid names dropped, line breaks in values turned to spaces, values
// trimmed), but for those a parked answer writes itself.
func appendHeaderLines(dst []byte, h http.Header) []byte {
	var buf [16]string
	keys := buf[:0]
	for k := range h {
		switch k {
		case "Content-Type", "Content-Length", "Transfer-Encoding", "Date", "Connection", "Trailer":
			continue
		}
		if validHeaderName(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			start := len(dst)
			dst = append(dst, v...)
			for i := start; i < len(dst); i++ {
				if dst[i] == '\r' || dst[i] == '\n' {
					dst[i] = ' '
				}
			}
			// Trim what TrimString would: spaces, tabs (and the breaks, now spaces).
			end := len(dst)
			for end > start && (dst[end-1] == ' ' || dst[end-1] == '\t') {
				end--
			}
			lead := start
			for lead < end && (dst[lead] == ' ' || dst[lead] == '\t') {
				lead++
			}
			dst = append(dst[:start], dst[lead:end]...)
			dst = append(dst, "\r\n"...)
		}
	}
	return dst
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// pump answers the poll if there is something to say.
func (pk *parked) pump() {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.done {
		return
	}
	o, ready := pk.p.next(context.Background(), nil)
	if !ready {
		if pk.srv == nil || !pk.srv.down.Load() {
			return
		}
		// The http.Server is shutting down and will not wait for this
		// connection: the client is told to poll again, as at the
		// heartbeat, and the answer says Connection: close.
		pk.p.ep.Detach(pk.p)
		o = outcome{extra: []wire.Frame{{Kind: wire.KindHeartbeat}}}
	}
	if o.fail {
		body, _ := httpx.ErrorJSON(httpx.ErrorBody{Error: "internal", Message: pullFailed})
		pk.p.lp.opts.Logger.Info("longpoll: refused", "status", http.StatusInternalServerError,
			"error", "internal", "message", pullFailed, "session", pk.p.ep.ID())
		pk.respond(http.StatusInternalServerError, httpx.TypeJSON, body)
		return
	}
	if ready {
		pk.p.notePace(o)
	}
	body, contentType := appendAnswer(nil, pk.callback, o.msgs, o.extra)
	pk.respond(http.StatusOK, contentType, body)
}

// hangUp is called when the client closes a parked poll's connection: the
// poll is abandoned, and the session's disconnect timeout starts now.
func (pk *parked) hangUp() {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.done {
		return
	}
	pk.p.ep.Detach(pk.p)
	// Counted before finish uncounts the parked poll: whoever sees it
	// gone (WaitParked, ParkStats) sees the hang-up too.
	pk.p.lp.parkChange(func(st *ParkStats) { st.HangUps++ })
	pk.finish()
}

// respond writes a whole HTTP/1.1 response and ends the parked poll: its
// connection goes back to the http.Server for the client's next request,
// or is closed.
func (pk *parked) respond(status int, contentType string, body []byte) {
	buf := make([]byte, 0, 160+len(pk.head)+len(body))
	buf = append(buf, "HTTP/1.1 "...)
	buf = strconv.AppendInt(buf, int64(status), 10)
	buf = append(buf, ' ')
	buf = append(buf, http.StatusText(status)...)
	buf = append(buf, "\r\n"...)
	buf = append(buf, pk.head...)
	buf = append(buf, "Content-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(body)), 10)
	buf = append(buf, "\r\nContent-Type: "...)
	buf = append(buf, contentType...)
	buf = append(buf, "\r\nDate: "...)
	buf = time.Now().UTC().AppendFormat(buf, http.TimeFormat)
	lp := pk.p.lp
	pk.done = true
	// Before the connection is closed or handed back, while its
	// descriptor is still its own.
	lp.watch.remove(pk.watched)
	a := &answer{conn: pk.conn, buf: buf, body: body, timeout: lp.opts.WriteTimeout}
	var err error
	if pk.keep {
		err = a.handBack(pk.srv.srv, pk.early)
	} else {
		err = a.write(false)
		_ = pk.conn.Close()
	}
	if err != nil {
		// Nothing is lost: messages stay held until acknowledged, and the
		// next poll brings them again.
		lp.opts.Logger.Info("longpoll: writing a parked poll's answer failed; the next poll resumes",
			"session", pk.p.ep.ID(), "err", err)
	}
	lp.delist(pk)
}

// finish ends a parked poll that is not answered: it stops watching the
// connection and closes it.
func (pk *parked) finish() {
	pk.done = true
	lp := pk.p.lp
	lp.watch.remove(pk.watched)
	_ = pk.conn.Close()
	lp.delist(pk)
}

// answer is a parked poll's response, but for the end of its header.
type answer struct {
	conn    net.Conn
	buf     []byte // the status line and header lines, the last without its line break
	body    []byte
	timeout time.Duration
}

// write writes the answer; unless keep, it says Connection: close.
func (a *answer) write(keep bool) error {
	buf := a.buf
	if !keep {
		buf = append(buf, "\r\nConnection: close"...)
	}
	buf = append(buf, "\r\n\r\n"...)
	buf = append(buf, a.body...)
	_ = a.conn.SetWriteDeadline(time.Now().Add(a.timeout))
	_, err := a.conn.Write(buf)
	return err
}

// handBack writes the answer and gives the connection to srv, to serve the
// client's next requests on it as on any kept-alive connection. Both
// happen in http.Server.Serve, on a listener that yields the connection
// once: Serve asks for it only if srv is not shut down or closed (it
// returns ErrServerClosed first), and only then does the answer promise
// keep-alive. Otherwise the answer says Connection: close, as net/http's
// own answers do once Shutdown has begun, and the connection is closed.
//
// What no handler can see is http.Server.SetKeepAlivesEnabled(false):
// there is no getter, and it changes nothing in the request. Such a server
// gets the connection back all the same, serves the client's next request
// on it, and closes it after that answer (Options.CloseParked avoids it).
func (a *answer) handBack(srv *http.Server, early []byte) error {
	l := &oneConnListener{a: a, srv: srv, early: early}
	_ = srv.Serve(l) // returns once the connection is taken: the next Accept fails
	switch {
	case l.taken:
		return nil
	case !l.asked: // srv is shut down or closed
		err := a.write(false)
		_ = a.conn.Close()
		return err
	default:
		_ = a.conn.Close()
		return l.err
	}
}

// oneConnListener is a net.Listener that accepts one connection, once the
// answer is written on it, then fails: http.Server.Serve(l) starts serving
// the connection and returns.
type oneConnListener struct {
	a     *answer
	srv   *http.Server
	early []byte
	asked bool  // Accept was called
	taken bool  // and returned the connection
	err   error // writing the answer, or readying the connection, failed
}

// errHandedBack ends Serve's loop. (Not a net.Error: a temporary one would
// have Serve log it, sleep and ask again.)
var errHandedBack = errors.New("longpoll: connection handed back")

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.asked {
		return nil, errHandedBack
	}
	l.asked = true
	if l.err = l.a.write(true); l.err != nil {
		return nil, errHandedBack
	}
	conn, err := kept(l.srv, l.a.conn, l.early)
	if err != nil {
		l.err = err
		return nil, errHandedBack
	}
	l.taken = true
	return conn, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.a.conn.LocalAddr() }

// kept readies a connection whose last response is complete for srv: with
// no deadline but srv's, and the bytes net/http had read past the poll
// read again first.
func kept(srv *http.Server, conn net.Conn, early []byte) (net.Conn, error) {
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	// net/http takes a connection from Serve as new: it waits for the first
	// request only as long as ReadHeaderTimeout (or ReadTimeout) says, and
	// sets no deadline when both are zero. This connection is a kept-alive
	// one between requests: give it IdleTimeout, as net/http would have.
	if srv.ReadHeaderTimeout <= 0 && srv.ReadTimeout <= 0 && srv.IdleTimeout > 0 {
		if err := conn.SetReadDeadline(time.Now().Add(srv.IdleTimeout)); err != nil {
			return nil, err
		}
	}
	if len(early) > 0 {
		pc := &prefixConn{Conn: conn, early: early}
		if tc, ok := conn.(*tls.Conn); ok {
			return &tlsPrefixConn{prefixConn: pc, tc: tc}, nil
		}
		return pc, nil
	}
	return conn, nil
}

// prefixConn reads the bytes net/http had already read past the poll
// before the connection's own.
type prefixConn struct {
	net.Conn
	early []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// tlsPrefixConn keeps Request.TLS set on a TLS connection behind a prefixConn.
// NetConn is the connection underneath, so that the hang-up watcher finds
// its descriptor when it is parked again.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

type tlsPrefixConn struct {
	*prefixConn
	tc *tls.Conn
}

func (c *tlsPrefixConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
