package servers

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/cometkit/cometkit/server"
	"github.com/cometkit/cometkit/session"
)

// benchHashKey signs cometkit's session tokens. A deployment keeps its key
// across restarts; a fixed one here spares the warning about a random one.
var benchHashKey = []byte("cometkit-bench-hash-key-0123456789abcdef")

// cometkitImpl is cometkit with its defaults: every session joins one hub
// topic, gets a welcome, and has its messages echoed.
type cometkitImpl struct {
	srv *server.Server
}

func newCometkit(t *tracker, log *slog.Logger) (*cometkitImpl, error) {
	c := &cometkitImpl{}
	app := server.HandlerFunc(func(s *session.Session) {
		ctx := s.Context()
		if err := c.srv.Hub().Subscribe(ctx, s, BroadcastTopic); err != nil {
			log.Warn("subscribe", "err", err)
			return
		}
		t.add(1)
		defer t.add(-1)
		if err := s.Send(ctx, WelcomeText); err != nil {
			return
		}
		for {
			msg, err := s.Recv(ctx)
			if err != nil {
				return
			}
			if err := s.Send(ctx, msg); err != nil {
				return
			}
		}
	})
	srv, err := server.New(app, server.Options{
		HashKey: benchHashKey,
		Logger:  log,
		// The default (100,000) is already above the 20,000 the machine's
		// file limit allows; said here so that a change of default shows.
		MaxSessions: 100_000,
	})
	if err != nil {
		return nil, fmt.Errorf("cometkit server: %w", err)
	}
	c.srv = srv
	return c, nil
}

// handler is the server itself, as sockjs's and socket.io's are theirs: it
// routes by the path's last segments, wherever it is mounted (under
// CometkitPrefix here), and a ServeMux of its own in between would add a
// pattern match and its allocations to every request.
func (c *cometkitImpl) handler() http.Handler { return c.srv }

// broadcast is one Hub.Publish to the topic every session joined.
func (c *cometkitImpl) broadcast(ctx context.Context, payload string) (int, error) {
	if _, err := c.srv.Hub().Publish(ctx, BroadcastTopic, payload); err != nil {
		return 0, fmt.Errorf("cometkit publish: %w", err)
	}
	return c.srv.Len(), nil
}
