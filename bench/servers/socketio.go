package servers

import (
	"context"
	"net/http"

	"github.com/zishang520/socket.io/v2/socket"
)

// socketioImpl is zishang520/socket.io v2 (Socket.IO protocol 5 over
// Engine.IO 4) with its default options — polling and WebSocket, upgrades
// allowed, 25 s pings, no per-message deflate — served through
// ServeHandler as its README shows for net/http. A broadcast is the
// namespace's Emit, which encodes the packet once for every socket.
type socketioImpl struct {
	io *socket.Server
	h  http.Handler
	t  *tracker
}

func newSocketIO(t *tracker) *socketioImpl {
	opts := socket.DefaultServerOptions()
	io := socket.NewServer(nil, opts)
	s := &socketioImpl{io: io, h: io.ServeHandler(opts), t: t}
	_ = io.On("connection", func(args ...any) {
		client, ok := args[0].(*socket.Socket)
		if !ok {
			return
		}
		_ = client.On(EchoEvent, func(msgs ...any) {
			_ = client.Emit(EchoEvent, msgs...)
		})
		_ = client.On("disconnect", func(...any) { t.add(-1) })
		t.add(1)
		_ = client.Emit(WelcomeEvent, WelcomeText)
	})
	return s
}

func (s *socketioImpl) handler() http.Handler { return s.h }

func (s *socketioImpl) broadcast(_ context.Context, payload string) (int, error) {
	s.io.Emit(BroadcastEvent, payload)
	return s.t.count(), nil
}
