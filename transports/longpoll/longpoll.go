// Package longpoll carries a session over plain HTTP requests: a GET held
// until there is something to say (the poll), and a POST for what the client
// says (the send). Each also has a JSONP form for browsers that cannot make
// cross-origin requests any other way (IE6/7), and every answer is text/plain
// or JavaScript with no custom header, so IE8/9's XDomainRequest can read it.
//
// A poll that has waited Options.ParkAfter with nothing to say is parked: on
// HTTP/1.1 its connection is hijacked and kept with no goroutine and no
// buffer, and a short-lived goroutine writes the answer when the session
// wakes it (a message, its heartbeat, its close, a newer poll). The answer
// is the same HTTP response net/http would have written, and the connection
// then goes back to the http.Server for the client's next request, as a
// kept-alive connection would. On Linux a parked connection is watched for
// the client hanging up (epoll, one goroutine for all of them), so the
// session learns of an abandoned poll at once, as it does from net/http.
// HTTP/2 polls, and polls behind a ResponseWriter that cannot be hijacked,
// are held by net/http as before. http.Server.Shutdown does not wait for
// hijacked connections: when it begins (RegisterOnShutdown), the server's
// parked polls are answered at once, with a heartbeat if nothing else is
// due, and Connection: close.
package longpoll

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometkit/cometkit/internal/httpx"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

// Name is the transport's name in negotiation and in Session.Transport.
const Name = "longpoll"

// Options configure the transport; zero fields take defaults.
type Options struct {
	// MaxBatchBytes bounds the message data in one poll answer (default 256 KiB);
	// more waits for the next poll.
	MaxBatchBytes int
	// MaxBodyBytes bounds a send's body (default 1 MiB); larger is refused with 413.
	MaxBodyBytes int64
	// MaxFrames bounds the frames in one send (default 4096).
	MaxFrames int
	// ParkAfter is how long a poll with nothing to say is held by net/http
	// before it is parked (default DefaultParkAfter; negative parks it at
	// once). A held poll costs net/http's two goroutines and its buffers,
	// about 18 KB more than a parked one; parking it costs about 25 µs of
	// CPU (the hijack, a goroutine to answer it, a new connection goroutine
	// and buffers when the connection is handed back), so a poll that a busy
	// session answers within ParkAfter is not parked.
	ParkAfter time.Duration
	// MaxHold bounds how long the poll of a busy session is held before it
	// is parked (default DefaultMaxHold). A session whose last poll waited
	// w for its messages, w under MaxHold, has its next poll held for 2w,
	// within ParkAfter and MaxHold: its next message, due about w after
	// the poll, most likely finds the poll still held, where parking it
	// cost the hijack, a new connection and its buffers at every message.
	// At ParkAfter or less (or with a negative ParkAfter) every poll parks
	// at ParkAfter.
	MaxHold time.Duration
	// NoHijack never parks a poll: every held poll keeps its net/http
	// goroutine and buffers until answered.
	NoHijack bool
	// CloseParked answers a parked poll with Connection: close instead of
	// handing its connection back to the http.Server for the next request.
	// The client then opens a new connection for its next poll. (Handing
	// back is http.Server.Serve on a listener that yields that connection:
	// the server's ConnState hook sees it hijacked, then new again, and
	// its BaseContext and ConnContext hooks run again.) A connection is
	// not handed back to an http.Server that is shut down or closed: the
	// answer then says Connection: close. Nothing shows a handler that
	// the server's keep-alives are off (SetKeepAlivesEnabled(false)): set
	// CloseParked on such a server, or it serves one more request on each
	// connection handed back.
	CloseParked bool
	// WriteTimeout bounds writing a parked poll's answer (default 10 s).
	WriteTimeout time.Duration
	// Clock times ParkAfter (default the wall clock).
	Clock session.Clock
	// Logger receives one line per refused request (default slog.Default()).
	Logger *slog.Logger
}

// DefaultParkAfter is ParkAfter's default: long enough that a busy
// session's next message (usually queued already, or a few milliseconds
// away) finds its poll still held; short enough that an idle session sheds
// net/http's share at once.
const DefaultParkAfter = 50 * time.Millisecond

// DefaultMaxHold is MaxHold's default: a session sent a message every
// quarter second or more often keeps its poll off the parking path; a held
// poll's extra ~18 KB is then held by sessions that use it.
const DefaultMaxHold = 250 * time.Millisecond

// Transport serves the poll and send requests of sessions.
type Transport struct {
	opts  Options
	watch watcher                // parked connections whose client may hang up
	head  atomic.Pointer[[]byte] // the last parked poll's answer head, to share

	mu      sync.Mutex
	stats   ParkStats
	changed chan struct{}            // closed and replaced when stats change
	servers map[*http.Server]*served // those polls were parked from (kept: each was told of us once)
}

// ParkStats count parked polls.
type ParkStats struct {
	Parked  int    // polls parked now (being parked, and answers being written, included)
	Parks   uint64 // polls parked since the transport was made
	HangUps uint64 // parked polls whose client closed the connection before the answer
}

// New returns a Transport with opts' zero fields defaulted.
func New(opts Options) *Transport {
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 256 << 10
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxFrames <= 0 {
		opts.MaxFrames = 4096
	}
	if opts.ParkAfter == 0 {
		opts.ParkAfter = DefaultParkAfter
	}
	if opts.MaxHold == 0 {
		opts.MaxHold = DefaultMaxHold
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = session.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Transport{opts: opts, changed: make(chan struct{})}
}

// ParkStats returns the parked polls' figures now, and a channel that is
// closed when they next change.
func (lp *Transport) ParkStats() (ParkStats, <-chan struct{}) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.stats, lp.changed
}

// WaitParked returns once no poll is parked (every parked poll answered
// and its connection handed back or closed), or ctx ends. A server that
// frees its sessions calls it after, so that no answer is still being
// written when it returns. A poll is counted from before its connection
// is hijacked: until then its request is net/http's, and
// http.Server.Shutdown waits for it; a poll whose request net/http still
// serves is not waited for here.
func (lp *Transport) WaitParked(ctx context.Context) error {
	for {
		st, changed := lp.ParkStats()
		if st.Parked == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (lp *Transport) parkChange(f func(*ParkStats)) {
	lp.mu.Lock()
	f(&lp.stats)
	lp.changedLocked()
	lp.mu.Unlock()
}

func (lp *Transport) changedLocked() {
	close(lp.changed)
	lp.changed = make(chan struct{})
}

// poller is one poll request as the session sees it: held by its request's
// goroutine, which waits on note, until it is parked; then pk answers it.
// Most polls find their answer at the first look: note is made only for a
// poll that waits.
type poller struct {
	lp    *Transport
	ep    session.Endpoint
	ack   uint64
	since int64        // when the poll came (Clock, Unix ns)
	woken atomic.Bool  // a Wake, a Kick or the park timer since the last look
	note  atomic.Value // chan struct{} of capacity 1, signalled with woken
	kick  atomic.Pointer[session.CloseError]

	parkDue atomic.Bool // the park timer has fired
	parked  atomic.Bool // pk is set: Wake goes to it from now on
	pk      *parked
}

func (p *poller) Name() string { return Name }

func (p *poller) Wake() {
	if p.parked.Load() {
		p.pk.runner.Wake()
		return
	}
	p.notify()
	if p.parked.Load() { // parked meanwhile: the request's goroutine may not look again
		p.pk.runner.Wake()
	}
}

func (p *poller) notify() {
	p.woken.Store(true)
	if note, _ := p.note.Load().(chan struct{}); note != nil {
		select {
		case note <- struct{}{}:
		default:
		}
	}
}

func (p *poller) parkTimerFired() {
	p.parkDue.Store(true)
	p.notify()
}

func (p *poller) Kick(code session.Code, reason string) {
	p.kick.CompareAndSwap(nil, &session.CloseError{Code: code, Reason: reason})
	p.Wake()
}

// ServePoll answers a poll: GET ?ack=N[&callback=F]. The client acknowledges
// every message up to N; the answer carries the messages after N, or a
// heartbeat when there were none for the heartbeat interval, or an end frame
// when a newer poll of the same session took over.
func (lp *Transport) ServePoll(w http.ResponseWriter, r *http.Request, ep session.Endpoint) {
	callback, ok := lp.callback(w, r)
	if !ok {
		return
	}
	rawAck, _ := httpx.Query(r.URL.RawQuery, "ack")
	ack, err := parseAck(rawAck)
	if err != nil {
		lp.refuse(w, r, http.StatusBadRequest, "bad_ack", err.Error())
		return
	}
	ctx := r.Context()
	if err := ep.Ack(ctx, ack); err != nil {
		lp.refuse(w, r, http.StatusBadRequest, "bad_ack", err.Error())
		return
	}
	p := &poller{lp: lp, ep: ep, ack: ack, since: lp.opts.Clock.Now().UnixNano()}
	if err := ep.Attach(p); err != nil {
		var ce *session.CloseError
		if !errors.As(err, &ce) {
			ce = &session.CloseError{Code: session.CodeInternalError, Reason: err.Error()}
		}
		lp.writeFrames(w, callback, nil, closeFrame(wire.KindClose, ce))
		return
	}
	mayPark := !lp.opts.NoHijack && parkable(r)
	var parkTimer session.Timer
	defer func() {
		if parkTimer != nil {
			parkTimer.Stop()
		}
	}()
	var buf []session.Message
	var note chan struct{}
	hold := lp.holdFor(ep)
	for looked := false; ; looked = true {
		p.woken.Store(false)
		a, ready := p.next(ctx, buf[:0])
		if ready {
			if looked {
				p.notePace(a)
			}
			lp.answer(w, r, callback, a)
			return
		}
		buf = a.msgs
		if mayPark && (hold < 0 || p.parkDue.Load()) {
			if lp.park(w, r, p, callback) {
				return
			}
			mayPark = false // not hijackable: hold it here
		}
		if mayPark && parkTimer == nil {
			parkTimer = lp.opts.Clock.AfterFunc(hold, p.parkTimerFired)
		}
		if note == nil {
			note = make(chan struct{}, 1)
			p.note.Store(note)
		}
		if p.woken.Load() {
			continue // woken since the look, maybe before note was there
		}
		select {
		case <-note:
		case <-ctx.Done():
			ep.Detach(p)
			return
		}
	}
}

// pacedEndpoint keeps a transport's note on its client's pace between
// connections (*session.Session does).
type pacedEndpoint interface {
	Pace() uint32
	SetPace(uint32)
}

// Pace notes: the milliseconds a poll waited for its messages, plus one;
// paceIdle for a poll that had only a heartbeat to say.
const paceIdle = math.MaxUint32

// holdFor is how long ep's poll is held before it is parked (negative: not
// at all): ParkAfter, or for a busy session twice what its last poll waited,
// up to MaxHold (Options.MaxHold).
func (lp *Transport) holdFor(ep session.Endpoint) time.Duration {
	d := lp.opts.ParkAfter
	pe, ok := ep.(pacedEndpoint)
	if d < 0 || lp.opts.MaxHold <= d || !ok {
		return d
	}
	v := pe.Pace()
	if v == 0 || v == paceIdle {
		return d
	}
	waited := time.Duration(v-1) * time.Millisecond
	if waited >= lp.opts.MaxHold {
		return d
	}
	return min(max(2*waited, d), lp.opts.MaxHold)
}

// notePace leaves, for the session's next poll, how long this one waited
// before the answer o: called only for a poll that waited (an answer at
// the first look, from messages already queued, says nothing of the pace).
// An answer that ends the poll for another reason (a newer poll, the
// close) leaves the note as it was.
func (p *poller) notePace(o outcome) {
	pe, ok := p.ep.(pacedEndpoint)
	if !ok || o.fail {
		return
	}
	var v uint32
	switch {
	case len(o.msgs) > 0:
		waited := time.Duration(p.lp.opts.Clock.Now().UnixNano() - p.since)
		v = uint32(min(max(waited/time.Millisecond, 0), paceIdle-2)) + 1
	case len(o.extra) == 1 && o.extra[0].Kind == wire.KindHeartbeat:
		v = paceIdle
	default:
		return
	}
	pe.SetPace(v)
}

// outcome is what a poll answers.
type outcome struct {
	msgs  []session.Message
	extra []wire.Frame
	fail  bool // the session's queue could not be read: answer 500
}

// next pulls what p should answer, appending messages to buf; ready is
// false when there is nothing yet (then o.msgs is buf, to reuse).
func (p *poller) next(ctx context.Context, buf []session.Message) (o outcome, ready bool) {
	if ce := p.kick.Load(); ce != nil {
		return outcome{extra: []wire.Frame{kickFrame(ce)}}, true
	}
	b, err := p.ep.Pull(ctx, p, p.ack, p.lp.opts.MaxBatchBytes, buf)
	if errors.Is(err, session.ErrDetached) {
		return outcome{extra: []wire.Frame{kickFrame(p.lp.kickReason(p))}}, true
	}
	if err != nil {
		p.ep.Detach(p)
		p.lp.opts.Logger.Error("longpoll: pull failed", "session", p.ep.ID(), "err", err)
		return outcome{fail: true}, true
	}
	if b.Empty() {
		return outcome{msgs: b.Messages}, false
	}
	// Detach before writing: once the client reads this answer its session
	// is unattached, and the disconnect timeout is running.
	p.ep.Detach(p)
	o.msgs = b.Messages
	if b.Heartbeat {
		o.extra = append(o.extra, wire.Frame{Kind: wire.KindHeartbeat})
	}
	if b.Close != nil {
		o.extra = append(o.extra, closeFrame(wire.KindClose, b.Close))
	}
	return o, true
}

const pullFailed = "could not read the session's queue"

// answer writes a held poll's outcome through w.
func (lp *Transport) answer(w http.ResponseWriter, r *http.Request, callback string, o outcome) {
	if o.fail {
		lp.refuse(w, r, http.StatusInternalServerError, "internal", pullFailed)
		return
	}
	lp.writeFrames(w, callback, o.msgs, o.extra...)
}

func (lp *Transport) kickReason(p *poller) *session.CloseError {
	if ce := p.kick.Load(); ce != nil {
		return ce
	}
	return &session.CloseError{Code: session.CodeReplaced, Reason: "replaced by a newer connection"}
}

// ServeSend accepts what the client says: POST with a batch as the body
// (any content type; for a form post, the field d), or for JSONP a GET with
// the batch in d and a callback. The answer is an ack frame with the highest
// message sequence number accepted, and a close frame if the session is over.
func (lp *Transport) ServeSend(w http.ResponseWriter, r *http.Request, ep session.Endpoint) {
	callback, ok := lp.callback(w, r)
	if !ok {
		return
	}
	var body string
	switch r.Method {
	case http.MethodGet:
		if callback == "" {
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			lp.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "send by GET is only for JSONP (callback=)")
			return
		}
		body, _ = httpx.Query(r.URL.RawQuery, "d")
		if int64(len(body)) > lp.opts.MaxBodyBytes {
			lp.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
				"d exceeds "+strconv.FormatInt(lp.opts.MaxBodyBytes, 10)+" bytes")
			return
		}
	case http.MethodPost:
		var err error
		body, err = lp.readBody(w, r)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				lp.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
					"body exceeds "+strconv.FormatInt(lp.opts.MaxBodyBytes, 10)+" bytes")
				return
			}
			lp.refuse(w, r, http.StatusBadRequest, "bad_body", "reading body: "+err.Error())
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") && isForm(ct) {
			form, err := url.ParseQuery(body)
			if err != nil {
				lp.refuse(w, r, http.StatusBadRequest, "bad_body", "form body: "+err.Error())
				return
			}
			switch {
			case form.Has("d"):
				body = form.Get("d")
			case form.Has("e"):
				// A form POSTed from a hidden iframe (IE6-9 across origins):
				// browsers rewrite line breaks in form values to CRLF and
				// guess at charsets, so the batch comes percent-encoded.
				// Percent-encoded as encodeURIComponent does: "+" is a plus.
				if body, err = url.PathUnescape(form.Get("e")); err != nil {
					lp.refuse(w, r, http.StatusBadRequest, "bad_body", "field e: "+err.Error())
					return
				}
			default:
				lp.refuse(w, r, http.StatusBadRequest, "bad_body", "a form-encoded send carries its batch in the field d (or e, percent-encoded)")
				return
			}
		}
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		lp.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "send takes POST (or GET for JSONP)")
		return
	}
	frames, err := wire.ParseBatch(body, lp.opts.MaxFrames)
	if err != nil {
		lp.refuse(w, r, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	ctx := r.Context()
	var (
		msgs     = make([]session.Message, 0, len(frames))
		ack      uint64
		hasAck   bool
		clientCl *wire.Frame
	)
	for i := range frames {
		switch f := frames[i]; f.Kind {
		case wire.KindMessage:
			msgs = append(msgs, session.Message{Seq: f.Seq, Data: f.Data})
		case wire.KindAck:
			ack, hasAck = max(ack, f.Seq), true
		case wire.KindClose:
			if err := session.CheckCloseCode(session.Code(f.Code)); err != nil {
				lp.refuse(w, r, http.StatusBadRequest, "bad_close_code", err.Error())
				return
			}
			clientCl = &frames[i]
		case wire.KindHeartbeat:
		default:
			lp.refuse(w, r, http.StatusBadRequest, "malformed", "a client may not send frame kind "+string(rune(f.Kind)))
			return
		}
	}
	if hasAck {
		if err := ep.Ack(ctx, ack); err != nil {
			lp.refuse(w, r, http.StatusBadRequest, "bad_ack", err.Error())
			return
		}
	}
	acked, err := ep.Receive(ctx, msgs)
	if err != nil {
		lp.sendFailed(w, r, ep, callback, acked, err)
		return
	}
	if clientCl != nil {
		_ = ep.ClientClose(session.Code(clientCl.Code), clientCl.Data) // code checked above
	}
	lp.writeSendAnswer(w, r, callback, wire.Frame{Kind: wire.KindAck, Seq: acked})
}

// writeSendAnswer is writeFrames for a send's answer, but a POST's is
// written with AnswerPost's headers (no Expires: no cache stores it). A
// JSONP send is a GET, and its answer keeps them all.
func (lp *Transport) writeSendAnswer(w http.ResponseWriter, r *http.Request, callback string, frames ...wire.Frame) {
	headers := httpx.Answer
	if r.Method == http.MethodPost {
		headers = httpx.AnswerPost
	}
	writeAnswer(w, headers, callback, nil, frames)
}

// sendFailed answers a send whose messages the session did not all take.
func (lp *Transport) sendFailed(w http.ResponseWriter, r *http.Request, ep session.Endpoint, callback string, acked uint64, err error) {
	var ce *session.CloseError
	switch {
	case errors.As(err, &ce):
		lp.writeSendAnswer(w, r, callback, wire.Frame{Kind: wire.KindAck, Seq: acked}, closeFrame(wire.KindClose, ce))
	case errors.Is(err, session.ErrTooLarge):
		lp.refuseSend(w, r, http.StatusRequestEntityTooLarge, "message_too_large", err.Error(), acked)
		return
	case errors.Is(err, session.ErrSeqGap):
		lp.refuseSend(w, r, http.StatusBadRequest, "sequence_gap", err.Error(), acked)
		return
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away while the inbox was full; it will resend
		// whatever is above the ack it never saw, and duplicates are skipped.
		return
	default:
		lp.opts.Logger.Error("longpoll: receive failed", "session", ep.ID(), "err", err)
		lp.refuse(w, r, http.StatusInternalServerError, "internal", "could not accept messages")
	}
}

// bodyBufs holds buffers for reading sends: a body is copied into the
// string the session keeps, so the buffer can serve the next send.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody reads a send's body, refusing one over MaxBodyBytes with an
// *http.MaxBytesError.
func (lp *Transport) readBody(w http.ResponseWriter, r *http.Request) (string, error) {
	n := r.ContentLength
	if n < 0 || n > lp.opts.MaxBodyBytes || n > 64<<10 {
		// Unknown length, too large, or large enough to read as it comes.
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lp.opts.MaxBodyBytes))
		return string(raw), err
	}
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	buf := *bp
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
		*bp = buf
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// isForm reports whether a send's Content-Type is a form's.
func isForm(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/x-www-form-urlencoded"
}

// Refuse answers a poll or send that cannot reach its session (unknown, or
// expired) with a close frame, as a batch or JSONP like any other answer.
// The status is 200: XDomainRequest and script tags cannot read the body of
// any other, and the frame says what happened.
func (lp *Transport) Refuse(w http.ResponseWriter, r *http.Request, code session.Code, reason string) {
	callback, ok := lp.callback(w, r)
	if !ok {
		return
	}
	lp.writeFrames(w, callback, nil, closeFrame(wire.KindClose, &session.CloseError{Code: code, Reason: reason}))
}

// kickFrame tells a poll's client why its poll ended early: an end frame
// when only this connection ended (go on polling), a close frame when the
// whole session did.
func kickFrame(ce *session.CloseError) wire.Frame {
	if ce.Code.SessionEnding() {
		return closeFrame(wire.KindClose, ce)
	}
	return closeFrame(wire.KindEnd, ce)
}

func closeFrame(kind wire.Kind, ce *session.CloseError) wire.Frame {
	return wire.Frame{Kind: kind, Code: int(ce.Code), Data: ce.Reason}
}

// writeFrames writes msgs then extra as a batch, or as a JSONP call. A
// broadcast message's frame is encoded (escaped, measured) once for every
// session it goes to; only its sequence number is written per session.
func (lp *Transport) writeFrames(w http.ResponseWriter, callback string, msgs []session.Message, extra ...wire.Frame) {
	writeAnswer(w, httpx.Answer, callback, msgs, extra)
}

// writeAnswer writes msgs then extra as appendAnswer encodes them, with
// the headers that headers (httpx.Answer or AnswerPost) sets.
func writeAnswer(w http.ResponseWriter, headers func(http.Header, string, int), callback string, msgs []session.Message, extra []wire.Frame) {
	body, contentType := appendAnswer(nil, callback, msgs, extra)
	headers(w.Header(), contentType, len(body))
	_, _ = w.Write(body)
}

const (
	typeBatch = "text/plain; charset=utf-8"
	typeJSONP = "application/javascript; charset=utf-8"
)

// appendAnswer appends the body of a poll or send answer to dst: msgs then
// extra as a batch, or as a JSONP call; and says its content type.
func appendAnswer(dst []byte, callback string, msgs []session.Message, extra []wire.Frame) ([]byte, string) {
	size := 0
	for _, m := range msgs {
		size += len(m.Data) + 32
	}
	for _, f := range extra {
		size += len(f.Data) + 32
	}
	if callback == "" {
		out := slices.Grow(dst, size)
		for _, m := range msgs {
			out = wire.AppendBatchMessage(out, m)
		}
		for _, f := range extra {
			out = wire.AppendBatchFrame(out, f)
		}
		return out, typeBatch
	}
	out := slices.Grow(dst, size+size/8+len(callback)+16)
	out = append(out, "/**/"...)
	out = append(out, callback...)
	out = append(out, '(', '"')
	for _, m := range msgs {
		out = wire.AppendBatchMessageJS(out, m)
	}
	for _, f := range extra {
		out = wire.AppendBatchFrameJS(out, f)
	}
	out = append(out, `");`...)
	return out, typeJSONP
}

// callback returns the validated JSONP callback name, "" when none was
// asked for; it answers 400 and returns false for a hostile one.
func (lp *Transport) callback(w http.ResponseWriter, r *http.Request) (string, bool) {
	cb, ok := httpx.Query(r.URL.RawQuery, "callback")
	if !ok {
		return "", true
	}
	if !ValidCallback(cb) {
		lp.refuse(w, r, http.StatusBadRequest, "bad_callback",
			"JSONP callback must match ^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")
		return "", false
	}
	return cb, true
}

// ValidCallback reports whether name may be used as a JSONP callback:
// ^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$. Anything else could inject script.
func ValidCallback(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '$' ||
			i > 0 && (c >= '0' && c <= '9' || c == '.')
		if !ok {
			return false
		}
	}
	return true
}

func parseAck(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := wire.ParseFrame("a" + s)
	if err != nil {
		return 0, err
	}
	return f.Seq, nil
}

func (lp *Transport) refuse(w http.ResponseWriter, r *http.Request, status int, name, message string) {
	lp.opts.Logger.Info("longpoll: refused", "status", status, "error", name, "message", message,
		"remote", r.RemoteAddr, "path", r.URL.Path)
	httpx.WriteError(w, status, httpx.ErrorBody{Error: name, Message: message})
}

// refuseSend refuses part of a send: the messages up to acked were accepted
// before the bad one, and the error body says so.
func (lp *Transport) refuseSend(w http.ResponseWriter, r *http.Request, status int, name, message string, acked uint64) {
	lp.opts.Logger.Info("longpoll: refused", "status", status, "error", name, "message", message,
		"acked", acked, "remote", r.RemoteAddr, "path", r.URL.Path)
	httpx.WriteError(w, status, httpx.ErrorBody{Error: name, Message: message, Ack: &acked})
}
