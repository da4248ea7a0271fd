package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometkit/cometkit/bench/servers"
	"github.com/cometkit/cometkit/transports/wire"
)

// cometkit's client contract (docs/PROTOCOL.md), as its own browser client
// keeps it: acknowledge at least every ckAckEvery messages, and within
// ckAckDelay/2 to 3*ckAckDelay/2 (at random) of any message not yet
// acknowledged; and, as it does, with every send over HTTP, in the same
// POST (ckReceiver.ackNow), but not with a send on WebSocket. Timers
// of one length kept every session of a scenario acknowledging in the same
// instant (they all start together): a burst of 100 ack POSTs a second
// that moved cometkit's event-stream echo p99 from ~1.5 to 2-4 ms.
const (
	ckAckEvery = 32
	ckAckDelay = time.Second
)

// ckNegotiation is the part of the negotiate answer a client needs.
type ckNegotiation struct {
	SessionID string `json:"sid"`
	Token     string `json:"token"`
	tokenArg  string // "t=" and the token, escaped once (ckAnswer)
}

func ckNegotiate(b *base, env *Env) (ckNegotiation, error) {
	var n ckNegotiation
	body, err := b.httpWant(env, http.MethodPost, env.Base+servers.CometkitPrefix+"/negotiate", "text/plain;charset=UTF-8", "", http.StatusOK)
	if err != nil {
		return n, fmt.Errorf("negotiate: %w", err)
	}
	return ckAnswer(body)
}

// ckAnswer reads a negotiate answer: /negotiate's body, or an o frame's data.
func ckAnswer(body string) (ckNegotiation, error) {
	var n ckNegotiation
	if err := json.Unmarshal([]byte(body), &n); err != nil || n.SessionID == "" {
		return n, fmt.Errorf("negotiate answer %q: %v", body, err)
	}
	n.tokenArg = "t=" + url.QueryEscape(n.Token)
	return n, nil
}

// ckOpen reads the negotiate answer of a connection that negotiated itself
// from its first frame.
func ckOpen(f ckFrame) (ckNegotiation, error) {
	if f.Kind != wire.KindOpen {
		return ckNegotiation{}, fmt.Errorf("first frame %c is not an o frame", f.Kind)
	}
	return ckAnswer(f.Data)
}

// sessionURL is the session endpoint op on base with the token, and with
// ack= if ack is given. Built by concatenation, the token escaped once:
// url.Values.Encode (a map, sorted keys, escaping) took 8.6 % of the load
// generator's CPU in the long-poll round trips, where that core is as busy
// as the server's.
func (n ckNegotiation) sessionURL(base, op string, ack ...uint64) string {
	u := base + servers.CometkitPrefix + "/s/" + n.SessionID + "/" + op + "?" + n.tokenArg
	if len(ack) > 0 {
		u += "&ack=" + strconv.FormatUint(ack[0], 10)
	}
	return u
}

// ckFrame is one decoded cometkit frame: the library's own decoder
// (transports/wire) reads them, so the load generator and the server agree
// on the protocol by construction.
type ckFrame = wire.Frame

// ckParse decodes one frame.
func ckParse(s string) (ckFrame, error) { return wire.ParseFrame(s) }

// ckParseBatch splits and decodes a batch.
func ckParseBatch(s string) ([]ckFrame, error) { return wire.ParseBatch(s, 1<<20) }

// appendBatchFrame appends an encoded frame with its batch length.
func appendBatchFrame(dst []byte, frame string) []byte {
	dst = strconv.AppendInt(dst, int64(wire.UTF16Len(frame)), 10)
	dst = append(dst, ':')
	dst = append(dst, frame...)
	return append(dst, '\n')
}

// ckReceiver is a client's receiving half: de-duplication by sequence
// number and the acknowledgement policy.
type ckReceiver struct {
	b       *base
	rcv     atomic.Uint64 // highest server sequence number received
	mu      sync.Mutex
	ackd    uint64 // highest acknowledged to the server
	timer   *time.Timer
	sendAck func(n uint64) // how this transport acknowledges (nil: polls do)
}

// take applies one frame; it returns false when the session has ended.
func (r *ckReceiver) take(f ckFrame) bool {
	switch f.Kind {
	case wire.KindMessage, wire.KindPublish, wire.KindGap, wire.KindLeft:
		rcv := r.rcv.Load()
		if f.Seq <= rcv {
			return true // a replay
		}
		if f.Seq != rcv+1 {
			r.b.finish(fmt.Errorf("message %d after %d: a gap", f.Seq, rcv))
			return false
		}
		r.rcv.Store(f.Seq)
		if f.Kind == wire.KindMessage || f.Kind == wire.KindPublish {
			r.b.deliver(f.Data)
		}
		r.due()
	case wire.KindClose:
		r.b.finish(fmt.Errorf("session closed by the server: %d %s", f.Code, f.Data))
		return false
	}
	return true
}

// due acknowledges now if ckAckEvery messages wait, or arms the timer.
func (r *ckReceiver) due() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sendAck == nil {
		return
	}
	if r.rcv.Load()-r.ackd >= ckAckEvery {
		r.ackLocked()
		return
	}
	if r.timer == nil {
		r.timer = time.AfterFunc(ckAckDelay/2+time.Duration(rand.Int64N(int64(ckAckDelay))), func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.timer = nil
			if r.sendAck != nil {
				r.ackLocked()
			}
		})
	}
}

func (r *ckReceiver) ackLocked() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if n := r.rcv.Load(); n > r.ackd {
		r.ackd = n
		r.sendAck(n)
	}
}

// ackNow is the acknowledgement a POST carries, as the browser client's
// post makes it: the highest sequence number received, acknowledged from
// now on, so the timer stops.
func (r *ckReceiver) ackNow() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	n := r.rcv.Load()
	r.ackd = max(r.ackd, n)
	return n
}

func (r *ckReceiver) stop() {
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.sendAck = nil
	r.mu.Unlock()
}

// ckWS is cometkit's session endpoint over WebSocket: one frame per
// message both ways, acks as frames.
type ckWS struct {
	*base
	env *Env
	c   *wsConn
	rx  ckReceiver
	mu  sync.Mutex // orders sequence numbers with writes
	seq uint64
}

// Connect negotiates on the socket itself, as the browser client does: the
// upgrade goes to .../negotiate/websocket and the first frame is the
// negotiate answer (an o frame).
func (s *ckWS) Connect(ctx context.Context) error {
	var err error
	if s.c, err = dialWS(ctx, s.env, s.env.WSBase()+servers.CometkitPrefix+"/negotiate/websocket", nil); err != nil {
		s.finish(err)
		return err
	}
	p, err := s.c.read()
	var f ckFrame
	if err == nil {
		f, err = ckParse(string(p))
	}
	if err == nil {
		_, err = ckOpen(f)
	}
	if err != nil {
		err = fmt.Errorf("negotiating on the socket: %w", err)
		s.finish(err)
		return err
	}
	s.rx = ckReceiver{b: s.base}
	s.rx.sendAck = func(n uint64) {
		if err := s.c.writeText([]byte("a" + strconv.FormatUint(n, 10))); err != nil {
			s.finish(fmt.Errorf("writing an ack: %w", err))
		}
	}
	go s.read()
	return s.awaitWelcome(ctx)
}

func (s *ckWS) read() {
	defer s.rx.stop()
	for {
		p, err := s.c.read()
		if err != nil {
			s.finish(fmt.Errorf("reading: %w", err))
			return
		}
		f, err := ckParse(string(p))
		if err != nil {
			s.finish(err)
			return
		}
		if f.Kind == wire.KindEnd {
			s.finish(fmt.Errorf("connection ended by the server: %d %s", f.Code, f.Data))
			return
		}
		if !s.rx.take(f) {
			return
		}
	}
}

// Send writes the message alone: as in the browser client, a send on a
// WebSocket does not acknowledge (the ack would be a frame of its own).
func (s *ckWS) Send(msg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	b := make([]byte, 0, len(msg)+24)
	b = append(b, 'm')
	b = strconv.AppendUint(b, s.seq, 10)
	b = append(b, ':')
	b = append(b, msg...)
	return s.c.writeText(b)
}

func (s *ckWS) Close() {
	s.finish(ErrClosed)
	if s.c != nil {
		s.c.close()
	}
}

// ckHTTP is cometkit over HTTP: received by a held poll (long-poll) or
// one long response (event stream), sent by POSTs, one at a time, each
// carrying every message queued meanwhile (and, for the event stream,
// the ack: a poll acknowledges by itself).
type ckHTTP struct {
	*base
	env    *Env
	stream bool
	n      ckNegotiation
	rx     ckReceiver
	out    poster
	mu     sync.Mutex
	seq    uint64
	queue  []byte // batch frames not yet posted
	ackDue bool   // an ack is due: post even with nothing queued (every post carries one)
}

func newCkHTTP(b *base, env *Env, stream bool) *ckHTTP {
	s := &ckHTTP{base: b, env: env, stream: stream}
	s.rx = ckReceiver{b: b}
	if stream {
		s.rx.sendAck = func(uint64) {
			s.mu.Lock()
			s.ackDue = true
			s.mu.Unlock()
			s.out.kick()
		}
	}
	s.out = poster{flush: s.flush, fail: func(err error) { s.finish(fmt.Errorf("send: %w", err)) }}
	return s
}

// Connect negotiates and starts receiving: an event stream negotiates on
// itself, as the browser client does (its first event is the negotiate
// answer); long-polling negotiates by a request first.
func (s *ckHTTP) Connect(ctx context.Context) error {
	if s.stream {
		go s.streamLoop()
	} else {
		var err error
		if s.n, err = ckNegotiate(s.base, s.env); err != nil {
			s.finish(err)
			return err
		}
		go s.pollLoop()
	}
	return s.awaitWelcome(ctx)
}

func (s *ckHTTP) pollLoop() {
	defer s.rx.stop()
	for {
		u := s.n.sessionURL(s.env.Base, "poll", s.rx.rcv.Load())
		body, err := s.httpWant(s.env, http.MethodGet, u, "", "", http.StatusOK)
		if err != nil {
			s.finish(fmt.Errorf("poll: %w", err))
			return
		}
		frames, err := ckParseBatch(body)
		if err != nil {
			s.finish(fmt.Errorf("poll: %w", err))
			return
		}
		for _, f := range frames {
			if !s.rx.take(f) {
				return
			}
		}
	}
}

// streamLoop reads event streams, opening the next one (resuming after
// the last message) when the server recycles one.
func (s *ckHTTP) streamLoop() {
	defer s.rx.stop()
	u := s.env.Base + servers.CometkitPrefix + "/negotiate/eventstream"
	for {
		if s.n.SessionID != "" {
			u = s.n.sessionURL(s.env.Base, "eventstream", s.rx.rcv.Load())
		}
		if err := s.readStream(u); err != nil {
			s.finish(err)
			return
		}
		if s.ctx.Err() != nil {
			return
		}
	}
}

// readStream reads one event stream to its end: nil if the server ended
// it (recycled), an error if the session ended or the stream failed.
func (s *ckHTTP) readStream(u string) error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.env.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("event stream: HTTP %d", resp.StatusCode)
	}
	sc := newSSEReader(resp.Body)
	for {
		data, err := sc.next()
		if err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		text, err := jsonString(data)
		if err != nil {
			return fmt.Errorf("event stream data %q: %w", data, err)
		}
		f, err := ckParse(text)
		if err != nil {
			return err
		}
		if f.Kind == wire.KindEnd {
			return nil // recycled (or replaced): open the next, resuming
		}
		if f.Kind == wire.KindOpen {
			if s.n, err = ckOpen(f); err != nil {
				return fmt.Errorf("negotiating on the stream: %w", err)
			}
			continue
		}
		if !s.rx.take(f) {
			return s.Err()
		}
	}
}

func (s *ckHTTP) Send(msg string) error {
	s.mu.Lock()
	s.seq++
	s.queue = appendBatchFrame(s.queue, "m"+strconv.FormatUint(s.seq, 10)+":"+msg)
	s.mu.Unlock()
	s.out.kick()
	return nil
}

// flush posts what is queued and an ack, as one batch. As the browser
// client's post does, every post ends with an a frame: the highest
// sequence number received.
func (s *ckHTTP) flush() error {
	s.mu.Lock()
	body := s.queue
	s.queue = nil
	due := s.ackDue
	s.ackDue = false
	s.mu.Unlock()
	if len(body) == 0 && !due {
		return nil // a kick coalesced into the flush before: nothing is acknowledged unsent
	}
	body = appendBatchFrame(body, "a"+strconv.FormatUint(s.rx.ackNow(), 10))
	_, err := s.httpWant(s.env, http.MethodPost, s.n.sessionURL(s.env.Base, "send"), "text/plain;charset=UTF-8", string(body), http.StatusOK)
	return err
}

func (s *ckHTTP) Close() { s.finish(ErrClosed) }

// sseReader reads the data of Server-Sent Events, one event at a time.
type sseReader struct{ r *bufio.Reader }

func newSSEReader(r interface{ Read([]byte) (int, error) }) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 2048)}
}

// next returns the data of the next event (its data lines joined by LF).
func (s *sseReader) next() (string, error) {
	var data []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data != nil {
				return strings.Join(data, "\n"), nil
			}
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// jsonString decodes a JSON string literal, quickly when it has no escapes.
func jsonString(s string) (string, error) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && !strings.ContainsAny(s[1:len(s)-1], "\\\"") {
		return s[1 : len(s)-1], nil
	}
	var out string
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}
