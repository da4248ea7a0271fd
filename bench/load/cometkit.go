package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometkit/cometkit/bench/servers"
)

// cometkit's client contract (docs/PROTOCOL.md), as its own browser client
// keeps it: acknowledge at least every ckAckEvery messages, and within
// ckAckDelay of any message not yet acknowledged.
const (
	ckAckEvery = 32
	ckAckDelay = time.Second
)

// ckNegotiation is the part of the negotiate answer a client needs.
type ckNegotiation struct {
	SessionID string `json:"sid"`
	Token     string `json:"token"`
}

func ckNegotiate(b *base, env *Env) (ckNegotiation, error) {
	var n ckNegotiation
	status, body, err := b.httpDo(env, http.MethodPost, env.Base+servers.CometkitPrefix+"/negotiate", "text/plain;charset=UTF-8", "")
	if err != nil {
		return n, fmt.Errorf("negotiate: %w", err)
	}
	if status != http.StatusOK {
		return n, fmt.Errorf("negotiate: HTTP %d: %s", status, body)
	}
	if err := json.Unmarshal([]byte(body), &n); err != nil || n.SessionID == "" {
		return n, fmt.Errorf("negotiate answer %q: %v", body, err)
	}
	return n, nil
}

// sessionURL is the session endpoint op on base with the token and extra query.
func (n ckNegotiation) sessionURL(base, op string, extra url.Values) string {
	q := url.Values{"t": {n.Token}}
	for k, v := range extra {
		q[k] = v
	}
	return base + servers.CometkitPrefix + "/s/" + n.SessionID + "/" + op + "?" + q.Encode()
}

// ckFrame is one decoded cometkit frame.
type ckFrame struct {
	kind byte
	seq  uint64 // m, p, g, a
	code int    // c, x
	data string // m, p: the message; c, x: the reason
}

var errCkMalformed = errors.New("malformed cometkit frame")

// ckParse decodes one frame: m (message), p (topic publish), g (topic
// gap), a (ack), h (heartbeat), c (close), x (end of this connection).
func ckParse(s string) (ckFrame, error) {
	if s == "" {
		return ckFrame{}, errCkMalformed
	}
	f := ckFrame{kind: s[0]}
	rest := s[1:]
	num := func() (uint64, error) {
		head, tail, ok := strings.Cut(rest, ":")
		if !ok {
			return 0, errors.New("no ':' after a number")
		}
		n, err := strconv.ParseUint(head, 10, 64)
		rest = tail
		return n, err
	}
	var err error
	switch f.kind {
	case 'h':
	case 'a':
		f.seq, err = strconv.ParseUint(rest, 10, 64)
	case 'm', 'g':
		f.seq, err = num()
		f.data = rest
	case 'p': // seq:offset:topicUnits:topic data
		var units uint64
		if f.seq, err = num(); err == nil {
			if _, err = num(); err == nil {
				units, err = num()
			}
		}
		if err == nil {
			end := utf16Offset(rest, int(units))
			if end < 0 {
				return ckFrame{}, errCkMalformed
			}
			f.data = rest[end:]
		}
	case 'c', 'x':
		var code uint64
		code, err = num()
		f.code, f.data = int(code), rest
	default:
		return ckFrame{}, fmt.Errorf("%w: kind %q", errCkMalformed, f.kind)
	}
	if err != nil {
		return ckFrame{}, fmt.Errorf("%w %q: %v", errCkMalformed, s, err)
	}
	return f, nil
}

// ckParseBatch splits a batch, `length:frame\n` repeated, where length
// counts UTF-16 code units.
func ckParseBatch(s string) ([]ckFrame, error) {
	var out []ckFrame
	for len(s) > 0 {
		head, rest, ok := strings.Cut(s, ":")
		n, err := strconv.Atoi(head)
		if !ok || err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: batch %q", errCkMalformed, s)
		}
		end := utf16Offset(rest, n)
		if end < 0 || end >= len(rest) || rest[end] != '\n' {
			return nil, fmt.Errorf("%w: batch %q", errCkMalformed, s)
		}
		f, err := ckParse(rest[:end])
		if err != nil {
			return nil, err
		}
		out = append(out, f)
		s = rest[end+1:]
	}
	return out, nil
}

// utf16Offset is the byte offset in s after n UTF-16 code units, or -1.
func utf16Offset(s string, n int) int {
	i := 0
	for n > 0 {
		if i >= len(s) {
			return -1
		}
		c := s[i]
		switch {
		case c < 0x80:
			i++
			n--
		case c < 0xE0:
			i += 2
			n--
		case c < 0xF0:
			i += 3
			n--
		default:
			if n < 2 {
				return -1
			}
			i += 4
			n -= 2
		}
	}
	if i > len(s) {
		return -1
	}
	return i
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r > 0xFFFF {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// appendBatchFrame appends `length:frame\n`.
func appendBatchFrame(dst []byte, frame string) []byte {
	dst = strconv.AppendInt(dst, int64(utf16Len(frame)), 10)
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
	switch f.kind {
	case 'm', 'p', 'g':
		rcv := r.rcv.Load()
		if f.seq <= rcv {
			return true // a replay
		}
		if f.seq != rcv+1 {
			r.b.finish(fmt.Errorf("message %d after %d: a gap", f.seq, rcv))
			return false
		}
		r.rcv.Store(f.seq)
		if f.kind != 'g' {
			r.b.deliver(f.data)
		}
		r.due()
	case 'c':
		r.b.finish(fmt.Errorf("session closed by the server: %d %s", f.code, f.data))
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
		r.timer = time.AfterFunc(ckAckDelay, func() {
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

func (s *ckWS) Connect(ctx context.Context) error {
	n, err := ckNegotiate(s.base, s.env)
	if err != nil {
		s.finish(err)
		return err
	}
	u := n.sessionURL(s.env.WSBase(), "websocket", url.Values{"ack": {"0"}})
	if s.c, err = dialWS(ctx, s.env, u, nil); err != nil {
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
		if f.kind == 'x' {
			s.finish(fmt.Errorf("connection ended by the server: %d %s", f.code, f.data))
			return
		}
		if !s.rx.take(f) {
			return
		}
	}
}

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
	ackDue uint64 // ack to carry in the next post
}

func newCkHTTP(b *base, env *Env, stream bool) *ckHTTP {
	s := &ckHTTP{base: b, env: env, stream: stream}
	s.rx = ckReceiver{b: b}
	if stream {
		s.rx.sendAck = func(n uint64) {
			s.mu.Lock()
			s.ackDue = n
			s.mu.Unlock()
			s.out.kick()
		}
	}
	s.out = poster{flush: s.flush, fail: func(err error) { s.finish(fmt.Errorf("send: %w", err)) }}
	return s
}

func (s *ckHTTP) Connect(ctx context.Context) error {
	var err error
	if s.n, err = ckNegotiate(s.base, s.env); err != nil {
		s.finish(err)
		return err
	}
	if s.stream {
		go s.streamLoop()
	} else {
		go s.pollLoop()
	}
	return s.awaitWelcome(ctx)
}

func (s *ckHTTP) pollLoop() {
	defer s.rx.stop()
	for {
		u := s.n.sessionURL(s.env.Base, "poll", url.Values{"ack": {strconv.FormatUint(s.rx.rcv.Load(), 10)}})
		status, body, err := s.httpDo(s.env, http.MethodGet, u, "", "")
		if err != nil {
			s.finish(fmt.Errorf("poll: %w", err))
			return
		}
		if status != http.StatusOK {
			s.finish(fmt.Errorf("poll: HTTP %d: %s", status, body))
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
	for {
		u := s.n.sessionURL(s.env.Base, "eventstream", url.Values{"ack": {strconv.FormatUint(s.rx.rcv.Load(), 10)}})
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
		if f.kind == 'x' {
			return nil // recycled (or replaced): open the next, resuming
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

// flush posts what is queued and the ack due, as one batch.
func (s *ckHTTP) flush() error {
	s.mu.Lock()
	body := s.queue
	s.queue = nil
	if s.ackDue > 0 {
		body = appendBatchFrame(body, "a"+strconv.FormatUint(s.ackDue, 10))
		s.ackDue = 0
	}
	s.mu.Unlock()
	if len(body) == 0 {
		return nil
	}
	status, answer, err := s.httpDo(s.env, http.MethodPost, s.n.sessionURL(s.env.Base, "send", nil), "text/plain;charset=UTF-8", string(body))
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", status, answer)
	}
	return nil
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
