package servers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/centrifugal/centrifuge"
)

// centrifugeImpl is centrifuge with a zero Config (its documented
// defaults, in-memory broker) and a WebsocketHandler with a zero
// WebsocketConfig, as its README's tutorial sets it up. Connections are
// anonymous and subscribed to the broadcast channel on the server side
// (ConnectReply.Subscriptions), so a broadcast is one Node.Publish. Echo
// uses the protocol's asynchronous messages: the client's send command and
// Client.Send back. Messages are JSON strings, as the JSON protocol needs.
type centrifugeImpl struct {
	node *centrifuge.Node
	mux  *http.ServeMux
	t    *tracker
}

func newCentrifuge(t *tracker, log *slog.Logger) (*centrifugeImpl, error) {
	node, err := centrifuge.New(centrifuge.Config{
		LogLevel: centrifuge.LogLevelError,
		LogHandler: func(e centrifuge.LogEntry) {
			log.Warn("centrifuge: "+e.Message, "fields", e.Fields)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("centrifuge node: %w", err)
	}
	welcome, _ := json.Marshal(WelcomeText)
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{
			Credentials:   &centrifuge.Credentials{UserID: ""},
			Subscriptions: map[string]centrifuge.SubscribeOptions{BroadcastTopic: {}},
		}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnMessage(func(e centrifuge.MessageEvent) {
			_ = client.Send(e.Data)
		})
		client.OnDisconnect(func(centrifuge.DisconnectEvent) { t.add(-1) })
		t.add(1)
		_ = client.Send(welcome)
	})
	if err := node.Run(); err != nil {
		return nil, fmt.Errorf("centrifuge run: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(CentrifugePath, centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{}))
	return &centrifugeImpl{node: node, mux: mux, t: t}, nil
}

func (c *centrifugeImpl) handler() http.Handler { return c.mux }

func (c *centrifugeImpl) broadcast(_ context.Context, payload string) (int, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return 0, fmt.Errorf("centrifuge payload: %w", err)
	}
	if _, err := c.node.Publish(BroadcastTopic, data); err != nil {
		return 0, fmt.Errorf("centrifuge publish: %w", err)
	}
	return c.t.count(), nil
}
