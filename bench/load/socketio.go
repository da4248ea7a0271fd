package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/cometkit/cometkit/bench/servers"
)

// socket.io's client (socket.io-client 4 over engine.io-client 6) speaks
// Engine.IO 4 packets — 0 open, 1 close, 2 ping, 3 pong, 4 message,
// 6 noop — and inside message packets Socket.IO 5 — 0 connect, 1
// disconnect, 2 event (a JSON array: name, arguments), 4 connect error.
// The client joins the default namespace with "40" after the open packet;
// it must answer every ping with a pong. Over polling, one HTTP body
// carries several packets separated by the record separator 0x1E.

const sioSeparator = "\x1e"

func sioEvent(name, arg string) ([]byte, error) {
	b, err := json.Marshal([]string{name, arg})
	if err != nil {
		return nil, err
	}
	return append([]byte("42"), b...), nil
}

// sioTake applies one Engine.IO packet. reply sends a packet back; it
// returns false when the session has ended.
func sioTake(b *base, pkt string, reply func(string)) bool {
	if pkt == "" {
		return true
	}
	switch pkt[0] {
	case '0': // engine.io open: join the default namespace
		reply("40")
	case '2':
		reply("3" + pkt[1:])
	case '3', '6':
	case '1':
		b.finish(fmt.Errorf("socket.io: closed by the server"))
		return false
	case '4':
		if len(pkt) < 2 {
			return true
		}
		switch pkt[1] {
		case '0': // namespace joined
		case '2':
			var args []string
			if err := json.Unmarshal([]byte(pkt[2:]), &args); err != nil || len(args) < 2 {
				b.finish(fmt.Errorf("socket.io event %q: %v", pkt, err))
				return false
			}
			b.deliver(args[1])
		case '1':
			b.finish(fmt.Errorf("socket.io: namespace disconnected"))
			return false
		case '4':
			b.finish(fmt.Errorf("socket.io: connect error %s", pkt[2:]))
			return false
		}
	default:
		b.finish(fmt.Errorf("socket.io packet %q", pkt))
		return false
	}
	return true
}

// sioWS is socket.io straight over WebSocket (the client's
// transports: ["websocket"]): one Engine.IO packet per WebSocket message.
type sioWS struct {
	*base
	env *Env
	c   *wsConn
}

func (s *sioWS) Connect(ctx context.Context) error {
	u := s.env.WSBase() + servers.SocketIOPath + "?EIO=4&transport=websocket"
	var err error
	if s.c, err = dialWS(ctx, s.env, u, nil); err != nil {
		s.finish(err)
		return err
	}
	go s.read()
	return s.awaitWelcome(ctx)
}

func (s *sioWS) read() {
	reply := func(p string) {
		if err := s.c.writeText([]byte(p)); err != nil {
			s.finish(fmt.Errorf("writing: %w", err))
		}
	}
	for {
		p, err := s.c.read()
		if err != nil {
			s.finish(fmt.Errorf("reading: %w", err))
			return
		}
		if !sioTake(s.base, string(p), reply) {
			return
		}
	}
}

func (s *sioWS) Send(msg string) error {
	p, err := sioEvent(servers.EchoEvent, msg)
	if err != nil {
		return err
	}
	return s.c.writeText(p)
}

func (s *sioWS) Close() {
	s.finish(ErrClosed)
	if s.c != nil {
		s.c.close()
	}
}

// sioPoll is socket.io over Engine.IO's polling transport: a held GET
// receives, POSTs send (one at a time, packets batched).
type sioPoll struct {
	*base
	env   *Env
	url   string // with the sid once open
	out   poster
	mu    sync.Mutex
	queue []string
}

func newSioPoll(b *base, env *Env) *sioPoll {
	s := &sioPoll{base: b, env: env}
	s.out = poster{flush: s.flush, fail: func(err error) { s.finish(fmt.Errorf("polling send: %w", err)) }}
	return s
}

func (s *sioPoll) Connect(ctx context.Context) error {
	u := s.env.Base + servers.SocketIOPath + "?EIO=4&transport=polling"
	status, body, err := s.httpDo(s.env, http.MethodGet, u, "", "")
	if err == nil && (status != http.StatusOK || !strings.HasPrefix(body, "0")) {
		err = fmt.Errorf("HTTP %d: %s", status, body)
	}
	var open struct {
		SID string `json:"sid"`
	}
	if err == nil {
		if err = json.Unmarshal([]byte(body[1:]), &open); err == nil && open.SID == "" {
			err = fmt.Errorf("no sid in %q", body)
		}
	}
	if err != nil {
		err = fmt.Errorf("socket.io handshake: %w", err)
		s.finish(err)
		return err
	}
	s.url = u + "&sid=" + url.QueryEscape(open.SID)
	s.reply("40") // join the default namespace
	go s.pollLoop()
	return s.awaitWelcome(ctx)
}

func (s *sioPoll) reply(p string) {
	s.mu.Lock()
	s.queue = append(s.queue, p)
	s.mu.Unlock()
	s.out.kick()
}

func (s *sioPoll) pollLoop() {
	for {
		body, err := s.httpWant(s.env, http.MethodGet, s.url, "", "", http.StatusOK)
		if err != nil {
			s.finish(fmt.Errorf("poll: %w", err))
			return
		}
		for _, pkt := range strings.Split(body, sioSeparator) {
			if !sioTake(s.base, pkt, s.reply) {
				return
			}
		}
	}
}

func (s *sioPoll) Send(msg string) error {
	p, err := sioEvent(servers.EchoEvent, msg)
	if err != nil {
		return err
	}
	s.reply(string(p))
	return nil
}

func (s *sioPoll) flush() error {
	s.mu.Lock()
	pkts := s.queue
	s.queue = nil
	s.mu.Unlock()
	if len(pkts) == 0 {
		return nil
	}
	_, err := s.httpWant(s.env, http.MethodPost, s.url, "text/plain;charset=UTF-8", strings.Join(pkts, sioSeparator), http.StatusOK)
	return err
}

func (s *sioPoll) Close() { s.finish(ErrClosed) }
