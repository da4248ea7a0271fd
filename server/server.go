// Package server is cometkit's http.Handler: it negotiates sessions, checks
// their tokens and origins, keeps the registry of live sessions, and hands
// each request to the transport that serves it. Mount it under any prefix:
//
//	r.Mount("/rt", srv)            // chi
//	mux.Handle("/rt/", srv)        // net/http
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	clientjs "github.com/cometkit/cometkit/client-js"
	"github.com/cometkit/cometkit/internal/httpx"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/eventstream"
	"github.com/cometkit/cometkit/transports/longpoll"
	"github.com/cometkit/cometkit/transports/websocket"
)

// Handler serves one session: ServeSession is called in its own goroutine
// when the session opens (its first transport attaches), and the session is
// closed with CodeNormal when it returns, as a net/http handler's return
// ends its request. Read with s.Recv, write with s.Send.
type Handler interface {
	ServeSession(s *session.Session)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(s *session.Session)

// ServeSession calls f(s).
func (f HandlerFunc) ServeSession(s *session.Session) { f(s) }

// Options configure a Server. The zero value is a working same-origin
// server with random token keys.
type Options struct {
	// Session holds the limits and timings of every session.
	Session session.Config
	// HashKey signs session tokens (32 or 64 random bytes). Give every node
	// of a deployment the same key, and keep it across restarts, or tokens
	// minted elsewhere are refused. If nil, a random key is made and a
	// warning is logged.
	HashKey []byte
	// BlockKey, if set (16, 24 or 32 bytes), also encrypts tokens (AES).
	BlockKey []byte
	// Node names this server in the tokens it mints (default: random).
	Node string
	// AllowedOrigins lists the web origins, besides the server's own, whose
	// pages may use it: "https://app.example.com", "https://*.example.com",
	// or "*" for any. Cross-origin requests from them get CORS headers.
	AllowedOrigins []string
	// CheckOrigin, if set, replaces the origin policy above entirely.
	CheckOrigin func(r *http.Request, origin string) bool
	// MaxSessions bounds live sessions (default 100,000); negotiation past
	// it is answered 503.
	MaxSessions int
	// MaxBodyBytes bounds a send's body (default 1 MiB).
	MaxBodyBytes int64
	// LongPoll tunes the long-polling transport (its MaxBodyBytes defaults
	// to the one above, its Clock to the session's, its Logger to the
	// server's).
	LongPoll longpoll.Options
	// Logger receives the server's log lines (default slog.Default()).
	Logger *slog.Logger
	// EventStream tunes the event-stream transport (its Clock and Logger
	// default to the session's and the server's).
	EventStream eventstream.Options
	// WebSocket tunes the WebSocket transport (its MaxMessageBytes defaults
	// to the session's, its Logger to the server's).
	WebSocket websocket.Options
	// Broker carries topic messages between nodes and keeps their history
	// (default: a MemoryBroker, for one process).
	Broker Broker
	// OnPresence, if set, is told when a session joins or leaves a topic on
	// this node. It must not block.
	OnPresence func(PresenceEvent)
	// DisableTopicResume stops Hub.Subscribe from replaying a topic's
	// history from the offset the client says it had (see Hub.Subscribe).
	// The client picks that offset: with resume on, a session the
	// application subscribes to a topic can read whatever of the topic's
	// history the broker still keeps (default 5 minutes). Set this where a
	// member must not see what was published before it joined, and call
	// SubscribeFrom with offsets the application trusts instead.
	DisableTopicResume bool
}

// Server is the http.Handler. Create it with New.
type Server struct {
	handler  Handler
	cfg      session.Config
	hooks    session.Hooks
	tokens   *tokens
	node     string
	origins  *originPolicy
	maxSess  int
	log      *slog.Logger
	longpoll *longpoll.Transport
	events   *eventstream.Transport
	ws       *websocket.Transport
	hub      *Hub

	mu       sync.RWMutex
	sessions map[string]entry
	changed  chan struct{} // closed and replaced when a session closes or flushes, or a handler returns
	closing  bool
	running  int // handlers running

	handlers sync.WaitGroup // running ServeSession calls
	stats    counters
}

// entry is a live session and the sum of the token minted for it at
// negotiation: a request that bears exactly that token needs no signature
// check, which would otherwise be an HMAC and two base64 decodings on every
// poll and send.
type entry struct {
	sess *session.Session
	sum  tokenSum // zero for a raw WebSocket's session, which has no token
}

// tokenSum is the first half of a token's SHA-256: what a session's entry
// keeps of it, rather than the ~150-byte token. A token with the same sum is
// that token (finding another would be a second preimage of 128 bits).
type tokenSum [16]byte

func sumToken(tok []byte) (sum tokenSum) {
	h := sha256.Sum256(tok)
	copy(sum[:], h[:])
	return sum
}

// bears reports whether r's token (t=) has this sum, without allocating.
func (sum tokenSum) bears(r *http.Request) bool {
	var buf [512]byte // a token is ~150 bytes, ~250 encrypted (BlockKey)
	tok, ok := httpx.QueryAppend(buf[:0], r.URL.RawQuery, "t")
	if !ok || sum == (tokenSum{}) {
		return false
	}
	got := sumToken(tok)
	return subtle.ConstantTimeCompare(got[:], sum[:]) == 1
}

// New returns a Server calling h for every session.
func New(h Handler, opts Options) (*Server, error) {
	if h == nil {
		return nil, errors.New("server: nil handler")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	hashKey := opts.HashKey
	if hashKey == nil {
		hashKey = randomBytes(64)
		log.Warn("cometkit: no HashKey given; using a random one, so session tokens will not survive a restart or work across nodes")
	}
	if len(hashKey) < 32 {
		return nil, fmt.Errorf("server: HashKey is %d bytes; give at least 32 random bytes", len(hashKey))
	}
	switch len(opts.BlockKey) {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("server: BlockKey is %d bytes; it must be 16, 24 or 32", len(opts.BlockKey))
	}
	node := opts.Node
	if node == "" {
		node = fmt.Sprintf("%x", randomBytes(6))
	}
	if strings.Contains(node, "|") {
		return nil, errors.New("server: Node may not contain '|'")
	}
	if err := opts.Session.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		handler:  h,
		cfg:      opts.Session.Defaults(),
		tokens:   newTokens(hashKey, opts.BlockKey),
		node:     node,
		origins:  newOriginPolicy(opts.AllowedOrigins, opts.CheckOrigin),
		maxSess:  opts.MaxSessions,
		log:      log,
		sessions: map[string]entry{},
		changed:  make(chan struct{}),
	}
	if s.maxSess <= 0 {
		s.maxSess = 100_000
	}
	lpo := opts.LongPoll
	if lpo.MaxBodyBytes <= 0 {
		lpo.MaxBodyBytes = opts.MaxBodyBytes
	}
	if lpo.Clock == nil {
		lpo.Clock = s.cfg.Clock
	}
	if lpo.Logger == nil {
		lpo.Logger = log
	}
	s.longpoll = longpoll.New(lpo)
	es := opts.EventStream
	if es.Clock == nil {
		es.Clock = s.cfg.Clock
	}
	if es.Logger == nil {
		es.Logger = log
	}
	s.events = eventstream.New(es)
	wso := opts.WebSocket
	if wso.MaxMessageBytes <= 0 {
		wso.MaxMessageBytes = s.cfg.MaxMessageBytes
	}
	if wso.Logger == nil {
		wso.Logger = log
	}
	s.ws = websocket.New(wso)
	broker := opts.Broker
	if broker == nil {
		broker = &MemoryBroker{}
	}
	s.hub = newHub(broker, opts.OnPresence, opts.DisableTopicResume)
	s.hooks = session.Hooks{Open: s.sessionOpened, Flushed: s.signalChange, Closed: s.sessionClosed,
		InboxFull: func(*session.Session) { s.stats.inboxWaits.Add(1) }}
	return s, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

// ServeHTTP routes by the end of the path, so the server works under any
// mount prefix without being told it:
//
//	.../negotiate          start a session
//	.../client.js          the browser client
//	.../s/{id}/poll        long-poll receive (GET)
//	.../s/{id}/send        long-poll send (POST; GET for JSONP)
//	.../s/{id}/eventstream event-stream receive (GET)
//	.../s/{id}/websocket   the session over WebSocket, one frame per message
//	.../negotiate/websocket   negotiate, then the session over this WebSocket
//	.../negotiate/eventstream negotiate, then the session's event stream
//	.../websocket          raw WebSocket: plain messages, a session per connection
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	origin := requestOrigin(r)
	if !s.origins.allowed(r, origin) {
		s.refuse(w, r, http.StatusForbidden, "origin_not_allowed", "origin "+strconv.Quote(origin)+" may not use this server")
		return
	}
	s.setCORS(w, r, origin)
	if r.Method == http.MethodOptions {
		s.preflight(w, r)
		return
	}
	if strings.HasSuffix(path, "/negotiate") {
		s.negotiate(w, r)
		return
	}
	if rest, op := cutLast(path); strings.HasSuffix(rest, "/negotiate") && (op == websocket.Name || op == eventstream.Name) {
		s.negotiateOn(w, r, op)
		return
	}
	if strings.HasSuffix(path, "/client.js") {
		serveClient(w, r)
		return
	}
	// .../s/{id}/{op}
	rest, op := cutLast(path)
	rest, id := cutLast(rest)
	_, marker := cutLast(rest)
	if marker != "s" || id == "" {
		if op == "websocket" {
			s.serveRaw(w, r)
			return
		}
		s.refuse(w, r, http.StatusNotFound, "not_found", "no cometkit endpoint at "+r.URL.Path)
		return
	}
	switch op {
	case "websocket":
		if sess := s.authorize(w, r, id, s.ws.Refuse); sess != nil {
			s.ws.ServeSession(w, r, sess)
		}
	case "poll", "eventstream":
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, OPTIONS")
			s.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", op+" takes GET")
			return
		}
		if op == "poll" {
			if sess := s.authorize(w, r, id, s.longpoll.Refuse); sess != nil {
				s.longpoll.ServePoll(w, r, sess)
			}
			return
		}
		if sess := s.authorize(w, r, id, s.events.Refuse); sess != nil {
			s.events.ServeStream(w, r, sess)
		}
	case "send":
		if sess := s.authorize(w, r, id, s.longpoll.Refuse); sess != nil {
			s.longpoll.ServeSend(w, r, sess)
		}
	default:
		s.refuse(w, r, http.StatusNotFound, "not_found", "unknown session endpoint "+strconv.Quote(op))
	}
}

// serveClient serves the embedded browser client. With ?v= equal to its
// version it may be cached for a year; otherwise for five minutes, then
// revalidated by ETag.
func serveClient(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin") // cached, and its CORS headers depend on the Origin
	etag := `"` + clientjs.Version + `"`
	h.Set("ETag", etag)
	h.Set("Content-Type", "application/javascript; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	// Any page may load the client, like any script.
	h.Set("Access-Control-Allow-Origin", "*")
	if r.URL.Query().Get("v") == clientjs.Version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=300")
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(clientjs.Bundle)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(clientjs.Bundle)
	}
}

// ClientVersion is the embedded client's version, for a script tag that may
// be cached for ever: <script src="/rt/client.js?v=...">.
func ClientVersion() string { return clientjs.Version }

// serveRaw gives a plain WebSocket client a session of its own: no
// negotiation, no token, no framing, no resume. The origin policy applies.
func (s *Server) serveRaw(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		s.refuse(w, r, http.StatusUpgradeRequired, "upgrade_required", "this endpoint speaks WebSocket only")
		return
	}
	sess, err := s.create(r, session.NewID(), "", nil)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		s.refuse(w, r, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	s.ws.ServeRaw(w, r, sess)
}

func cutLast(p string) (rest, last string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// refuser answers, in a transport's own format, a request whose session is gone.
type refuser func(w http.ResponseWriter, r *http.Request, code session.Code, reason string)

// authorize checks the request's token against the session named in its
// path and returns the live session, or answers the request and returns nil.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, id string, gone refuser) *session.Session {
	s.mu.RLock()
	e, ok := s.sessions[id]
	s.mu.RUnlock()
	if ok && e.sum.bears(r) {
		return e.sess // the very token we signed for this session
	}
	raw, _ := httpx.Query(r.URL.RawQuery, "t")
	if raw == "" {
		s.refuse(w, r, http.StatusUnauthorized, "missing_token", "session requests need their token in t=")
		return nil
	}
	tok, err := s.tokens.check(raw)
	if err != nil {
		s.stats.badTokens.Add(1)
		s.refuse(w, r, http.StatusForbidden, "bad_token", "the session token is invalid")
		return nil
	}
	if tok.SessionID != id {
		s.stats.badTokens.Add(1)
		s.refuse(w, r, http.StatusForbidden, "foreign_token", "the session token belongs to another session")
		return nil
	}
	s.mu.RLock()
	sess := s.sessions[id].sess
	s.mu.RUnlock()
	if sess == nil {
		// Signed by us, so it was ours; now it is gone: the client must reset.
		s.stats.resets.Add(1)
		s.log.Info("cometkit: request for unknown session; answering reset", "session", id, "remote", r.RemoteAddr)
		gone(w, r, session.CodeSessionUnknown, "session unknown or expired")
		return nil
	}
	return sess
}

// negotiateAnswer is the body of a negotiate answer (docs/PROTOCOL.md).
type negotiateAnswer struct {
	Version    int      `json:"v"`
	SessionID  string   `json:"sid"`
	Token      string   `json:"token"`
	Transports []string `json:"transports"`
	// Milliseconds, as browsers count them.
	Heartbeat  int64 `json:"heartbeat"`
	Disconnect int64 `json:"disconnect"`
	MaxMessage int   `json:"maxMessage"`
}

// negotiate starts a session: GET or POST, optionally JSONP with callback=.
func (s *Server) negotiate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		s.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "negotiate takes GET or POST")
		return
	}
	q := r.URL.Query()
	callback := ""
	if q.Has("callback") {
		callback = q.Get("callback")
		if !longpoll.ValidCallback(callback) {
			s.refuse(w, r, http.StatusBadRequest, "bad_callback", "JSONP callback must match ^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")
			return
		}
		// A script tag carries no Origin, and its answer (the token) is
		// readable by any page: only pages the policy allows may have it.
		if r.Header.Get("Origin") == "" {
			ref := refererOrigin(r)
			if ref == "" || !s.origins.allowed(r, ref) {
				s.refuse(w, r, http.StatusForbidden, "origin_not_allowed",
					"JSONP negotiation needs a Referer from an allowed origin")
				return
			}
		}
	}
	_, body := s.startSession(w, r, q)
	if body == nil {
		return
	}
	h := w.Header()
	httpx.NoCache(h)
	if callback != "" {
		body = append(append([]byte("/**/"+callback+"("), body...), ");"...)
		h.Set("Content-Type", "application/javascript; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// negotiateOn is negotiate and the session's first connection in one
// exchange: GET .../negotiate/websocket[?topics=] upgrades, GET
// .../negotiate/eventstream[?topics=][&pad=1] streams, and the first frame
// is the negotiate answer (an o frame). A browser saves a round trip; the
// server, an HTTP request per connect.
func (s *Server) negotiateOn(w http.ResponseWriter, r *http.Request, op string) {
	if op == websocket.Name && !websocket.IsUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		s.refuse(w, r, http.StatusUpgradeRequired, "upgrade_required", "this endpoint speaks WebSocket only")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, OPTIONS")
		s.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "negotiate/"+op+" takes GET")
		return
	}
	sess, body := s.startSession(w, r, r.URL.Query())
	if body == nil {
		return
	}
	if op == websocket.Name {
		s.ws.ServeOpen(w, r, sess, string(body))
		return
	}
	s.events.ServeOpen(w, r, sess, string(body))
}

// startSession makes a session for a negotiation: it reads the topics the
// client followed, mints the token and registers the session, and returns
// it with its negotiate answer (JSON), or refuses the request and returns
// a nil answer.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, q url.Values) (*session.Session, []byte) {
	offsets, err := parseTopicOffsets(q.Get("topics"))
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, "bad_topics", err.Error())
		return nil, nil
	}
	id := session.NewID()
	tok, err := s.tokens.mint(token{SessionID: id, Node: s.node})
	if err != nil {
		s.log.Error("cometkit: negotiate failed", "err", err)
		s.refuse(w, r, http.StatusInternalServerError, "internal", "could not start a session")
		return nil, nil
	}
	sess, err := s.create(r, id, tok, offsets)
	if err != nil {
		if errors.Is(err, errFull) || errors.Is(err, errShuttingDown) {
			w.Header().Set("Retry-After", "5")
			s.refuse(w, r, http.StatusServiceUnavailable, "unavailable", err.Error())
			return nil, nil
		}
		s.log.Error("cometkit: negotiate failed", "err", err)
		s.refuse(w, r, http.StatusInternalServerError, "internal", "could not start a session")
		return nil, nil
	}
	body, _ := json.Marshal(negotiateAnswer{
		Version:    1,
		SessionID:  sess.ID(),
		Token:      tok,
		Transports: []string{websocket.Name, eventstream.Name, longpoll.Name},
		Heartbeat:  s.cfg.HeartbeatInterval.Milliseconds(),
		Disconnect: s.cfg.DisconnectTimeout.Milliseconds(),
		MaxMessage: s.cfg.MaxMessageBytes,
	})
	return sess, body
}

var (
	errFull         = errors.New("too many sessions; try again later")
	errShuttingDown = errors.New("server is shutting down")
)

// credentialsGranted is r's header without its credentials (Cookie,
// Authorization) when r comes from another origin that the policy allows
// only by "*": such an origin gets no credentials (PROTOCOL.md section 9).
// CORS makes a browser keep a credentialed answer from such a page, but a
// WebSocket handshake carries the user's cookies from any page and the page
// reads what comes back: without this, a session made for it would hold
// the victim's cookies (cross-site WebSocket hijacking).
func (s *Server) credentialsGranted(r *http.Request) http.Header {
	if s.grantsCredentials(r, requestOrigin(r)) {
		return r.Header
	}
	if r.Header.Get("Cookie") == "" && r.Header.Get("Authorization") == "" {
		return r.Header
	}
	h := r.Header.Clone()
	h.Del("Cookie")
	h.Del("Authorization")
	return h
}

// create registers a new session with this ID and the token minted for it;
// offsets are where its client was in the topics it followed before.
func (s *Server) create(r *http.Request, id, token string, offsets map[string]uint64) (*session.Session, error) {
	info := session.Info{
		RemoteAddr:   r.RemoteAddr,
		Header:       textproto.MIMEHeader(s.credentialsGranted(r)), // session.New keeps a copy of its own
		RequestURI:   r.RequestURI,
		TopicOffsets: offsets,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, errShuttingDown
	}
	if len(s.sessions) >= s.maxSess {
		return nil, errFull
	}
	sess := session.New(id, info, &s.cfg, &s.hooks)
	e := entry{sess: sess}
	if token != "" {
		e.sum = sumToken([]byte(token))
	}
	s.sessions[id] = e
	s.stats.created.Add(1)
	return sess, nil
}

func (s *Server) sessionOpened(sess *session.Session) {
	s.stats.opened.Add(1)
	s.log.Debug("cometkit: session open", "session", sess.ID(), "transport", sess.Transport(), "remote", sess.RemoteAddr())
	s.mu.Lock()
	if s.closing {
		// Close or Shutdown has begun and is ending this session; a handler
		// started now could outlive their wait for handlers.
		s.mu.Unlock()
		return
	}
	s.handlers.Add(1)
	s.running++
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			s.running--
			s.mu.Unlock()
			s.handlers.Done()
			s.signalChange(sess)
		}()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("cometkit: session handler panicked", "session", sess.ID(), "panic", p)
				sess.Close(session.CodeInternalError, "handler failed")
			}
		}()
		s.handler.ServeSession(sess)
		sess.Close(session.CodeNormal, "")
	}()
}

func (s *Server) sessionClosed(sess *session.Session) {
	s.hub.drop(sess)
	s.mu.Lock()
	if s.sessions[sess.ID()].sess == sess {
		delete(s.sessions, sess.ID())
	}
	s.mu.Unlock()
	s.signalChange(sess)
	s.stats.closed.Add(1)
	if ce, ok := sess.Err().(*session.CloseError); ok {
		s.log.Debug("cometkit: session closed", "session", sess.ID(), "code", int(ce.Code), "reason", ce.Reason, "by_client", ce.ByClient)
	}
}

// signalChange wakes Shutdown to look at the sessions again.
func (s *Server) signalChange(*session.Session) {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Hub is where sessions subscribe to topics and messages are published to them.
func (s *Server) Hub() *Hub { return s.hub }

// Session returns the live session with this ID, or nil.
func (s *Server) Session(id string) *session.Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[id].sess
}

// Len is the number of live sessions (open, connecting or closing).
func (s *Server) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sessions)
}

// Shutdown stops negotiation, closes every session with CodeGoingAway (so
// clients come back, to another node if there is one), and waits until every
// session is freed and every handler has returned, or ctx ends; then it
// frees what is left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, sess := range s.stop() {
		sess.Close(session.CodeGoingAway, "server shutting down")
	}
	// Wait until every client has been handed its close frame (or its
	// session is gone), then free the rest without their linger.
	for {
		s.mu.RLock()
		waiting, changed := 0, s.changed
		for _, e := range s.sessions {
			if !e.sess.Flushed() {
				waiting++
			}
		}
		s.mu.RUnlock()
		if waiting == 0 {
			break
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		}
		break
	}
	for _, sess := range s.stop() {
		sess.Terminate(session.CodeGoingAway, "server shutting down")
	}
	for {
		s.mu.RLock()
		running, changed := s.running, s.changed
		s.mu.RUnlock()
		if running == 0 {
			// Freed sessions kicked their parked polls: their answers
			// are being written.
			if err := s.longpoll.WaitParked(ctx); err != nil {
				return err
			}
			return ctx.Err()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close frees every session at once with CodeGoingAway, without waiting for
// clients to collect their close frames, and waits for the handlers to
// return. Shutdown is the graceful way.
func (s *Server) Close() {
	for _, sess := range s.stop() {
		sess.Terminate(session.CodeGoingAway, "server closed")
	}
	s.handlers.Wait()
	// Every parked poll was kicked; wait for its answer to be written (at
	// most the long-poll WriteTimeout).
	_ = s.longpoll.WaitParked(context.Background())
}

// stop refuses new sessions and handlers from now on, and returns the live
// sessions, to act on outside the lock.
func (s *Server) stop() []*session.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	all := make([]*session.Session, 0, len(s.sessions))
	for _, e := range s.sessions {
		all = append(all, e.sess)
	}
	return all
}

// setCORS lets an allowed cross-origin page read the answer.
// Credentials (cookies) are granted only to origins named in the policy,
// never to "*": any page could otherwise act with the user's cookies.
// (Vary: Origin goes only on the client bundle's answer, the one answer a
// cache may store; the others are no-store, answers to POST or OPTIONS, or
// upgrades, and a header on every long-poll answer costs net/http and the
// client their share of parsing, cloning and sorting.)
func (s *Server) setCORS(w http.ResponseWriter, r *http.Request, origin string) {
	if origin == "" || sameOrigin(r, origin) {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if s.grantsCredentials(r, origin) {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// requestOrigin is the origin r says it comes from.
func requestOrigin(r *http.Request) string {
	if websocket.IsUpgrade(r) {
		return websocket.Origin(r) // hybi-07/08 sent Sec-WebSocket-Origin
	}
	return r.Header.Get("Origin")
}

// grantsCredentials reports whether a request from origin may carry the
// user's credentials: none (not a browser's cross-origin request), the
// server's own, or one the policy names; never one only "*" allows.
func (s *Server) grantsCredentials(r *http.Request, origin string) bool {
	return origin == "" || sameOrigin(r, origin) || s.origins.named(r, origin)
}

func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, name, message string) {
	s.log.Info("cometkit: refused", "status", status, "error", name, "message", message,
		"remote", r.RemoteAddr, "path", r.URL.Path)
	httpx.WriteError(w, status, httpx.ErrorBody{Error: name, Message: message})
}

// Stats are running totals, readable as plain values so that an expvar or
// Prometheus collector can export them without cometkit importing either.
type Stats struct {
	Sessions  int    // live now
	Created   uint64 // negotiated since start
	Opened    uint64 // reached Open
	Closed    uint64 // reached Closed
	Resets    uint64 // requests for a session that was gone (client told to reset)
	BadTokens uint64 // requests refused for a bad or foreign token
	// InboxWaits counts client messages that had to wait because the
	// application had not yet Recv'd the session's earlier ones (the inbox
	// held session.Config.MaxInbound): backpressure on the client, and a
	// sign of an application that reads too slowly when it keeps growing.
	InboxWaits uint64
	// ParkedPolls are long polls waiting now with their connections taken
	// off net/http (longpoll.Options.ParkAfter).
	ParkedPolls int
}

type counters struct {
	created, opened, closed, resets, badTokens, inboxWaits atomic.Uint64
}

// Stats returns the server's running totals.
func (s *Server) Stats() Stats {
	parked, _ := s.longpoll.ParkStats()
	return Stats{
		Sessions:   s.Len(),
		Created:    s.stats.created.Load(),
		Opened:     s.stats.opened.Load(),
		Closed:     s.stats.closed.Load(),
		Resets:     s.stats.resets.Load(),
		BadTokens:  s.stats.badTokens.Load(),
		InboxWaits: s.stats.inboxWaits.Load(),

		ParkedPolls: parked.Parked,
	}
}

// Bounds of a negotiation's topics parameter.
const (
	maxTopicOffsets      = 64
	maxTopicOffsetsBytes = 8 << 10
)

// parseTopicOffsets reads the negotiate parameter topics: a JSON object from
// topic name to the offset, as a decimal string (JavaScript numbers cannot
// hold every 64-bit offset), of the last message the client had of it.
func parseTopicOffsets(v string) (map[string]uint64, error) {
	if v == "" {
		return nil, nil
	}
	if len(v) > maxTopicOffsetsBytes {
		return nil, fmt.Errorf("topics is over %d bytes", maxTopicOffsetsBytes)
	}
	var raw map[string]string
	if err := json.Unmarshal([]byte(v), &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("topics must be a JSON object of topic to offset string (%v)", err)
	}
	if len(raw) > maxTopicOffsets {
		return nil, fmt.Errorf("topics names %d topics, at most %d", len(raw), maxTopicOffsets)
	}
	out := make(map[string]uint64, len(raw))
	for topic, off := range raw {
		if err := checkTopic(topic); err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(off, 10, 64)
		if err != nil || (len(off) > 1 && off[0] == '0') {
			return nil, fmt.Errorf("topics: offset of %q is not a canonical decimal: %q", topic, off)
		}
		out[topic] = n
	}
	return out, nil
}
