package load

import (
	"context"
	"fmt"

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
