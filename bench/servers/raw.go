package servers

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// rawWriteTimeout cuts a peer that stops reading, as any real server must.
const rawWriteTimeout = 10 * time.Second

// rawImpl is the floor: RFC 6455 with gobwas/ws and nothing else — no
// session, no sequence numbers, no heartbeats, no fallback. One goroutine
// per connection reads frames straight off the socket (no buffer); a
// broadcast compiles one frame and writes those bytes to every connection
// in a loop.
type rawImpl struct {
	t     *tracker
	poll  *rawPoll // the long-poll floor (rawpoll.go)
	mu    sync.RWMutex
	conns map[*rawConn]struct{}
}

type rawConn struct {
	nc net.Conn
	r  io.Reader
	mu sync.Mutex // one writer at a time: echo and broadcast
}

func newRaw(ctx context.Context, t *tracker) *rawImpl {
	s := &rawImpl{t: t, poll: newRawPoll(t), conns: map[*rawConn]struct{}{}}
	go s.poll.sweep(ctx)
	return s
}

func (s *rawImpl) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+RawWebSocketPath, s.serve)
	s.poll.register(mux)
	return mux
}

func (s *rawImpl) serve(w http.ResponseWriter, r *http.Request) {
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return // UpgradeHTTP has answered the request
	}
	c := &rawConn{nc: nc, r: nc}
	if rw != nil && rw.Reader.Buffered() > 0 { // the client wrote ahead: keep those bytes
		c.r = io.MultiReader(io.LimitReader(rw.Reader, int64(rw.Reader.Buffered())), nc)
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.t.add(1)
	welcome, err := ws.CompileFrame(ws.NewTextFrame([]byte(WelcomeText)))
	if err == nil {
		err = c.write(welcome)
	}
	if err != nil {
		s.drop(c)
		return
	}
	go s.read(c) // the handler's goroutine carries net/http's deep stack: leave it
}

func (s *rawImpl) drop(c *rawConn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		s.t.add(-1)
	}
	c.nc.Close()
}

func (c *rawConn) write(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(rawWriteTimeout))
	_, err := c.nc.Write(frame)
	return err
}

func (s *rawImpl) read(c *rawConn) {
	defer s.drop(c)
	for {
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			return
		}
		if h.Length > 1<<16 {
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, payload); err != nil {
			return
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			out, err := ws.CompileFrame(ws.NewFrame(h.OpCode, true, payload))
			if err != nil || c.write(out) != nil {
				return
			}
		case ws.OpPing:
			out, err := ws.CompileFrame(ws.NewPongFrame(payload))
			if err != nil || c.write(out) != nil {
				return
			}
		case ws.OpClose:
			out, _ := ws.CompileFrame(ws.NewCloseFrame(payload))
			_ = c.write(out)
			return
		}
	}
}

func (s *rawImpl) broadcast(_ context.Context, payload string) (int, error) {
	frame, err := ws.CompileFrame(ws.NewTextFrame([]byte(payload)))
	if err != nil {
		return 0, err
	}
	s.mu.RLock()
	conns := make([]*rawConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	for _, c := range conns {
		_ = c.write(frame) // a dead peer is its reader's business
	}
	return len(conns) + s.poll.broadcast(payload), nil
}
