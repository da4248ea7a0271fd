// Package eventstream carries a session down one long HTTP response in the
// text/event-stream format (Server-Sent Events), which browsers read three
// ways: EventSource, XMLHttpRequest progress events, and IE8/9's
// XDomainRequest progress events. Each frame is one event whose data is the
// frame as a JSON string; a message's event id is its sequence number, so a
// browser's own reconnect sends Last-Event-ID and the session resumes from
// there. The client talks back with the long-poll transport's send.
//
// A stream costs no goroutine while idle: it writes only when the session
// wakes it, from a short-lived goroutine. On HTTP/1.x the connection is
// hijacked after the headers, so net/http's per-request buffers and
// goroutines are freed too; elsewhere (HTTP/2, or a ResponseWriter that
// cannot be hijacked) the stream writes through http.ResponseController and
// the request's goroutine waits for it to end.
package eventstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometkit/cometkit/internal/pool"
	"github.com/cometkit/cometkit/internal/wakeup"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

// Name is the transport's name in negotiation and in Session.Transport.
const Name = "eventstream"

// Options configure the transport; zero fields take defaults.
type Options struct {
	// CommentInterval is the longest the stream stays silent: after it, a
	// comment line is written so that proxies do not cut an idle response
	// (default 15 s, under the common 30–60 s idle cuts).
	CommentInterval time.Duration
	// Retry is sent as the stream's retry: field, the browser's wait before
	// its own reconnect (default 1 s).
	Retry time.Duration
	// MaxStreamBytes ends a stream after about this many bytes (default
	// 256 KiB): an XHR-streaming reader keeps the whole response in memory.
	// The client reconnects and resumes; nothing is lost at the seam.
	MaxStreamBytes int64
	// MaxStreamAge ends a stream after this long (default 5 min), checked
	// whenever it writes (at least every CommentInterval).
	MaxStreamAge time.Duration
	// PadBytes is the size of the prelude sent when the client asks with
	// pad=1 (default 2048): IE's XDomainRequest and XHR streaming and old
	// Android buffer the first 2 KB before they report progress.
	PadBytes int
	// WriteTimeout bounds each write: a client that stops reading is cut off
	// after it, and its session waits for it to come back (default 10 s).
	WriteTimeout time.Duration
	// MaxBatchBytes bounds the message data written in one go (default 64 KiB).
	MaxBatchBytes int
	// NoHijack keeps streams on the http.ResponseWriter even on HTTP/1.x,
	// at the price of a goroutine and net/http's buffers per stream.
	NoHijack bool
	// Clock times comments and stream age (default the wall clock).
	Clock session.Clock
	// Logger receives a line per refused request or failed stream.
	Logger *slog.Logger
}

// Transport serves the event streams of sessions.
type Transport struct {
	opts Options
}

// New returns a Transport with opts' zero fields defaulted.
func New(opts Options) *Transport {
	if opts.CommentInterval <= 0 {
		opts.CommentInterval = 15 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.MaxStreamBytes <= 0 {
		opts.MaxStreamBytes = 256 << 10
	}
	if opts.MaxStreamAge <= 0 {
		opts.MaxStreamAge = 5 * time.Minute
	}
	if opts.PadBytes <= 0 {
		opts.PadBytes = 2048
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 64 << 10
	}
	if opts.Clock == nil {
		opts.Clock = session.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Transport{opts: opts}
}

// ServeStream answers GET .../eventstream?t=TOKEN[&ack=N][&pad=1]. The
// stream resumes after the largest of ack, lastEventId (for readers that
// cannot set headers) and the Last-Event-ID header. A position that is not a
// number, or that the session cannot serve without loss, closes the session
// with CodeResumeFailed, told to the client as a close event: never silent loss.
func (es *Transport) ServeStream(w http.ResponseWriter, r *http.Request, ep session.Endpoint) {
	after, err := resumePosition(r)
	var ce *session.CloseError
	if err == nil {
		after, err = ep.Resume(after)
	}
	switch {
	case err == nil:
	case errors.As(err, &ce):
		es.writeOnce(w, closeEvent(wire.KindClose, ce))
		return
	default:
		reason := "cannot resume: " + err.Error()
		es.opts.Logger.Info("eventstream: resume refused", "session", ep.ID(), "err", err, "remote", r.RemoteAddr)
		_ = ep.Close(session.CodeResumeFailed, reason)
		es.writeOnce(w, closeEvent(wire.KindClose, &session.CloseError{Code: session.CodeResumeFailed, Reason: reason}))
		return
	}
	if err := ep.Ack(r.Context(), after); err != nil {
		// Resume vetted the position; an ack can fail only if the session
		// has just closed, which the first pull reports.
		es.opts.Logger.Debug("eventstream: ack", "session", ep.ID(), "err", err)
	}
	es.serve(w, r, ep, after, nil)
}

// ServeOpen answers GET .../negotiate/eventstream[?pad=1] for s, a session
// made for it: the stream's first event is opening (the session's
// negotiate answer) as an o frame, then the session's messages. A client
// learns its session and starts receiving in one request instead of two.
func (es *Transport) ServeOpen(w http.ResponseWriter, r *http.Request, s *session.Session, opening string) {
	es.serve(w, r, s, 0, &opening)
}

// serve attaches a stream starting after message number after to ep and
// writes it until it ends.
func (es *Transport) serve(w http.ResponseWriter, r *http.Request, ep session.Endpoint, after uint64, opening *string) {
	var ce *session.CloseError
	st := &stream{
		es:      es,
		ep:      ep,
		cursor:  after,
		pad:     r.URL.Query().Get("pad") == "1",
		opening: opening,
		started: es.opts.Clock.Now(),
		done:    make(chan struct{}),
	}
	st.runner.F = st.pump
	// Once attached, the session may wake the stream at any moment: hold
	// its lock until the sink exists and the head is written.
	st.mu.Lock()
	if err := ep.Attach(st); err != nil {
		st.mu.Unlock()
		if !errors.As(err, &ce) {
			ce = &session.CloseError{Code: session.CodeInternalError, Reason: "attach failed"}
		}
		es.writeOnce(w, closeEvent(wire.KindClose, ce))
		return
	}
	setHeaders(w.Header())
	if !es.opts.NoHijack && r.ProtoMajor == 1 {
		if conn, brw, err := http.NewResponseController(w).Hijack(); err == nil {
			st.sink = &connSink{conn: conn}
			err := writeHead(conn, brw, w.Header(), es.opts.WriteTimeout)
			if err != nil {
				st.endLocked(true)
			}
			st.mu.Unlock()
			if err == nil {
				st.schedule() // the prelude and the first events; the handler returns now
			}
			return
		}
	}
	w.WriteHeader(http.StatusOK)
	st.sink = &responseSink{w: w, rc: http.NewResponseController(w)}
	st.mu.Unlock()
	st.schedule()
	select {
	case <-st.done:
	case <-r.Context().Done():
		st.stop()
	}
}

// Refuse answers a stream request for a session that cannot be reached with
// a stream of one close event, status 200 so that every reader sees it.
func (es *Transport) Refuse(w http.ResponseWriter, _ *http.Request, code session.Code, reason string) {
	es.writeOnce(w, closeEvent(wire.KindClose, &session.CloseError{Code: code, Reason: reason}))
}

func (es *Transport) writeOnce(w http.ResponseWriter, event []byte) {
	h := w.Header()
	setHeaders(h)
	h.Set("Content-Length", strconv.Itoa(len(event)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(event)
}

func setHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	// no-store: a stream carries the session's messages, and on
	// .../negotiate/eventstream its token, at a URL the same for every user.
	h.Set("Cache-Control", "no-store, no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer
	h.Set("X-Content-Type-Options", "nosniff")
}

// writeHead writes the status line and headers of a hijacked response. The
// body is delimited by closing the connection.
func writeHead(conn net.Conn, brw *bufio.ReadWriter, h http.Header, timeout time.Duration) error {
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	bw := brw.Writer
	_, _ = bw.WriteString("HTTP/1.1 200 OK\r\n")
	h.Del("Content-Length")
	h.Set("Connection", "close")
	if err := h.Write(bw); err != nil {
		return fmt.Errorf("eventstream: writing head: %w", err)
	}
	_, _ = bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("eventstream: writing head: %w", err)
	}
	return nil
}

// resumePosition is the largest of ack=, lastEventId= and Last-Event-ID.
func resumePosition(r *http.Request) (uint64, error) {
	q := r.URL.Query()
	var pos uint64
	for name, v := range map[string]string{
		"ack":           q.Get("ack"),
		"lastEventId":   q.Get("lastEventId"),
		"Last-Event-ID": r.Header.Get("Last-Event-ID"),
	} {
		if v == "" {
			continue
		}
		f, err := wire.ParseFrame("a" + v)
		if err != nil {
			return 0, fmt.Errorf("%s %q is not a sequence number", name, truncate(v, 40))
		}
		pos = max(pos, f.Seq)
	}
	return pos, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sink is where a stream's bytes go.
type sink interface {
	write(p []byte, deadline time.Time) error
	close()
}

// connSink writes to a hijacked connection.
type connSink struct{ conn net.Conn }

func (c *connSink) write(p []byte, deadline time.Time) error {
	_ = c.conn.SetWriteDeadline(deadline)
	_, err := c.conn.Write(p)
	return err
}

func (c *connSink) close() { _ = c.conn.Close() }

// responseSink writes through the ResponseWriter, flushing every write even
// behind middleware wrappers (ResponseController unwraps them).
type responseSink struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s *responseSink) write(p []byte, deadline time.Time) error {
	if err := s.rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := s.w.Write(p); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *responseSink) close() {}

// stream is one event-stream response as the session sees it. All writing
// happens in pump, serialised by mu and run by a goroutine that exists only
// while there is something to write.
type stream struct {
	es   *Transport
	ep   session.Endpoint
	sink sink
	pad  bool
	// opening is the negotiate answer written first as an o frame
	// (.../negotiate/eventstream), then nil.
	opening *string

	runner wakeup.Runner // runs pump while there is something to write
	kick   atomic.Pointer[session.CloseError]

	mu        sync.Mutex
	cursor    uint64 // last message sequence number written
	written   int64
	started   time.Time
	lastWrite time.Time
	opened    bool // the prelude is out
	ended     bool
	timer     session.Timer
	done      chan struct{}
}

func (st *stream) Name() string { return Name }

// Wake implements session.Transport.
func (st *stream) Wake() { st.schedule() }

// Kick implements session.Transport.
func (st *stream) Kick(code session.Code, reason string) {
	st.kick.CompareAndSwap(nil, &session.CloseError{Code: code, Reason: reason})
	st.schedule()
}

func (st *stream) schedule() { st.runner.Wake() }

// stop ends the stream from outside (the request's context ended).
func (st *stream) stop() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.endLocked(true)
}

func (st *stream) endLocked(detach bool) {
	if st.ended {
		return
	}
	st.ended = true
	if st.timer != nil {
		st.timer.Stop()
	}
	if detach {
		st.ep.Detach(st)
	}
	if st.sink != nil {
		st.sink.close()
	}
	close(st.done)
}

// pump writes whatever is due until nothing is, or the stream has ended.
func (st *stream) pump() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for !st.ended && st.pumpOnce() {
	}
}

// pumpOnce writes one round of what is due: the prelude, messages,
// heartbeat, close, end or comment, and ends the stream when it must. It
// reports whether it wrote messages (there may be more).
func (st *stream) pumpOnce() bool {
	o := &st.es.opts
	// Every write is done with buf before pumpOnce returns (the sinks copy
	// or write through), so buffers are pooled, as is the Pull's slice.
	bp, mp := pumpBuffers.Get(), pullBuffers.Get()
	buf, msgs := *bp, *mp
	defer func() {
		pumpBuffers.Put(bp, buf)
		pullBuffers.Put(mp, msgs)
	}()
	first := !st.opened
	if first {
		st.opened = true
		if st.pad {
			buf = append(buf, ':')
			buf = append(buf, strings.Repeat(" ", o.PadBytes)...)
			buf = append(buf, '\n')
		}
		buf = append(buf, "retry: "...)
		buf = strconv.AppendInt(buf, o.Retry.Milliseconds(), 10)
		buf = append(buf, '\n')
		if st.opening != nil {
			buf = appendEvent(buf, wire.Frame{Kind: wire.KindOpen, Data: *st.opening})
			st.opening = nil
			first = false // the o frame shows the body flowing: no heartbeat needed
		}
	}
	if k := st.kick.Load(); k != nil {
		st.finish(append(buf, closeEvent(kickKind(k), k)...), false)
		return false
	}
	// Within the stream's byte budget (at least one message comes anyway).
	budget := min(int64(o.MaxBatchBytes), o.MaxStreamBytes-st.written-int64(len(buf)))
	b, err := st.ep.Pull(context.Background(), st, st.cursor, int(max(budget, 0)), msgs)
	if b.Messages != nil {
		msgs = b.Messages
	}
	if errors.Is(err, session.ErrDetached) {
		k := st.kick.Load()
		if k == nil {
			k = &session.CloseError{Code: session.CodeReplaced, Reason: "replaced by a newer connection"}
		}
		st.finish(append(buf, closeEvent(kickKind(k), k)...), false)
		return false
	}
	if err != nil {
		o.Logger.Error("eventstream: pull failed", "session", st.ep.ID(), "err", err)
		st.finish(buf, true)
		return false
	}
	full := false
	for i, m := range b.Messages {
		// Over the byte cap the rest waits for the next stream; but not when
		// this batch ends with the session's close, which Pull has counted
		// as delivered: the stream ends here anyway.
		if i > 0 && b.Close == nil && st.written+int64(len(buf)) >= o.MaxStreamBytes {
			full = true
			break
		}
		buf = appendMessageEvent(buf, m)
		st.cursor = m.Seq
	}
	if b.Close != nil && !full {
		st.finish(append(buf, closeEvent(wire.KindClose, b.Close)...), true)
		return false
	}
	if b.Heartbeat || (first && len(b.Messages) == 0) {
		// Also first thing on a fresh stream, so the client's first-event
		// deadline sees the body flow (a buffering proxy would hold it).
		buf = append(buf, heartbeatEvent...)
	}
	now := o.Clock.Now()
	if full || st.written+int64(len(buf)) >= o.MaxStreamBytes || now.Sub(st.started) >= o.MaxStreamAge {
		st.finish(append(buf, closeEvent(wire.KindEnd, &session.CloseError{Code: session.CodeRecycled, Reason: "stream recycled"})...), true)
		return false
	}
	if len(buf) == 0 && !st.lastWrite.IsZero() && now.Sub(st.lastWrite) >= o.CommentInterval {
		buf = append(buf, ":\n"...)
	}
	if len(buf) > 0 {
		if err := st.write(buf, now); err != nil {
			st.endLocked(true)
			return false
		}
	}
	// The comment timer is armed once per interval, not per write: when
	// it fires, the next comment is due CommentInterval after the last write.
	if st.timer == nil {
		wait := o.CommentInterval
		if !st.lastWrite.IsZero() {
			wait = max(wait-now.Sub(st.lastWrite), 0)
		}
		st.timer = o.Clock.AfterFunc(wait, st.commentTimer)
	}
	return len(b.Messages) > 0
}

var (
	pumpBuffers = pool.Slices[byte]{Cap: 1024, Max: 64 << 10}
	pullBuffers = pool.Slices[session.Message]{Cap: 16, Max: 1024, Clear: true}
)

// commentTimer fires when a comment may be due; pump decides.
func (st *stream) commentTimer() {
	st.mu.Lock()
	st.timer = nil
	st.mu.Unlock()
	st.schedule()
}

// finish writes the last bytes of the stream and ends it.
func (st *stream) finish(buf []byte, detach bool) {
	if len(buf) > 0 {
		_ = st.write(buf, st.es.opts.Clock.Now())
	}
	st.endLocked(detach)
}

func (st *stream) write(buf []byte, now time.Time) error {
	err := st.sink.write(buf, time.Now().Add(st.es.opts.WriteTimeout))
	if err != nil {
		st.es.opts.Logger.Info("eventstream: write failed; the session waits for the client to come back",
			"session", st.ep.ID(), "err", err)
		return err
	}
	st.written += int64(len(buf))
	st.lastWrite = now
	return nil
}

func kickKind(k *session.CloseError) wire.Kind {
	if k.Code.SessionEnding() {
		return wire.KindClose
	}
	return wire.KindEnd
}

var heartbeatEvent = appendEvent(nil, wire.Frame{Kind: wire.KindHeartbeat})

// appendMessageEvent writes a message as an event whose id is its sequence
// number, so that the browser's Last-Event-ID says where to resume.
func appendMessageEvent(dst []byte, m session.Message) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, '\n')
	dst = append(dst, "data: "...)
	dst = wire.AppendMessageJSON(dst, m) // a broadcast's escaped text is shared
	return append(dst, '\n', '\n')
}

// appendEvent writes one frame as "data: <JSON string>\n\n".
func appendEvent(dst []byte, f wire.Frame) []byte {
	dst = append(dst, "data: "...)
	dst = wire.AppendJSONString(dst, string(wire.AppendFrame(nil, f)))
	return append(dst, '\n', '\n')
}

func closeEvent(kind wire.Kind, ce *session.CloseError) []byte {
	return appendEvent(nil, wire.Frame{Kind: kind, Code: int(ce.Code), Data: ce.Reason})
}
