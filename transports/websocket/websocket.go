// Package websocket carries sessions over WebSocket in every dialect a
// browser still speaks: RFC 6455 (and the hybi-07/08 drafts of Chrome 14–15
// and Firefox 6–10), and the hixie-76/75 drafts of Safari 5, iOS 4–5, old
// Android and TV WebKit (package hixie). The dialect is read from the
// request. Two endpoints:
//
//   - the session endpoint, where each WebSocket message is one session frame
//     (docs/PROTOCOL.md), so the session resumes across reconnects and
//     transports;
//   - the raw endpoint, where each WebSocket message is one application
//     message with no framing, for any standard client (a 2011 Safari's own
//     new WebSocket(url), a command-line tool). A raw connection is a session
//     of its own, with no resume.
//
// RFC 6455 is spoken with github.com/gobwas/ws's frame functions and a read
// loop of our own: it measured the least memory per idle connection among
// the maintained libraries, frames a broadcast once for every connection,
// and leaves close codes to us.
package websocket

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/internal/netpoll"
	"github.com/cometkit/cometkit/internal/pool"
	"github.com/cometkit/cometkit/internal/wakeup"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/websocket/hixie"
	"github.com/cometkit/cometkit/transports/wire"
)

// Name is the transport's name in negotiation and in Session.Transport.
const Name = "websocket"

// Options configure the transport; zero fields take defaults.
type Options struct {
	// HandshakeTimeout bounds the upgrade (and hixie-76's 8-byte key) (default 5 s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write: a peer that stops reading is cut off
	// and its session waits for it on another connection (default 10 s).
	WriteTimeout time.Duration
	// ReadTimeout is the longest a peer may send nothing at all (default
	// 60 s, over two heartbeat intervals; where idle connections are parked
	// in the poller, Linux, one is cut within an eighth more). RFC 6455 peers answer our pings,
	// so only a dead peer hits it; on the session endpoint a hixie peer must
	// send heartbeat frames. On the raw endpoint hixie peers have no
	// deadline, having no way to show life: a dead one is found by a write.
	ReadTimeout time.Duration
	// MaxMessageBytes bounds one message (default 64 KiB): RFC 6455 closes
	// with 1009, the drafts with their close handshake.
	MaxMessageBytes int
	// MaxBatchBytes bounds the message data written in one go (default 64 KiB).
	MaxBatchBytes int
	// DisableHixie76 refuses the hixie-76 draft (on by default: the browsers
	// that speak it have nothing better; see package hixie for its risks).
	DisableHixie76 bool
	// AllowHixie75 accepts the hixie-75 draft, which has no key check at all.
	AllowHixie75 bool
	// NoPoller gives every connection a reader goroutine of its own, and
	// every wake-up a writer goroutine of its own, as on systems without
	// the poller: more memory and CPU, nothing of internal/netpoll.
	NoPoller bool
	// Logger receives a line per refused upgrade or failed connection.
	Logger *slog.Logger
}

// Transport serves WebSocket connections of sessions.
type Transport struct {
	opts  Options
	pool  wakeup.Pool // runs the writers of RFC 6455 links
	watch watchdog    // the read timeout of parked links
	acks  ackBatch    // acknowledgements waiting for a frame to go with
}

// New returns a Transport with opts' zero fields defaulted.
func New(opts Options) *Transport {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 5 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 60 * time.Second
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 64 << 10
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 64 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Writers do not wait on peers in the pool (the rest of a write that
	// would goes to a goroutine of its own), so a few per core keep the
	// cores busy; more only help runs that wait on the session's log.
	t := &Transport{opts: opts, pool: wakeup.Pool{Max: max(4, 2*runtime.GOMAXPROCS(0))}}
	t.watch.sweep = t.sweepWatched
	t.acks.flush = t.flushAcks
	return t
}

// IsUpgrade reports whether r asks for a WebSocket in any dialect.
func IsUpgrade(r *http.Request) bool {
	return hixie.Detect(r) != hixie.None || strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// Origin returns the page origin a WebSocket request claims: Origin, or
// Sec-WebSocket-Origin for the hybi-07/08 drafts, which sent that instead.
func Origin(r *http.Request) string {
	if o := r.Header.Get("Origin"); o != "" {
		return o
	}
	return r.Header.Get("Sec-WebSocket-Origin")
}

// Upgrade answers the handshake in the request's dialect and returns the
// connection. On failure the client has had its answer (400 or 426 with a
// reason, or a closed connection) and the error says why. Origin checks are
// the caller's.
func (t *Transport) Upgrade(w http.ResponseWriter, r *http.Request, readTimeout time.Duration) (Conn, error) {
	return t.upgrade(w, r, readTimeout, false)
}

// upgrade is Upgrade; with hold, an RFC 6455 connection keeps its 101
// answer to send with its first frames, in one write (a system call per
// connect saved), so its first write must come at once.
func (t *Transport) upgrade(w http.ResponseWriter, r *http.Request, readTimeout time.Duration, hold bool) (Conn, error) {
	o := &t.opts
	switch d := hixie.Detect(r); {
	case d == hixie.Hixie76 && o.DisableHixie76, d == hixie.Hixie75 && !o.AllowHixie75:
		http.Error(w, "this WebSocket draft ("+d.String()+") is turned off; use RFC 6455", http.StatusBadRequest)
		return nil, fmt.Errorf("websocket: %s refused by configuration", d)
	case d != hixie.None:
		hc, err := hixie.Upgrade(w, r, hixie.Options{Allow75: o.AllowHixie75, HandshakeTimeout: o.HandshakeTimeout,
			MaxMessageBytes: o.MaxMessageBytes})
		if err != nil {
			return nil, fmt.Errorf("websocket: %s handshake: %w", d, err)
		}
		return &hixieConn{c: hc, readTimeout: readTimeout, writeTimeout: o.WriteTimeout}, nil
	}
	// The hybi-07/08 drafts differ from RFC 6455 in the handshake only by
	// their version number (and Sec-WebSocket-Origin, read by Origin).
	if v := r.Header.Get("Sec-WebSocket-Version"); v == "7" || v == "8" {
		r.Header.Set("Sec-WebSocket-Version", "13")
	}
	u := ws.HTTPUpgrader{Timeout: o.HandshakeTimeout}
	var held *heldAnswer
	if hold {
		if hj, ok := w.(http.Hijacker); ok {
			held = &heldAnswer{Hijacker: hj}
			w = struct {
				http.ResponseWriter
				http.Hijacker
			}{w, held}
		}
	}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			if held != nil && len(held.b) > 0 { // the refusal (400, 426)
				_ = nc.SetWriteDeadline(time.Now().Add(o.HandshakeTimeout))
				_, _ = nc.Write(held.b)
			}
			_ = nc.Close()
		}
		return nil, fmt.Errorf("websocket: RFC 6455 handshake: %w", err)
	}
	c := newRFCConn(nc, rw.Reader, o.MaxMessageBytes, readTimeout, o.WriteTimeout)
	if held != nil {
		held.Hijacker = nil // done with; the bytes wait in c
		c.head = held
	}
	return c, nil
}

// heldAnswer hijacks for gobwas's HTTPUpgrader, which writes its answer
// and flushes: the writer it is given keeps the bytes instead.
type heldAnswer struct {
	http.Hijacker
	b []byte
}

func (h *heldAnswer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := h.Hijacker.Hijack()
	if err == nil {
		// net/http does not use this writer after the hijack: it now
		// keeps what the upgrader writes, in its own buffer.
		rw.Writer.Reset(h)
	}
	return nc, rw, err
}

func (h *heldAnswer) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}

// ServeSession upgrades a session's WebSocket request (.../websocket?t=&ack=N)
// and carries the session over it, one frame per message, until the
// connection ends; the session then waits for its client on any transport.
func (t *Transport) ServeSession(w http.ResponseWriter, r *http.Request, ep session.Endpoint) {
	after, perr := parseAck(r.URL.Query().Get("ack"))
	readTimeout := t.opts.ReadTimeout
	conn, err := t.upgrade(w, r, readTimeout, true) // the first pump writes at least a heartbeat
	if err != nil {
		t.opts.Logger.Info("websocket: upgrade failed", "session", ep.ID(), "err", err, "remote", r.RemoteAddr)
		return
	}
	if perr == nil {
		after, perr = ep.Resume(after)
	}
	var ce *session.CloseError
	if perr != nil && !errors.As(perr, &ce) {
		reason := "cannot resume: " + perr.Error()
		_ = ep.Close(session.CodeResumeFailed, reason)
		ce = &session.CloseError{Code: session.CodeResumeFailed, Reason: reason}
	}
	if ce != nil {
		closeWithFrame(conn, ce)
		return
	}
	_ = ep.Ack(context.Background(), after)
	l := &link{t: t, ep: ep, conn: conn, cursor: after}
	l.start()
}

// ServeOpen upgrades a request to .../negotiate/websocket for s, a session
// made for it, and writes opening (the session's negotiate answer) as an o
// frame before anything else: a client learns its session and starts
// receiving in one exchange instead of a negotiate request and then an
// upgrade. A session whose client never had its opening is ended at once:
// nobody else holds its token.
func (t *Transport) ServeOpen(w http.ResponseWriter, r *http.Request, s *session.Session, opening string) {
	conn, err := t.upgrade(w, r, t.opts.ReadTimeout, true) // the first pump writes the o frame
	if err != nil {
		t.opts.Logger.Info("websocket: upgrade failed", "session", s.ID(), "err", err, "remote", r.RemoteAddr)
		s.Terminate(session.CodeProtocolError, "handshake failed")
		return
	}
	// The first pump writes the o frame, with what the application has
	// sent by then: one write for the opening and the welcome.
	l := &link{t: t, ep: s, conn: conn, opening: &opening}
	l.start()
}

// ServeRaw upgrades a request to the raw endpoint and carries s over it:
// each message is application text with no framing. The connection is the
// session: when it ends, so does s (no resume without sequence numbers).
func (t *Transport) ServeRaw(w http.ResponseWriter, r *http.Request, s *session.Session) {
	readTimeout := t.opts.ReadTimeout
	if hixie.Detect(r) != hixie.None {
		readTimeout = 0 // the drafts have no ping: a peer may be silent for ever
	}
	conn, err := t.Upgrade(w, r, readTimeout)
	if err != nil {
		t.opts.Logger.Info("websocket: raw upgrade failed", "err", err, "remote", r.RemoteAddr)
		s.Terminate(session.CodeProtocolError, "handshake failed")
		return
	}
	l := &link{t: t, ep: s, conn: conn, raw: true}
	l.start()
}

// Refuse answers a WebSocket request for a session that is gone: it
// upgrades, sends the close frame, and closes with its code, because a
// browser cannot read anything from a refused handshake.
func (t *Transport) Refuse(w http.ResponseWriter, r *http.Request, code session.Code, reason string) {
	conn, err := t.upgrade(w, r, t.opts.ReadTimeout, true) // the close frame follows at once
	if err != nil {
		t.opts.Logger.Info("websocket: upgrade failed", "err", err, "remote", r.RemoteAddr)
		return
	}
	closeWithFrame(conn, &session.CloseError{Code: code, Reason: reason})
}

func closeWithFrame(conn Conn, ce *session.CloseError) {
	f := wire.AppendFrame(nil, wire.Frame{Kind: wire.KindClose, Code: int(ce.Code), Data: ce.Reason})
	_ = conn.Write(conn.AppendText(nil, string(f)))
	_ = conn.Close(ce.Code, ce.Reason)
}

func parseAck(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := wire.ParseFrame("a" + s)
	if err != nil {
		return 0, fmt.Errorf("ack %q is not a sequence number", s)
	}
	return f.Seq, nil
}

// link is one WebSocket connection carrying a session.
//
// Writes happen in pump, run only while there is something to write: for
// RFC 6455 on a socket (the common case) by the Transport's few pool
// goroutines, writing what the socket takes without waiting and handing
// the rest, if any, to a goroutine of its own; otherwise (hixie) by a
// goroutine per wake-up.
//
// Reads: between messages the connection is parked in the poller
// (internal/netpoll) with no goroutine and no read buffer. For RFC 6455
// the poller's goroutine itself reads what arrived, without waiting, and
// takes acknowledgements and heartbeats (fastRead); anything else (a
// message, a control frame to answer, a partial frame, an error) goes to
// readRun, a goroutine that lives until the peer has nothing more to say.
// hixie connections are re-armed one report at a time and read by
// readRun. The poller's goroutine reads one connection at most fastReads
// times a turn; a parked link's read timeout is the watchdog's, and
// readRun's wait for the rest of a frame has a deadline of its own. Where
// there is no poller (not Linux; TLS, whose records hide bytes from the
// socket's readiness; a poller that failed), readLoop reads in a
// goroutine of its own.
type link struct {
	t    *Transport
	ep   session.Endpoint
	conn Conn
	rfc  *rfcConn // conn, when it is RFC 6455 on a socket: the fast paths
	// opening is the negotiate answer the first pump writes as an o frame
	// (.../negotiate/websocket), then nil.
	opening *string

	runner  wakeup.Runner
	kick    atomic.Pointer[session.CloseError]
	ackDue  atomic.Uint64 // highest inbound sequence number accepted, to acknowledge
	ackSent atomic.Uint64 // highest acknowledged to the peer (written under mu)
	ackIn   atomic.Uint64 // highest acknowledgement fastRead took, for pump to apply

	// The parked reader (nil desc: readLoop instead).
	desc      *netpoll.Desc
	waitSince atomic.Int64 // Unix ns since when the parked link waits for its peer (set as it parks)
	wprev     *link        // in Transport.watch's list (under its lock)
	wnext     *link
	rstate    atomic.Int32  // rParked, rRunning, rPending, rFast or rEnded
	closed    atomic.Bool   // ended; for the reader and the watchdog
	ackState  atomic.Uint32 // ackWaiting, ackDueNow

	mu         sync.Mutex // (fields in an order that packs them into 208 bytes)
	raw        bool       // the raw endpoint: ep is a *session.Session
	watched    bool       // in Transport.watch's list
	opened     bool
	ended      bool
	busy       bool   // a goroutine finishes a write (or the end): pump waits for its wake-up
	cursor     uint64 // last message sequence number written
	ackApplied uint64 // highest of ackIn given to the session
	inSeq      uint64 // raw endpoint: our numbering of the peer's messages
	pinged     int64  // Unix ns of the last ping sent
}

func (l *link) Name() string { return Name }

// Wake implements session.Transport.
func (l *link) Wake() { l.runner.Wake() }

// Kick implements session.Transport.
func (l *link) Kick(code session.Code, reason string) {
	l.kick.CompareAndSwap(nil, &session.CloseError{Code: code, Reason: reason})
	l.runner.Wake()
}

func (l *link) start() {
	l.runner.F = l.pump
	if c, ok := l.conn.(*rfcConn); ok && netpoll.Supported && !l.t.opts.NoPoller && c.initRaw() {
		l.rfc = c
		l.runner.Pool = &l.t.pool
	}
	l.pinged = time.Now().UnixNano() // the first ping is due a third of the read timeout from now
	if err := l.ep.Attach(l); err != nil {
		var ce *session.CloseError
		if !errors.As(err, &ce) {
			ce = &session.CloseError{Code: session.CodeInternalError, Reason: "attach failed"}
		}
		if l.raw {
			_ = l.conn.Close(ce.Code, ce.Reason) // a raw peer takes no session frames
			return
		}
		closeWithFrame(l.conn, ce)
		return
	}
	l.runner.Wake()
	l.startReading()
}

// Reader states of a parked link.
const (
	rParked  = iota // waiting for the poller's report; no goroutine
	rRunning        // readRun (or readLoop, or startReading) has the connection
	rPending        // readRun has it, and bytes arrived meanwhile (RFC 6455)
	rFast           // the poller's goroutine reads it (fastRead)
	rEnded          // the link ended while parked
)

// startReading parks the connection in the poller if it can, or starts
// readLoop.
func (l *link) startReading() {
	pc, ok := l.conn.(parkable)
	var rc syscall.RawConn
	switch {
	case !ok || !netpoll.Supported || l.t.opts.NoPoller:
	case l.rfc != nil:
		rc = l.rfc.rc
	default:
		// Exactly these: a wrapper might buffer reads out of the poller's sight.
		var sc syscall.Conn
		switch nc := pc.netConn().(type) {
		case *net.TCPConn:
			sc = nc
		case *net.UnixConn:
			sc = nc
		}
		if sc != nil {
			rc, _ = sc.SyscallConn()
		}
	}
	if rc == nil {
		go l.readLoop()
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.rstate.Store(rRunning) // until parked below: a report before then is noted, not acted on
	mode := netpoll.OneShot
	if l.rfc != nil {
		mode = netpoll.Edge
	}
	desc, err := netpoll.Register(rc, mode, l.readable)
	if err != nil {
		l.t.opts.Logger.Debug("websocket: no poller; reading with a goroutine", "err", err)
		go l.readLoop()
		return
	}
	l.desc = desc
	pc.setParked(true)
	if pc.timeout() > 0 {
		l.t.watch.add(l, l.t.opts.ReadTimeout)
		l.watched = true
	}
	if pc.buffered() > 0 { // sent with the handshake: no report will tell
		go l.readRun()
		return
	}
	if l.rfc == nil {
		l.park(false)
	} else if l.settle() { // bytes that came before the registration
		go l.readRun()
	}
}

// readable is the poller's report (on its goroutine: it must not wait).
func (l *link) readable(r netpoll.Report) {
	for {
		switch l.rstate.Load() {
		case rParked:
			if l.rfc == nil {
				if l.rstate.CompareAndSwap(rParked, rRunning) {
					go l.readRun()
				}
				return
			}
			if l.rstate.CompareAndSwap(rParked, rFast) {
				l.fastRead(r)
				return
			}
		case rRunning:
			if l.rfc == nil || l.rstate.CompareAndSwap(rRunning, rPending) {
				return
			}
		default: // already noted, or being read, or over
			return
		}
	}
}

// fastBuffers hold what the poller's goroutine reads, for the time it reads.
var fastBuffers = sync.Pool{New: func() any { return new([4096]byte) }}

// fastReads bounds the reads (of a fastBuffers' buffer each) of one
// connection's turn on the poller's goroutine: a peer that sends as fast
// as it is read must not keep the goroutine from the others.
const fastReads = 16

// fastRead reads, on the poller's goroutine and without waiting, what the
// peer sent, and takes the frames that need nothing but a note:
// acknowledgements (pump gives them to the session) and heartbeats, and
// pongs. At the first frame it cannot take so (or a partial one, or an
// error) it hands what is left to readRun. It stops at EAGAIN, or at a
// short read when the report r says that empties the socket.
func (l *link) fastRead(r netpoll.Report) {
	c := l.rfc
	bp := fastBuffers.Get().(*[4096]byte)
	defer fastBuffers.Put(bp)
	acked := false
	for reads := 0; ; reads++ {
		if reads == fastReads {
			// The turn is over: re-armed, the connection is reported
			// again after the others that are ready.
			if acked {
				l.runner.Wake()
			}
			l.waitSince.Store(time.Now().UnixNano())
			l.rstate.Store(rParked)
			if err := l.desc.Arm(); err != nil && l.rstate.CompareAndSwap(rParked, rRunning) {
				go l.readAlone() // the poller will not have it
			}
			return
		}
		n, err := c.readNB(bp[:])
		if err == errWouldBlock {
			break
		}
		var rest []byte
		if err != nil {
			c.readErr = err // readRun meets it, and ends the link
		} else {
			rest = l.fastFrames(bp[:n], &acked)
		}
		if err != nil || len(rest) > 0 {
			c.pre = append(c.pre, rest...)
			if acked {
				l.runner.Wake()
			}
			l.rstate.Store(rRunning)
			go l.readRun()
			return
		}
		// A short read empties the socket when the report was for bytes
		// alone: what comes later is reported again. Otherwise a FIN (or
		// RST) that came with the last bytes shows only on the next read,
		// and nothing more would be reported: read until EAGAIN.
		if n < len(bp) && r.Drained() {
			break
		}
	}
	if acked {
		l.runner.Wake()
	}
	l.waitSince.Store(time.Now().UnixNano())
	l.rstate.Store(rParked)
	l.leftByPoller()
}

// leftByPoller, after an RFC 6455 link parks, finds out whether its poller
// failed (the registration is closed, and no report will come any more):
// the link then reads with a goroutine of its own. (A failing poller
// closes the registration before its last report: a link parked before
// that report is read by it, and parks here again.)
func (l *link) leftByPoller() {
	if l.desc.Closed() && !l.closed.Load() && l.rstate.CompareAndSwap(rParked, rRunning) {
		go l.readAlone()
	}
}

// readAlone reads the link with a goroutine of its own from now on, as
// where there is no poller: the connection sets its own read deadlines
// again, and the watchdog lets it go.
func (l *link) readAlone() {
	l.conn.(parkable).setParked(false)
	l.mu.Lock()
	if l.watched {
		l.watched = false
		l.t.watch.remove(l)
	}
	l.mu.Unlock()
	l.readLoop()
}

// fastFrames takes the complete, unfragmented, small frames at the head of
// p that fastRead may take, and returns the rest from the first it may not.
// A text frame over the connection's message limit is handed on too, for
// readRun to close with 1009 as it would have.
func (l *link) fastFrames(p []byte, acked *bool) []byte {
	textLimit := 125
	if l.rfc != nil {
		textLimit = min(textLimit, int(l.rfc.maxMsg))
	}
	for len(p) >= 6 {
		b0, b1 := p[0], p[1]
		op, n := ws.OpCode(b0&0x0F), int(b1&0x7F)
		if b0&0xF0 != 0x80 || b1&0x80 == 0 || n > 125 || len(p) < 6+n ||
			(op != ws.OpText && op != ws.OpPong) || (op == ws.OpText && (l.raw || n > textLimit)) {
			return p // not final, reserved bits, unmasked, long, partial, over the limit, or not ours to take here
		}
		if op == ws.OpText {
			var msg [125]byte
			copy(msg[:n], p[6:6+n])
			ws.Cipher(msg[:n], [4]byte(p[2:6]), 0)
			seq, ok := parseAckOrHeartbeat(msg[:n])
			if !ok {
				if !l.receiveNow(msg[:n]) {
					return p
				}
				p = p[6+n:]
				continue
			}
			if seq > 0 {
				for {
					old := l.ackIn.Load()
					if seq <= old || l.ackIn.CompareAndSwap(old, seq) {
						break
					}
				}
				*acked = true
			}
		}
		p = p[6+n:]
	}
	return p
}

// nowReceiver is a session that takes a message without waiting
// (*session.Session).
type nowReceiver interface {
	ReceiveNow(m session.Message) (acked uint64, taken bool, err error)
}

// receiveNow gives the session a client's message (an m frame) on the
// poller's goroutine, sparing it a reader goroutine, two read deadlines
// and a read: false, with nothing taken, for any other frame, or when the
// session would make the message wait, or refuses it (readRun then takes
// it with Receive, and acts on the refusal).
func (l *link) receiveNow(b []byte) bool {
	rn, ok := l.ep.(nowReceiver)
	if !ok || len(b) == 0 || b[0] != byte(wire.KindMessage) || !utf8.Valid(b) {
		return false // invalid UTF-8: readRun closes with 1007
	}
	f, err := wire.ParseFrame(string(b))
	if err != nil || f.Kind != wire.KindMessage {
		return false
	}
	acked, taken, err := rn.ReceiveNow(session.Message{Seq: f.Seq, Data: f.Data})
	if !taken || err != nil {
		return false
	}
	l.acknowledge(acked)
	return true
}

// ackDelay is how long the acknowledgement of a client's messages waits
// for a frame to go with. An application that answers a message (most
// answer within microseconds) carries it in the answer's write: one write
// and one frame for the peer to read, where the acknowledgement alone
// went first, in a write and a wake-up of its own (TCP's delayed ACK, one
// layer up). A client keeps what is not yet acknowledged a little longer,
// and resends it, de-duplicated, if the connection drops meanwhile.
const ackDelay = 10 * time.Millisecond

// acknowledge notes that the session accepted the client's messages up to
// acked: the next write carries an a frame, and if none comes within
// ackDelay, the batch's timer wakes the writer for it. (Only the link's
// reader calls it.)
func (l *link) acknowledge(acked uint64) {
	if acked <= l.ackDue.Load() {
		return
	}
	l.ackDue.Store(acked)
	if l.ackState.Or(ackWaiting)&ackWaiting == 0 {
		l.t.acks.add(l)
	}
}

// The link's acknowledgement state (ackState).
const (
	ackWaiting = 1 << iota // in Transport.acks: our acknowledgement waits for a frame to go with
	ackDueNow              // the batch was flushed: the next write sends it, alone if need be
)

// ackBatch holds the links whose acknowledgements wait: one timer for all
// of them, armed while any waits, spares each a timer of its own (as the
// watchdog does for read timeouts).
type ackBatch struct {
	mu    sync.Mutex
	links []*link
	spare []*link // the slice the last flush went through, for reuse
	timer *time.Timer
	flush func()
}

func (b *ackBatch) add(l *link) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.links = append(b.links, l)
	if len(b.links) > 1 {
		return // the timer is armed
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(ackDelay, b.flush)
	} else {
		b.timer.Reset(ackDelay)
	}
}

// flushAcks wakes the writers of the waiting links whose acknowledgement
// no write has carried yet.
func (t *Transport) flushAcks() {
	b := &t.acks
	b.mu.Lock()
	links := b.links
	b.links, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	for i, l := range links {
		links[i] = nil
		// Out of the batch, before the look (a later message puts it back),
		// and due now: a writer woken for something else meanwhile, which
		// saw it waiting, leaves it to the run this wakes. If a write has
		// carried it already, nothing is due now: a later acknowledgement
		// waits for a frame to go with, as any.
		l.ackState.Store(ackDueNow)
		if l.ackDue.Load() > l.ackSent.Load() {
			l.runner.Wake()
		} else {
			l.ackState.And(^uint32(ackDueNow))
		}
	}
	b.mu.Lock()
	if b.spare == nil && cap(links) <= 4096 {
		b.spare = links[:0]
	}
	b.mu.Unlock()
}

// parseAckOrHeartbeat reads "a<seq>" (seq as wire.ParseFrame takes it) or
// "h" (seq 0); anything else is not ok.
func parseAckOrHeartbeat(b []byte) (seq uint64, ok bool) {
	switch {
	case len(b) == 1 && b[0] == byte(wire.KindHeartbeat):
		return 0, true
	case len(b) < 2 || len(b) > 21 || b[0] != byte(wire.KindAck) || (len(b) > 2 && b[1] == '0'):
		return 0, false
	}
	for _, d := range b[1:] {
		if d < '0' || d > '9' {
			return 0, false
		}
		next := seq*10 + uint64(d-'0')
		if next/10 != seq {
			return 0, false // overflow
		}
		seq = next
	}
	return seq, true
}

// settle parks an RFC 6455 reader once the socket is empty: it reports
// false when parked, true when bytes were read (into pre; or an error into
// readErr) and the reader must go on.
func (l *link) settle() bool {
	c := l.rfc
	bp := fastBuffers.Get().(*[4096]byte)
	defer fastBuffers.Put(bp)
	for {
		n, err := c.readNB(bp[:])
		switch {
		case err == errWouldBlock:
			l.waitSince.Store(time.Now().UnixNano())
			if l.rstate.CompareAndSwap(rRunning, rParked) {
				l.leftByPoller()
				return false
			}
			l.rstate.Store(rRunning) // it was rPending: bytes came meanwhile; look again
			continue
		case err != nil:
			c.readErr = err
		default:
			c.pre = append(c.pre, bp[:n]...)
		}
		return true
	}
}

// park re-arms a hixie connection in the poller and lets the reader's
// goroutine go. If the poller will not have it (the connection just
// closed, or the poller failed), the reader goes on as readAlone: inline
// if inline, else in a goroutine.
func (l *link) park(inline bool) {
	if l.closed.Load() {
		return
	}
	l.waitSince.Store(time.Now().UnixNano())
	l.rstate.Store(rParked)
	if err := l.desc.Arm(); err != nil && l.rstate.CompareAndSwap(rParked, rRunning) {
		if inline {
			l.readAlone()
		} else {
			go l.readAlone()
		}
	}
}

// readRun takes the messages the peer has sent, then parks.
func (l *link) readRun() {
	pc := l.conn.(parkable)
	timeout := pc.timeout()
	for {
		if timeout > 0 {
			// A frame that came in part waits for the rest here: the
			// watchdog sweeps parked links only, so the wait has a
			// deadline of its own.
			_ = l.conn.SetReadDeadline(time.Now().Add(timeout))
		}
		msg, got, err := pc.next(true)
		if err != nil {
			pc.release()
			l.readFailed(err)
			return
		}
		if got {
			if code, reason := l.take(msg); code != 0 {
				pc.release()
				l.end(code, reason, true)
				return
			}
		}
		if pc.buffered() > 0 {
			continue
		}
		pc.release()
		if timeout > 0 {
			_ = l.conn.SetReadDeadline(time.Time{}) // parked, the watchdog's
		}
		if l.rfc == nil {
			l.park(true)
			return
		}
		if l.closed.Load() || !l.settle() {
			return
		}
	}
}

// expire fails the read of a parked link whose peer has been silent since
// since, as a deadline would have. A link that is being read (its peer
// spoke after all), or that was read and parked again since the sweep
// looked, is left alone: no deadline of the sweep's is left on it.
func (l *link) expire(since int64) {
	if l.closed.Load() || !l.rstate.CompareAndSwap(rParked, rRunning) {
		return
	}
	if l.waitSince.Load() != since { // read meanwhile: park it again
		if l.rfc == nil {
			l.park(false)
		} else if l.settle() {
			go l.readRun()
		}
		return
	}
	pc := l.conn.(parkable)
	go func() { l.readFailed(pc.timedOut()) }() // the link's lock may be held by a write: not on the sweep's goroutine
}

// watchdog is the read timeout of parked links: one timer, while there
// are any, sweeps them every eighth of the timeout, so that a peer silent
// for the timeout is cut within an eighth more. (A timer per link cost
// more memory than all the rest of its reading.)
type watchdog struct {
	mu    sync.Mutex
	links *link // through wprev, wnext
	timer *time.Timer
	armed bool
	every time.Duration
	sweep func()
}

func (w *watchdog) add(l *link, timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l.wprev, l.wnext = nil, w.links
	if w.links != nil {
		w.links.wprev = l
	}
	w.links = l
	if !w.armed {
		w.armed = true
		w.every = max(timeout/8, time.Millisecond)
		if w.timer == nil {
			w.timer = time.AfterFunc(w.every, w.sweep)
		} else {
			w.timer.Reset(w.every)
		}
	}
}

func (w *watchdog) remove(l *link) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l.wprev != nil {
		l.wprev.wnext = l.wnext
	} else if w.links == l {
		w.links = l.wnext
	}
	if l.wnext != nil {
		l.wnext.wprev = l.wprev
	}
	l.wprev, l.wnext = nil, nil
	if w.links == nil && w.armed {
		w.armed = false
		w.timer.Stop()
	}
}

// sweepWatched expires the links whose peers are silent past the read
// timeout (not those whose session is taking a message).
func (t *Transport) sweepWatched() {
	w := &t.watch
	limit := int64(t.opts.ReadTimeout)
	type expiry struct {
		l     *link
		since int64
	}
	var silent []expiry
	w.mu.Lock()
	now := time.Now().UnixNano()
	for l := w.links; l != nil; l = l.wnext {
		if since := l.waitSince.Load(); since != 0 && now-since >= limit {
			silent = append(silent, expiry{l, since})
		}
	}
	if w.links != nil {
		w.timer.Reset(w.every)
	} else {
		w.armed = false
	}
	w.mu.Unlock()
	for _, e := range silent {
		e.l.expire(e.since)
	}
}

// end closes the connection once; detach lets the session wait for its
// client elsewhere (not when it was kicked: the session already let go).
func (l *link) endLocked(code session.Code, reason string, detach bool) {
	if l.ended {
		return
	}
	l.ended = true
	l.closed.Store(true)
	l.rstate.CompareAndSwap(rParked, rEnded) // a late report starts no reader
	if l.watched {
		l.t.watch.remove(l)
	}
	if l.desc != nil {
		_ = l.desc.Close()
	}
	if a := l.ackIn.Load(); a > l.ackApplied && !l.raw {
		l.ackApplied = a
		_ = l.ep.Ack(context.Background(), a)
	}
	if detach {
		l.ep.Detach(l)
	}
	_ = l.conn.Close(code, reason)
	if l.raw {
		// A raw connection is its session: nothing can resume it. The
		// application sees why (a violation's code), or 1000.
		if session.CheckCloseCode(code) != nil || code == CodeAbnormal || code == 1005 {
			code, reason = session.CodeNormal, "connection closed"
		}
		l.ep.(*session.Session).Terminate(code, reason)
	}
}

func (l *link) end(code session.Code, reason string, detach bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endLocked(code, reason, detach)
}

func (l *link) pump() {
	if l.runner.Pool != nil && !l.mu.TryLock() {
		// A pool's goroutine must not wait: whoever has the link may be
		// waiting on the peer (a reader ending it, behind a write that
		// cannot finish). A goroutine of its own waits instead.
		go func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.pumpLocked()
		}()
		return
	}
	if l.runner.Pool == nil {
		l.mu.Lock()
	}
	defer l.mu.Unlock()
	l.pumpLocked()
}

func (l *link) pumpLocked() {
	if l.busy && !l.ended {
		// A write waits for a peer slow to read: what it acknowledged
		// meanwhile (fastRead took it) frees the session's queue now. One
		// the session refuses is pumpOnce's to act on, after the write.
		if a := l.ackIn.Load(); a > l.ackApplied && l.ep.Ack(context.Background(), a) == nil {
			l.ackApplied = a
		}
		return
	}
	for !l.ended && !l.busy && l.pumpOnce() {
	}
}

// message appends one outbound message as a WebSocket message. A
// broadcast's frame tail was encoded once for every session; only its
// sequence number is written here.
func (l *link) message(buf []byte, m session.Message) []byte {
	var tmp [256]byte
	return l.text(buf, wire.AppendMessage(tmp[:0], m))
}

// frame appends one session frame as a WebSocket message.
func (l *link) frame(buf []byte, f wire.Frame) []byte {
	var tmp [256]byte
	return l.text(buf, wire.AppendFrame(tmp[:0], f))
}

// text appends enc, one encoded session frame, as a WebSocket message.
// The dialects are called by their types, not through an interface: enc
// is most often on the caller's stack, and an interface call would move
// it to the heap (a 256-byte allocation per message).
func (l *link) text(buf, enc []byte) []byte {
	switch c := l.conn.(type) {
	case *rfcConn:
		return appendRFCText(buf, enc)
	case *hixieConn:
		return appendHixieText(buf, enc)
	default:
		return c.AppendText(buf, string(enc))
	}
}

var (
	// msgBuffers hold the messages of a pump's Pull.
	msgBuffers = pool.Slices[session.Message]{Cap: 16, Max: 1024, Clear: true}
	// writeBuffers hold a pump's batch while it is written.
	writeBuffers = pool.Slices[byte]{Cap: 2048, Max: 64 << 10}
)

// pumpOnce writes what is due; it reports whether it wrote messages.
func (l *link) pumpOnce() bool {
	bp := writeBuffers.Get()
	buf := *bp
	put := func() { writeBuffers.Put(bp, buf) }
	first := !l.opened
	l.opened = true
	if l.opening != nil {
		buf = l.frame(buf, wire.Frame{Kind: wire.KindOpen, Data: *l.opening})
		l.opening = nil
	}
	if a := l.ackIn.Load(); a > l.ackApplied {
		l.ackApplied = a
		if err := l.ep.Ack(context.Background(), a); err != nil {
			put()
			l.finish(nil, &session.CloseError{Code: session.CodeProtocolError, Reason: "acknowledgement ahead of messages sent"}, true, false)
			return false
		}
	}
	if k := l.kick.Load(); k != nil {
		l.finish(buf, k, false, true)
		return false
	}
	mp := msgBuffers.Get()
	b, err := l.ep.Pull(context.Background(), l, l.cursor, l.t.opts.MaxBatchBytes, *mp)
	defer func() { msgBuffers.Put(mp, b.Messages) }()
	if errors.Is(err, session.ErrDetached) {
		k := l.kick.Load()
		if k == nil {
			k = &session.CloseError{Code: session.CodeReplaced, Reason: "replaced by a newer connection"}
		}
		l.finish(buf, k, false, true)
		return false
	}
	if err != nil {
		put()
		l.t.opts.Logger.Error("websocket: pull failed", "session", l.ep.ID(), "err", err)
		l.finish(nil, &session.CloseError{Code: session.CodeInternalError, Reason: "internal error"}, true, false)
		return false
	}
	for _, m := range b.Messages {
		if l.raw {
			if !m.Notice() { // a raw peer has no frame for a topic notice
				buf = l.conn.AppendText(buf, m.Data)
			}
		} else {
			buf = l.message(buf, m)
		}
		l.cursor = m.Seq
	}
	// Ping at the heartbeat, and on a busy feed at least every third of the
	// read timeout: a peer that only listens must have pings to answer, or
	// its read deadline cuts it.
	ping := false
	if now := time.Now().UnixNano(); b.Heartbeat || time.Duration(now-l.pinged) >= l.t.opts.ReadTimeout/3 {
		l.pinged = now
		ping = true
	}
	if !l.raw {
		// An acknowledgement waiting in the batch goes with other frames
		// (a ping included) only: a wake-up for something else (the peer's
		// own acknowledgement, say) must not send it alone just ahead of
		// the application's answer. Once the batch is flushed it goes alone.
		st := l.ackState.Load()
		if st&ackDueNow != 0 {
			l.ackState.And(^uint32(ackDueNow))
		}
		if a := l.ackDue.Load(); a > l.ackSent.Load() && (len(buf) > 0 || ping || first || st&(ackWaiting|ackDueNow) != ackWaiting) {
			buf = l.frame(buf, wire.Frame{Kind: wire.KindAck, Seq: a})
			l.ackSent.Store(a)
		}
		if b.Heartbeat || (first && len(buf) == 0) {
			// First thing too: a proxy that opens the socket but passes
			// nothing is caught by the client's first-frame deadline.
			buf = l.frame(buf, wire.Frame{Kind: wire.KindHeartbeat})
		}
	}
	if l.raw && len(b.Messages) > 0 {
		// A raw peer never acknowledges, and nothing resumes a raw
		// connection (a failed write ends its session): what is handed to
		// the write is done with.
		_ = l.ep.Ack(context.Background(), l.cursor)
	}
	if b.Close != nil {
		l.finish(buf, b.Close, true, true)
		return false
	}
	if l.rfc == nil {
		if len(buf) > 0 {
			if err := l.conn.Write(buf); err != nil {
				put()
				l.writeFailed(err)
				return false
			}
		}
		put()
		if ping {
			_ = l.conn.Ping()
		}
		return len(b.Messages) > 0
	}
	if ping {
		buf = append(buf, pingFrame...)
	}
	if len(buf) == 0 {
		put()
		return false
	}
	n, held, err := l.rfc.tryWrite(buf)
	switch {
	case err != nil:
		put()
		l.writeFailed(err)
		return false
	case n < len(buf):
		// The socket is full (or another write has it): a goroutine of
		// its own waits for the rest, and wakes pump when done.
		l.busy = true
		go l.writeRest(bp, buf, n, held)
		return false
	}
	put()
	return len(b.Messages) > 0
}

func (l *link) writeFailed(err error) {
	l.t.opts.Logger.Info("websocket: write failed; the session waits for the client to come back",
		"session", l.ep.ID(), "err", err)
	l.endLocked(CodeAbnormal, "", true)
}

// writeRest finishes a write that tryWrite left.
func (l *link) writeRest(bp *[]byte, buf []byte, n int, held bool) {
	err := l.rfc.writeRest(buf[n:], held)
	writeBuffers.Put(bp, buf)
	l.mu.Lock()
	l.busy = false
	if err != nil {
		l.writeFailed(err)
	}
	l.mu.Unlock()
	l.runner.Wake()
}

// finish writes what is left, the end of the session or connection (a
// session frame: in buf if frame), and ends the link. For a pool's
// goroutine, which must not wait on the peer, a goroutine of its own does it.
func (l *link) finish(buf []byte, ce *session.CloseError, detach, frame bool) {
	if !l.raw && frame {
		kind := wire.KindEnd
		if ce.Code.SessionEnding() {
			kind = wire.KindClose
		}
		buf = l.frame(buf, wire.Frame{Kind: kind, Code: int(ce.Code), Data: ce.Reason})
	}
	if l.rfc == nil {
		if len(buf) > 0 {
			_ = l.conn.Write(buf)
		}
		l.endLocked(ce.Code, ce.Reason, detach)
		return
	}
	l.busy = true // buf is the goroutine's now (the pump does not pool it again)
	go func() {
		if len(buf) > 0 {
			_ = l.rfc.write(buf)
		}
		l.mu.Lock()
		l.endLocked(ce.Code, ce.Reason, detach)
		l.mu.Unlock()
	}()
}

// readLoop takes the peer's messages until the connection ends.
func (l *link) readLoop() {
	for {
		msg, err := l.conn.ReadMessage()
		if err != nil {
			l.readFailed(err)
			return
		}
		if code, reason := l.take(msg); code != 0 {
			l.end(code, reason, true)
			return
		}
	}
}

// readFailed ends the link for a read's error.
func (l *link) readFailed(err error) {
	var ce *CloseError
	if !errors.As(err, &ce) {
		ce = &CloseError{Code: CodeAbnormal, Err: err}
	}
	if l.raw && ce.ByPeer {
		code := ce.Code
		if session.CheckCloseCode(code) != nil || code == 1005 || code == CodeAbnormal {
			code = session.CodeNormal // no code of the peer's own
		}
		_ = l.ep.(*session.Session).ClientClose(code, ce.Reason)
	}
	l.end(ce.Code, ce.Reason, true)
}

// parkable is a Conn whose reader can stop between messages (link.readRun).
type parkable interface {
	// netConn is the connection whose readiness the poller watches.
	netConn() net.Conn
	// setParked leaves the read deadline to the link's watchdog (or,
	// false, to the connection's reads again).
	setParked(bool)
	// next reads a message; with dry, it may return none (got false)
	// after a control frame, when nothing else has been read.
	next(dry bool) (msg string, got bool, err error)
	// buffered counts the bytes read and not yet taken: while there are
	// any, the reader must not park (the socket will not say so).
	buffered() int
	// release gives back the read buffer between messages, if any.
	release()
	// timeout is the read timeout (0: none).
	timeout() time.Duration
	// timedOut closes the connection of a parked reader whose peer was
	// silent for the timeout, and returns the error its read would have.
	timedOut() error
}

var (
	_ parkable = (*rfcConn)(nil)
	_ parkable = (*hixieConn)(nil)
)

// inbound holds the one message take hands to the session (which copies
// what it keeps): a slice literal passed through the Endpoint interface
// would be an allocation per message received.
var inbound = sync.Pool{New: func() any { return new([1]session.Message) }}

// take hands one message to the session; a non-zero code ends the connection.
func (l *link) take(msg string) (session.Code, string) {
	ctx := context.Background()
	if l.raw {
		l.inSeq++
		// Refused only when the session is closing: the writer is delivering
		// what is queued and then the application's close; let it.
		_, _ = l.ep.(*session.Session).Receive(ctx, []session.Message{{Seq: l.inSeq, Data: msg}})
		return 0, ""
	}
	f, err := wire.ParseFrame(msg)
	if err != nil {
		return session.CodeProtocolError, "malformed frame"
	}
	switch f.Kind {
	case wire.KindMessage:
		one := inbound.Get().(*[1]session.Message)
		one[0] = session.Message{Seq: f.Seq, Data: f.Data}
		acked, err := l.ep.Receive(ctx, one[:])
		one[0] = session.Message{}
		inbound.Put(one)
		if err != nil {
			var ce *session.CloseError
			switch {
			case errors.Is(err, session.ErrSeqGap):
				return session.CodeProtocolError, "sequence gap"
			case errors.Is(err, session.ErrTooLarge):
				return session.CodeMessageTooBig, "message too large"
			case !errors.As(err, &ce):
				return session.CodeInternalError, "internal error"
			}
		}
		l.acknowledge(acked)
	case wire.KindAck:
		if err := l.ep.Ack(ctx, f.Seq); err != nil {
			return session.CodeProtocolError, "acknowledgement ahead of messages sent"
		}
	case wire.KindHeartbeat:
	case wire.KindClose:
		if err := l.ep.ClientClose(session.Code(f.Code), f.Data); err != nil {
			return session.CodeProtocolError, "bad close code"
		}
	default:
		return session.CodeProtocolError, "a client may not send frame kind " + string(rune(f.Kind))
	}
	return 0, ""
}
