// Command faultserver is the browser end-to-end tests' server
// (client-js/test/e2e.test.js): the echo application mounted at /echo, with
// faults a hostile network inflicts switched on and off over HTTP.
//
// It listens on two ports of 127.0.0.1, prints one JSON line to stdout
//
//	{"url":"http://127.0.0.1:P","echo":"http://127.0.0.1:P/echo","other":"http://127.0.0.1:Q", ...}
//
// and serves until its stdin closes. The main listener (P) serves /echo, the
// test page /page.html and the control endpoint /_fault; the other listener
// (Q) serves only /page.html, so that a page can be on another origin, which
// the cometkit server allows (Options.AllowedOrigins). A third listener
// serves /_fault alone ("fault" in the JSON line): it is exempt from kill and
// down, so a test can always reach it.
//
// The application: "flood N [MS]" sends N messages "0".."N-1", MS
// milliseconds apart (default 3, so that a flood is still running while
// a test cuts connections); "close" ends the session (code 1000); anything
// else is echoed.
//
// POST /_fault?QUERY, where QUERY is any of:
//
//	ws=hang     WebSocket upgrades under /echo (path ending in /websocket) are
//	            hijacked and never answered: a proxy swallowing the upgrade.
//	es=buffer   event streams (path ending in /eventstream) get their headers
//	            but not their body, which is held back until the stream ends:
//	            a buffering proxy.
//	kill=1      close every client connection of both listeners now, hijacked
//	            ones (WebSocket, event stream, hung upgrades) included; only the
//	            connection carrying this request is spared.
//	down=MS     for MS ms from now, every new connection to either listener is
//	            closed as soon as it is accepted: the server is unreachable.
//	            With kill=1, a browser's silent retry of a request whose
//	            keep-alive connection was cut (Chromium resends it once on a
//	            new connection) fails too, so the client sees the cut.
//	reset       clear ws, es and down (applied before the others in the query).
//
// The answer is a JSON object with the faults now in force and, for kill,
// how many connections were closed. GET /_fault reports the state only.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cometkit/cometkit/server"
	"github.com/cometkit/cometkit/session"
)

// hub is the server's hub, for the app's topic commands.
var hub *server.Hub

// app is the application: echo, plus "flood N [MS]", "close", and for
// topics: "sub T" (follow topic T, answered "subscribed T"), "pub T N W"
// (publish W-0..W-N-1 to T) and "lose T N W" (forget this session at once,
// as a node that went away would, then publish as pub does).
func app(s *session.Session) {
	ctx := s.Context()
	for {
		msg, err := s.Recv(ctx)
		if err != nil {
			return
		}
		f := strings.Fields(msg)
		switch {
		case msg == "close":
			_ = s.Close(session.CodeNormal, "closed on request")
			return
		case len(f) == 2 && f[0] == "sub":
			if err := hub.Subscribe(ctx, s, f[1]); err != nil && !errors.Is(err, server.ErrHistoryGone) {
				return
			}
			if err := s.Send(ctx, "subscribed "+f[1]); err != nil {
				return
			}
		case len(f) == 4 && (f[0] == "pub" || f[0] == "lose"):
			n, _ := strconv.Atoi(f[2])
			if f[0] == "lose" {
				s.Terminate(session.CodeSessionUnknown, "session forgotten")
			}
			for i := 0; i < n; i++ {
				if _, err := hub.Publish(context.Background(), f[1], f[3]+"-"+strconv.Itoa(i)); err != nil {
					return
				}
			}
		case strings.HasPrefix(msg, "flood "):
			if !flood(ctx, s, msg) {
				return
			}
		default:
			if err := s.Send(ctx, msg); err != nil {
				return
			}
		}
	}
}

// flood sends "0".."N-1" for "flood N [MS]", MS ms apart (default 3). It
// runs in the session's handler goroutine, so messages the client sends
// meanwhile are echoed after the flood: in order, behind it.
func flood(ctx context.Context, s *session.Session, msg string) bool {
	f := strings.Fields(msg)
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return s.Send(ctx, "bad flood: "+msg) == nil
	}
	pace := 3 * time.Millisecond
	if len(f) > 2 {
		ms, err := strconv.Atoi(f[2])
		if err != nil || ms < 0 {
			return s.Send(ctx, "bad flood: "+msg) == nil
		}
		pace = time.Duration(ms) * time.Millisecond
	}
	for i := 0; i < n; i++ {
		if err := s.Send(ctx, strconv.Itoa(i)); err != nil {
			return false
		}
		if pace > 0 {
			select {
			case <-time.After(pace):
			case <-ctx.Done():
				return false
			}
		}
	}
	return true
}

// conns is the registry of every accepted connection of both listeners.
// Connections are wrapped at Accept, so a hijacked connection (net/http
// hands the handler the very net.Conn the listener returned) stays in the
// registry until somebody closes it.
type conns struct {
	mu   sync.Mutex
	set  map[*trackedConn]struct{}
	down atomic.Int64 // until this time (Unix ns), new connections are closed at once
	shut atomic.Int64 // connections closed at accept so far
}

type trackedConn struct {
	net.Conn
	reg  *conns
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.reg.mu.Lock()
		delete(c.reg.set, c)
		c.reg.mu.Unlock()
	})
	return c.Conn.Close()
}

type trackingListener struct {
	net.Listener
	reg *conns
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	for err == nil && time.Now().UnixNano() < l.reg.down.Load() {
		_ = c.Close() // "down": the connection is refused as soon as it is made
		l.reg.shut.Add(1)
		c, err = l.Listener.Accept()
	}
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, reg: l.reg}
	if os.Getenv("FAULTSERVER_TRACE") != "" {
		slog.Info("trace: accepted", "remote", c.RemoteAddr().String(), "local", c.LocalAddr().String())
	}
	l.reg.mu.Lock()
	l.reg.set[tc] = struct{}{}
	l.reg.mu.Unlock()
	return tc, nil
}

// killAll closes every registered connection except spare.
func (r *conns) killAll(spare net.Conn) int {
	r.mu.Lock()
	all := make([]*trackedConn, 0, len(r.set))
	for c := range r.set {
		if net.Conn(c) != spare {
			all = append(all, c)
		}
	}
	r.mu.Unlock()
	for _, c := range all {
		_ = c.Close()
	}
	return len(all)
}

func (r *conns) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.set)
}

type connKey struct{}

// faults is what /_fault switched on.
type faults struct {
	wsHang       atomic.Bool
	esBuffer     atomic.Bool
	hung         atomic.Int64 // upgrades swallowed so far
	hungOpen     atomic.Int64 // of which the client has not closed yet
	buffered     atomic.Int64 // event streams held back so far
	bufferedOpen atomic.Int64 // of which still open
	released     atomic.Int64 // buffered streams whose upstream ended (body sent)
	abandoned    atomic.Int64 // buffered streams the client closed first
	kills        atomic.Int64 // kill=1 requests so far
}

func (f *faults) state() map[string]any {
	ws, es := "", ""
	if f.wsHang.Load() {
		ws = "hang"
	}
	if f.esBuffer.Load() {
		es = "buffer"
	}
	return map[string]any{"ws": ws, "es": es, "kills": f.kills.Load(),
		"hung": f.hung.Load(), "hung_open": f.hungOpen.Load(),
		"buffered": f.buffered.Load(), "buffered_open": f.bufferedOpen.Load(),
		"buffered_released": f.released.Load(), "buffered_abandoned": f.abandoned.Load()}
}

// inject wraps the cometkit handler (mounted at /echo) with the faults.
func (f *faults) inject(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimSuffix(r.URL.Path, "/")
		switch {
		case f.wsHang.Load() && strings.HasSuffix(path, "/websocket"):
			f.hang(w, r, log)
		case f.esBuffer.Load() && strings.HasSuffix(path, "/eventstream") && r.Method == http.MethodGet:
			f.buffer(next, w, r, log)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// hang takes the connection and never answers: the client sees its upgrade
// request vanish. The connection is closed when the client gives up (or on
// kill=1).
func (f *faults) hang(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	f.hung.Add(1)
	f.hungOpen.Add(1)
	log.Info("fault: swallowing WebSocket upgrade", "path", r.URL.Path, "remote", r.RemoteAddr)
	go func() {
		_, _ = io.Copy(io.Discard, conn) // until the client (or kill=1) closes it
		_ = conn.Close()
		f.hungOpen.Add(-1)
		log.Info("fault: swallowed upgrade ended", "remote", r.RemoteAddr)
	}()
}

// bufferWriter is the buffering proxy's side of the upstream response: the
// real event-stream handler writes into it, and its flushes go nowhere.
type bufferWriter struct {
	mu     sync.Mutex
	header http.Header
	status int
	body   []byte
	headed chan struct{} // closed at the first WriteHeader or Write
	once   sync.Once
}

func (b *bufferWriter) Header() http.Header { return b.header }

func (b *bufferWriter) WriteHeader(code int) {
	b.once.Do(func() {
		b.mu.Lock()
		b.status = code
		b.mu.Unlock()
		close(b.headed)
	})
}

func (b *bufferWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	b.mu.Lock()
	b.body = append(b.body, p...)
	b.mu.Unlock()
	return len(p), nil
}

// Flush is what a buffering proxy does with the upstream's flushes: nothing.
func (b *bufferWriter) Flush() {}

// buffer answers an event stream the way a buffering proxy does: the
// upstream's status and headers go out at once, its body is held until the
// upstream response ends (for a live stream: never). The upstream handler
// runs until the client goes away or the stream ends.
func (f *faults) buffer(next http.Handler, w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	f.buffered.Add(1)
	f.bufferedOpen.Add(1)
	defer f.bufferedOpen.Add(-1)
	log.Info("fault: buffering event stream", "path", r.URL.Path, "remote", r.RemoteAddr)
	bw := &bufferWriter{header: http.Header{}, headed: make(chan struct{})}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		next.ServeHTTP(bw, r.WithContext(ctx))
	}()
	select {
	case <-bw.headed:
	case <-done:
	case <-r.Context().Done():
		return
	}
	bw.mu.Lock()
	status := bw.status
	bw.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	h := w.Header()
	for k, v := range bw.header {
		if k != "Content-Length" {
			h[k] = v
		}
	}
	w.WriteHeader(status)
	_ = http.NewResponseController(w).Flush() // the headers, and nothing else
	select {
	case <-done: // the upstream response ended: a proxy now sends what it held
		bw.mu.Lock()
		body := bw.body
		bw.mu.Unlock()
		_, _ = w.Write(body)
		f.released.Add(1)
		log.Info("fault: buffered event stream ended; body released", "bytes", len(body), "remote", r.RemoteAddr)
	case <-r.Context().Done():
		cancel()
		<-done
		f.abandoned.Add(1)
		log.Info("fault: buffered event stream abandoned by the client", "remote", r.RemoteAddr)
	}
}

// control serves /_fault.
func control(f *faults, reg *conns, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{}
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost:
			q := r.URL.Query()
			for k := range q {
				switch k {
				case "ws", "es", "kill", "down", "reset":
				default:
					http.Error(w, "unknown fault "+strconv.Quote(k), http.StatusBadRequest)
					return
				}
			}
			if q.Has("reset") {
				f.wsHang.Store(false)
				f.esBuffer.Store(false)
				reg.down.Store(0)
			}
			if q.Has("ws") {
				switch v := q.Get("ws"); v {
				case "hang":
					f.wsHang.Store(true)
				case "", "ok":
					f.wsHang.Store(false)
				default:
					http.Error(w, "ws must be hang or ok", http.StatusBadRequest)
					return
				}
			}
			if q.Has("es") {
				switch v := q.Get("es"); v {
				case "buffer":
					f.esBuffer.Store(true)
				case "", "ok":
					f.esBuffer.Store(false)
				default:
					http.Error(w, "es must be buffer or ok", http.StatusBadRequest)
					return
				}
			}
			if q.Has("down") {
				ms, err := strconv.Atoi(q.Get("down"))
				if err != nil || ms < 0 || ms > 60000 {
					http.Error(w, "down must be 0..60000 (ms)", http.StatusBadRequest)
					return
				}
				reg.down.Store(time.Now().Add(time.Duration(ms) * time.Millisecond).UnixNano())
			}
			if q.Get("kill") == "1" {
				spare, _ := r.Context().Value(connKey{}).(net.Conn)
				n := reg.killAll(spare)
				f.kills.Add(1)
				out["killed"] = n
				log.Info("fault: killed every connection", "count", n)
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
			return
		}
		for k, v := range f.state() {
			out[k] = v
		}
		out["conns"] = reg.count()
		out["refused"] = reg.shut.Load()
		out["down_ms"] = max(0, (reg.down.Load()-time.Now().UnixNano())/1e6)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
	}
}

// trace logs every request as it arrives and when its handler returns
// (FAULTSERVER_TRACE=1), with its connection's remote address.
func trace(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := r.URL.Path
			if q := r.URL.Query(); q.Has("ack") {
				p += "?ack=" + q.Get("ack")
			}
			log.Info("trace: request", "method", r.Method, "path", p, "remote", r.RemoteAddr)
			next.ServeHTTP(w, r)
			log.Info("trace: handled", "method", r.Method, "path", p, "remote", r.RemoteAddr)
		})
	}
}

// page is the test page: it loads the client from the main listener and
// does nothing else; the tests drive it.
func page(clientURL string) http.HandlerFunc {
	body := []byte(`<!doctype html>
<html><head><meta charset="utf-8"><title>cometkit e2e</title></head>
<body>
<script src="` + html.EscapeString(clientURL) + `" charset="utf-8"></script>
</body></html>
`)
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	}
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("faultserver", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	mainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	otherLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	controlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	base := "http://" + mainLn.Addr().String()
	other := "http://" + otherLn.Addr().String()

	rt, err := server.New(server.HandlerFunc(app), server.Options{
		Logger:         log,
		HashKey:        []byte("faultserver-test-key-0123456789-abcdefghijklmnopqrstuvwxyz"),
		AllowedOrigins: []string{other},
	})
	if err != nil {
		return err
	}
	hub = rt.Hub()
	f := &faults{}
	reg := &conns{set: map[*trackedConn]struct{}{}}
	pg := page(base + "/echo/client.js")

	r := chi.NewRouter()
	if os.Getenv("FAULTSERVER_TRACE") != "" {
		r.Use(trace(log))
	}
	r.Get("/page.html", pg)
	r.HandleFunc("/_fault", control(f, reg, log))
	r.Mount("/echo", f.inject(rt, log))

	o := chi.NewRouter()
	o.Get("/page.html", pg)

	// The control listener serves /_fault only and is neither killed nor
	// taken down, so that a test can always reach it.
	c := chi.NewRouter()
	c.HandleFunc("/_fault", control(f, reg, log))

	connCtx := func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	servers := []*http.Server{
		{Handler: r, ReadHeaderTimeout: 10 * time.Second, ConnContext: connCtx, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		{Handler: o, ReadHeaderTimeout: 10 * time.Second, ConnContext: connCtx, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
	}
	controlSrv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second, ConnContext: connCtx}
	errc := make(chan error, 3)
	serve := func(hs *http.Server, ln net.Listener) {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}
	for i, ln := range []net.Listener{mainLn, otherLn} {
		go serve(servers[i], trackingListener{Listener: ln, reg: reg})
	}
	go serve(controlSrv, controlLn)
	controlURL := "http://" + controlLn.Addr().String()

	hello, _ := json.Marshal(map[string]any{
		"url":       base,
		"echo":      base + "/echo",
		"other":     other,
		"page":      base + "/page.html",
		"otherPage": other + "/page.html",
		"fault":     controlURL + "/_fault",
		"client":    base + "/echo/client.js",
		"pid":       os.Getpid(),
	})
	fmt.Println(string(hello))
	log.Info("faultserver listening", "url", base, "other", other)

	stdin := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		close(stdin)
	}()
	select {
	case <-stdin:
		log.Info("faultserver: stdin closed; stopping")
	case err := <-errc:
		return err
	}
	rt.Close()
	for _, hs := range append(servers, controlSrv) {
		_ = hs.Close()
	}
	reg.killAll(nil)
	return nil
}
