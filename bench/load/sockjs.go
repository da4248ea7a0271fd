package load

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cometkit/cometkit/bench/servers"
)

// sockjs's client (sockjs-client 1.x) first asks /info, then opens a
// transport at /{server}/{session}/{transport}, with a server number and
// a session ID of its own choosing. Frames: o (open), h (heartbeat),
// a[...] (messages, a JSON array), c[code,"reason"] (close).

func sjPaths(env *Env) (info, session string) {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	id := make([]byte, 8)
	for i := range id {
		id[i] = letters[rand.IntN(len(letters))]
	}
	return env.Base + servers.SockJSPrefix + "/info",
		fmt.Sprintf("%s/%03d/%s", servers.SockJSPrefix, rand.IntN(1000), id)
}

func sjInfo(b *base, env *Env, u string) error {
	if _, err := b.httpWant(env, http.MethodGet, u, "", "", http.StatusOK); err != nil {
		return fmt.Errorf("sockjs info: %w", err)
	}
	return nil
}

// sjStillOpen is sockjs-go's answer to a poll while another is attached.
const sjStillOpen = "c[2010,\"Another connection still open\"]\n"

// SockJSRetries counts sockjs xhr polls retried after sjStillOpen.
var SockJSRetries atomic.Int64

// sjTake applies one sockjs frame; it returns false when the session ended.
func sjTake(b *base, frame string) bool {
	if frame == "" {
		return true
	}
	switch frame[0] {
	case 'o', 'h':
	case 'a':
		var msgs []string
		if err := json.Unmarshal([]byte(frame[1:]), &msgs); err != nil {
			b.finish(fmt.Errorf("sockjs frame %q: %w", frame, err))
			return false
		}
		for _, m := range msgs {
			b.deliver(m)
		}
	case 'c':
		b.finish(fmt.Errorf("sockjs session closed: %s", frame[1:]))
		return false
	default:
		b.finish(fmt.Errorf("sockjs frame %q", frame))
		return false
	}
	return true
}

// sjWS is sockjs's websocket transport: one frame per WebSocket message;
// the client sends JSON arrays of strings.
type sjWS struct {
	*base
	env *Env
	c   *wsConn
}

func (s *sjWS) Connect(ctx context.Context) error {
	info, path := sjPaths(s.env)
	if err := sjInfo(s.base, s.env, info); err != nil {
		s.finish(err)
		return err
	}
	var err error
	if s.c, err = dialWS(ctx, s.env, s.env.WSBase()+path+"/websocket", nil); err != nil {
		s.finish(err)
		return err
	}
	go s.read()
	return s.awaitWelcome(ctx)
}

func (s *sjWS) read() {
	for {
		p, err := s.c.read()
		if err != nil {
			s.finish(fmt.Errorf("reading: %w", err))
			return
		}
		if !sjTake(s.base, string(p)) {
			return
		}
	}
}

func (s *sjWS) Send(msg string) error {
	b, err := json.Marshal([]string{msg})
	if err != nil {
		return err
	}
	return s.c.writeText(b)
}

func (s *sjWS) Close() {
	s.finish(ErrClosed)
	if s.c != nil {
		s.c.close()
	}
}

// sjHTTP is sockjs's xhr-polling (POST …/xhr, one frame per answer) or
// eventsource (GET …/eventsource, a stream the server ends after its
// response limit), sending by POST …/xhr_send.
type sjHTTP struct {
	*base
	env    *Env
	stream bool
	path   string
	out    poster
	mu     sync.Mutex
	queue  []string
}

func newSjHTTP(b *base, env *Env, stream bool) *sjHTTP {
	s := &sjHTTP{base: b, env: env, stream: stream}
	s.out = poster{flush: s.flush, fail: func(err error) { s.finish(fmt.Errorf("xhr_send: %w", err)) }}
	return s
}

func (s *sjHTTP) Connect(ctx context.Context) error {
	info, path := sjPaths(s.env)
	s.path = path
	if err := sjInfo(s.base, s.env, info); err != nil {
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

func (s *sjHTTP) pollLoop() {
	u := s.env.Base + s.path + "/xhr"
	for {
		body, err := s.httpWant(s.env, http.MethodPost, u, "text/plain;charset=UTF-8", "", http.StatusOK)
		if err != nil {
			s.finish(fmt.Errorf("xhr: %w", err))
			return
		}
		if body == sjStillOpen {
			// sockjs-go detaches a finished poll from its session in a
			// goroutine of its own; a poll that comes back quicker than that
			// is refused with 2010, though the session lives on. Poll
			// again (sockjs-client would give the session up).
			SockJSRetries.Add(1)
			continue
		}
		for _, frame := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
			if !sjTake(s.base, frame) {
				return
			}
		}
	}
}

func (s *sjHTTP) streamLoop() {
	u := s.env.Base + s.path + "/eventsource"
	for {
		if err := s.readStream(u); err != nil {
			s.finish(err)
			return
		}
		if s.ctx.Err() != nil {
			return
		}
	}
}

// readStream reads one eventsource response to its end (nil: the server
// ended it at its response limit; open the next).
func (s *sjHTTP) readStream(u string) error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.env.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("eventsource: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("eventsource: HTTP %d", resp.StatusCode)
	}
	sc := newSSEReader(resp.Body)
	for {
		data, err := sc.next()
		if err != nil {
			if s.ctx.Err() != nil {
				return s.ctx.Err()
			}
			return nil // the response limit: the stream ends, the session does not
		}
		if data+"\n" == sjStillOpen { // the same race as in pollLoop
			SockJSRetries.Add(1)
			return nil
		}
		if !sjTake(s.base, data) {
			return s.Err()
		}
	}
}

func (s *sjHTTP) Send(msg string) error {
	s.mu.Lock()
	s.queue = append(s.queue, msg)
	s.mu.Unlock()
	s.out.kick()
	return nil
}

func (s *sjHTTP) flush() error {
	s.mu.Lock()
	msgs := s.queue
	s.queue = nil
	s.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	body, err := json.Marshal(msgs)
	if err != nil {
		return err
	}
	_, err = s.httpWant(s.env, http.MethodPost, s.env.Base+s.path+"/xhr_send", "text/plain;charset=UTF-8", string(body),
		http.StatusNoContent, http.StatusOK)
	return err
}

func (s *sjHTTP) Close() { s.finish(ErrClosed) }
