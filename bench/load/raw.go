package load

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/cometkit/cometkit/bench/servers"
)

// rawWS is a plain WebSocket client for the floor: text messages as they are.
type rawWS struct {
	*base
	env *Env
	c   *wsConn
}

func (s *rawWS) Connect(ctx context.Context) error {
	var err error
	if s.c, err = dialWS(ctx, s.env, s.env.WSBase()+servers.RawWebSocketPath, nil); err != nil {
		s.finish(err)
		return err
	}
	go s.read()
	return s.awaitWelcome(ctx)
}

func (s *rawWS) read() {
	for {
		p, err := s.c.read()
		if err != nil {
			s.finish(fmt.Errorf("reading: %w", err))
			return
		}
		s.deliver(string(p))
	}
}

func (s *rawWS) Send(msg string) error { return s.c.writeText([]byte(msg)) }

func (s *rawWS) Close() {
	s.finish(ErrClosed)
	if s.c != nil {
		s.c.close()
	}
}

// rawPoll is the long-poll floor's client: open, then a poll at a time,
// and sends one at a time (what queues meanwhile goes in the next, a line
// per message).
type rawPoll struct {
	*base
	env   *Env
	id    string
	out   poster
	mu    sync.Mutex
	queue []string
}

func newRawPoll(b *base, env *Env) *rawPoll {
	s := &rawPoll{base: b, env: env}
	s.out = poster{flush: s.flush, fail: func(err error) { s.finish(fmt.Errorf("send: %w", err)) }}
	return s
}

func (s *rawPoll) Connect(ctx context.Context) error {
	body, err := s.httpWant(s.env, http.MethodPost, s.env.Base+servers.RawPollOpenPath, "text/plain", "", http.StatusOK)
	if err != nil {
		err = fmt.Errorf("open: %w", err)
		s.finish(err)
		return err
	}
	s.id = body
	go s.pollLoop()
	return s.awaitWelcome(ctx)
}

func (s *rawPoll) pollLoop() {
	u := s.env.Base + servers.RawPollPath + "?id=" + s.id
	for {
		body, err := s.httpWant(s.env, http.MethodGet, u, "", "", http.StatusOK)
		if err != nil {
			s.finish(fmt.Errorf("poll: %w", err))
			return
		}
		if body == "" {
			continue // held to its end with nothing to say
		}
		for _, msg := range strings.Split(body, "\n") {
			s.deliver(msg)
		}
	}
}

func (s *rawPoll) Send(msg string) error {
	s.mu.Lock()
	s.queue = append(s.queue, msg)
	s.mu.Unlock()
	s.out.kick()
	return nil
}

func (s *rawPoll) flush() error {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	if len(q) == 0 {
		return nil
	}
	_, err := s.httpWant(s.env, http.MethodPost, s.env.Base+servers.RawPollSendPath+"?id="+s.id, "text/plain", strings.Join(q, "\n"), http.StatusNoContent)
	return err
}

func (s *rawPoll) Close() { s.finish(ErrClosed) }
