package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Transports, by the names the results use. Each implementation's own name
// for its transport is Target.Native.
const (
	WebSocket   = "websocket"
	EventStream = "eventstream"
	LongPoll    = "longpoll"
)

// Target is one implementation over one transport.
type Target struct {
	Impl      string `json:"impl"`
	Transport string `json:"transport"`
}

func (t Target) String() string { return t.Impl + "/" + t.Transport }

// Native is the implementation's own name for the transport.
func (t Target) Native() string {
	switch {
	case t.Impl == "sockjs" && t.Transport == LongPoll:
		return "xhr-polling"
	case t.Impl == "sockjs" && t.Transport == EventStream:
		return "eventsource"
	case t.Impl == "socketio" && t.Transport == LongPoll:
		return "polling"
	}
	return t.Transport
}

// Targets is every implementation over every transport it offers, as the
// benchmark drives them.
var Targets = []Target{
	{"cometkit", WebSocket}, {"cometkit", EventStream}, {"cometkit", LongPoll},
	{"sockjs", WebSocket}, {"sockjs", EventStream}, {"sockjs", LongPoll},
	{"centrifuge", WebSocket},
	{"socketio", WebSocket}, {"socketio", LongPoll},
	{"raw", WebSocket}, {"raw", LongPoll},
}

// Session is one client session.
type Session interface {
	// Connect opens the session and returns once the server's welcome
	// message has arrived.
	Connect(ctx context.Context) error
	// Send sends one application message (over HTTP transports it is
	// queued, and batched with others while a send is in flight, as the
	// implementations' own clients do).
	Send(msg string) error
	// Close ends the session's connections.
	Close()
	// Done is closed when the session has ended, by Close or by a failure.
	Done() <-chan struct{}
	// Err says why the session ended (nil while it lives, ErrClosed after Close).
	Err() error
}

// OnMessage receives every application message after the welcome, from
// the session's reader (one call at a time per session).
type OnMessage func(msg string)

// ErrClosed is a session's Err after Close.
var ErrClosed = errors.New("load: session closed")

// NewSession makes a client for t; it connects on Connect.
func NewSession(env *Env, t Target, on OnMessage) (Session, error) {
	if on == nil {
		on = func(string) {}
	}
	b := newBase(on)
	switch t {
	case Target{"cometkit", WebSocket}:
		return &ckWS{base: b, env: env}, nil
	case Target{"cometkit", EventStream}:
		return newCkHTTP(b, env, true), nil
	case Target{"cometkit", LongPoll}:
		return newCkHTTP(b, env, false), nil
	case Target{"sockjs", WebSocket}:
		return &sjWS{base: b, env: env}, nil
	case Target{"sockjs", EventStream}:
		return newSjHTTP(b, env, true), nil
	case Target{"sockjs", LongPoll}:
		return newSjHTTP(b, env, false), nil
	case Target{"centrifuge", WebSocket}:
		return &cfWS{base: b, env: env}, nil
	case Target{"socketio", WebSocket}:
		return &sioWS{base: b, env: env}, nil
	case Target{"socketio", LongPoll}:
		return newSioPoll(b, env), nil
	case Target{"raw", WebSocket}:
		return &rawWS{base: b, env: env}, nil
	case Target{"raw", LongPoll}:
		return newRawPoll(b, env), nil
	}
	return nil, fmt.Errorf("load: no client for %s", t)
}

// base is what every client shares: its welcome and end signals and its
// context, cancelled when it ends.
type base struct {
	on       OnMessage
	welcome  chan struct{}
	welcomed bool // reader only
	done     chan struct{}
	once     sync.Once
	err      error
	ctx      context.Context
	cancel   context.CancelFunc
}

func newBase(on OnMessage) *base {
	ctx, cancel := context.WithCancel(context.Background())
	return &base{on: on, welcome: make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// deliver hands an application message on; the first is the welcome.
func (b *base) deliver(msg string) {
	if !b.welcomed {
		b.welcomed = true
		close(b.welcome)
		return
	}
	b.on(msg)
}

// finish ends the session with err (the first call wins).
func (b *base) finish(err error) {
	b.once.Do(func() {
		b.err = err
		b.cancel()
		close(b.done)
	})
}

func (b *base) Done() <-chan struct{} { return b.done }

func (b *base) Err() error {
	select {
	case <-b.done:
		return b.err
	default:
		return nil
	}
}

// awaitWelcome waits for the welcome, the session's end, or ctx.
func (b *base) awaitWelcome(ctx context.Context) error {
	select {
	case <-b.welcome:
		return nil
	case <-b.done:
		return fmt.Errorf("ended before the welcome: %w", b.err)
	case <-ctx.Done():
		b.finish(ctx.Err())
		return fmt.Errorf("waiting for the welcome: %w", ctx.Err())
	}
}

// httpDo makes one request of a session through env's pooled client and
// returns the status and body. It stops with the session.
func (b *base) httpDo(env *Env, method, u, contentType, body string) (int, string, error) {
	var rd io.Reader
	if method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(b.ctx, method, u, rd)
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	return resp.StatusCode, string(out), nil
}

// httpWant is httpDo for a request whose answer must have one of the
// statuses in want: any other is an error, "HTTP <status>: <body>".
func (b *base) httpWant(env *Env, method, u, contentType, body string, want ...int) (string, error) {
	status, answer, err := b.httpDo(env, method, u, contentType, body)
	if err == nil && !slices.Contains(want, status) {
		err = fmt.Errorf("HTTP %d: %s", status, answer)
	}
	return answer, err
}

// poster runs one HTTP send at a time for a polling or streaming client:
// kick asks for a flush; while one is in flight, later kicks coalesce into
// the next, which takes everything queued by then (one request).
type poster struct {
	mu      sync.Mutex
	running bool
	dirty   bool
	flush   func() error
	fail    func(error)
}

func (p *poster) kick() {
	p.mu.Lock()
	p.dirty = true
	if p.running {
		p.mu.Unlock()
		return
	}
	p.running = true
	p.mu.Unlock()
	go p.loop()
}

func (p *poster) loop() {
	for {
		p.mu.Lock()
		if !p.dirty {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.dirty = false
		p.mu.Unlock()
		if err := p.flush(); err != nil {
			p.fail(err)
			p.mu.Lock()
			p.running = false
			p.mu.Unlock()
			return
		}
	}
}
