// Package servers holds the servers the benchmark compares: cometkit and its
// peers (sockjs-go, centrifuge, a socket.io Go server) and a raw floor
// (WebSocket and long-polling with no session layer). Each does the same
// small application — a welcome message to every new session, an echo of
// every message a client sends, and a broadcast on demand — set up the way
// its own documentation recommends, and shares its listener with the
// control endpoints the load generator drives:
//
//	GET  /_stats[?gc=1]                     memory, goroutines and open sessions, as JSON
//	GET  /_wait?sessions=N&timeout=30s      200 once N sessions are open (504 at the timeout)
//	POST /_broadcast?size=64[&count=1]      one message (or count) to every session
package servers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Impls lists the servers, cometkit first and the raw floor last.
var Impls = []string{"cometkit", "sockjs", "centrifuge", "socketio", "raw"}

// WelcomeText is the first message every session gets: a client is
// "connected" once it has it.
const WelcomeText = "welcome"

// Paths the load generator connects to, by implementation.
const (
	CometkitPrefix   = "/rt"                      // cometkit's mount point
	SockJSPrefix     = "/sockjs"                  // sockjs-go's prefix
	SocketIOPath     = "/socket.io/"              // engine.io's default path
	CentrifugePath   = "/connection/websocket"    // centrifuge's documented path
	RawWebSocketPath = "/ws"                      // the floor
	BroadcastTopic   = "all"                      // the topic or channel every session joins
	EchoEvent        = "echo"                     // socket.io event name for echoes
	BroadcastEvent   = "bcast"                    // socket.io event name for broadcasts
	WelcomeEvent     = "welcome"                  // socket.io event name for the welcome
	maxBroadcastSize = 1 << 16                    // bound on /_broadcast?size
	maxBroadcastN    = 100_000                    // bound on /_broadcast?count
	defaultWait      = 30 * time.Second           // /_wait without timeout
	maxWait          = 10 * time.Minute           // bound on /_wait?timeout
	shutdownWait     = 2 * time.Second            // graceful part of an exit
	readHeaderTime   = 10 * time.Second           // the HTTP server's header limit
	payloadStampLen  = 20                         // digits of the UnixNano stamp
	stampPad         = "........................" // filler after the stamp
)

// impl is one server under test.
type impl interface {
	// handler serves the implementation's own paths.
	handler() http.Handler
	// broadcast sends payload to every open session and reports how many
	// sessions it was meant for.
	broadcast(ctx context.Context, payload string) (int, error)
}

// Stats is the answer of /_stats.
type Stats struct {
	RSSBytes   int64  `json:"rss_bytes"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Goroutines int    `json:"goroutines"`
	Sessions   int    `json:"sessions"`
}

// BroadcastReply is the answer of /_broadcast.
type BroadcastReply struct {
	Sessions  int   `json:"sessions"`   // sessions the last message was meant for
	Count     int   `json:"count"`      // messages sent to each
	ElapsedNs int64 `json:"elapsed_ns"` // server-side time for all of them
}

// WaitReply is the answer of /_wait.
type WaitReply struct {
	Sessions int `json:"sessions"`
}

// tracker counts open sessions and lets /_wait sleep until a count is
// reached: every change closes the current channel and makes a new one.
type tracker struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func newTracker() *tracker { return &tracker{changed: make(chan struct{})} }

func (t *tracker) add(d int) {
	t.mu.Lock()
	t.n += d
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// wait returns the count once it is at least n, or the count and ctx's
// error when ctx ends first.
func (t *tracker) wait(ctx context.Context, n int) (int, error) {
	for {
		t.mu.Lock()
		cur, ch := t.n, t.changed
		t.mu.Unlock()
		if cur >= n {
			return cur, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return cur, ctx.Err()
		}
	}
}

// Config is what Run needs.
type Config struct {
	Impl string
	Addr string    // listen address, e.g. 127.0.0.1:0
	Out  io.Writer // the listen address goes here as the first line
	Log  *slog.Logger
	// Pprof serves net/http/pprof under /debug/pprof/ too, to look into a
	// server under load (go tool pprof http://ADDR/debug/pprof/profile).
	Pprof bool
}

// Run serves impl until ctx ends. It prints the listen address as the first
// line of cfg.Out once the listener is up.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	t := newTracker()
	im, err := newImpl(ctx, cfg.Impl, t, log)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, readStats(r.URL.Query().Get("gc") == "1", t.count()))
	})
	mux.HandleFunc("GET /_wait", func(w http.ResponseWriter, r *http.Request) { serveWait(w, r, t) })
	mux.HandleFunc("POST /_broadcast", func(w http.ResponseWriter, r *http.Request) { serveBroadcast(w, r, im) })
	mux.Handle("/", im.handler())
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTime,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if _, err := fmt.Fprintln(cfg.Out, ln.Addr().String()); err != nil {
		ln.Close()
		return fmt.Errorf("printing the address: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serving %s: %w", cfg.Impl, err)
	case <-ctx.Done():
	}
	// A benchmark server has nothing to hand over: drop everything now,
	// so that the next measurement's server starts at once.
	_ = hs.Close()
	return nil
}

func newImpl(ctx context.Context, name string, t *tracker, log *slog.Logger) (impl, error) {
	switch name {
	case "cometkit":
		return newCometkit(t, log)
	case "sockjs":
		return newSockJS(t), nil
	case "centrifuge":
		return newCentrifuge(t, log)
	case "socketio":
		return newSocketIO(t), nil
	case "raw":
		return newRaw(ctx, t), nil
	}
	return nil, fmt.Errorf("unknown implementation %q (want one of %s)", name, strings.Join(Impls, ", "))
}

func serveWait(w http.ResponseWriter, r *http.Request, t *tracker) {
	n, err := strconv.Atoi(r.URL.Query().Get("sessions"))
	if err != nil || n < 0 {
		http.Error(w, "sessions must be a count", http.StatusBadRequest)
		return
	}
	timeout := defaultWait
	if v := r.URL.Query().Get("timeout"); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 || timeout > maxWait {
			http.Error(w, "timeout must be a duration up to 10m", http.StatusBadRequest)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	got, err := t.wait(ctx, n)
	status := http.StatusOK
	if err != nil {
		status = http.StatusGatewayTimeout
	}
	writeJSON(w, status, WaitReply{Sessions: got})
}

func serveBroadcast(w http.ResponseWriter, r *http.Request, im impl) {
	q := r.URL.Query()
	size, count := 64, 1
	var err error
	if v := q.Get("size"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < payloadStampLen || size > maxBroadcastSize {
			http.Error(w, fmt.Sprintf("size must be %d to %d", payloadStampLen, maxBroadcastSize), http.StatusBadRequest)
			return
		}
	}
	if v := q.Get("count"); v != "" {
		if count, err = strconv.Atoi(v); err != nil || count < 1 || count > maxBroadcastN {
			http.Error(w, fmt.Sprintf("count must be 1 to %d", maxBroadcastN), http.StatusBadRequest)
			return
		}
	}
	start := time.Now()
	n := 0
	for i := 0; i < count; i++ {
		if n, err = im.broadcast(r.Context(), Stamp(time.Now(), size)); err != nil {
			http.Error(w, fmt.Sprintf("broadcast %d of %d: %v", i+1, count, err), http.StatusInternalServerError)
			return
		}
	}
	writeJSON(w, http.StatusOK, BroadcastReply{Sessions: n, Count: count, ElapsedNs: time.Since(start).Nanoseconds()})
}

// Stamp makes a size-byte message that starts with t in UnixNano as 20
// digits, so that a receiver can time its delivery; dots fill the rest.
func Stamp(t time.Time, size int) string {
	var b strings.Builder
	b.Grow(size)
	s := strconv.FormatInt(t.UnixNano(), 10)
	for i := len(s); i < payloadStampLen; i++ {
		b.WriteByte('0')
	}
	b.WriteString(s)
	for b.Len() < size {
		n := size - b.Len()
		if n > len(stampPad) {
			n = len(stampPad)
		}
		b.WriteString(stampPad[:n])
	}
	return b.String()
}

// StampSent is Stamp with a second time after the first: due is when
// the message was meant to go, sent when the load generator called the
// client's Send (which may queue it, behind an earlier POST say). An echo
// timed from both tells the load generator's own lateness apart. A size
// too small for two stamps gets due alone.
func StampSent(due, sent time.Time, size int) string {
	if size < 2*payloadStampLen {
		return Stamp(due, size)
	}
	return Stamp(due, payloadStampLen) + Stamp(sent, size-payloadStampLen)
}

// ParseStamp reads the time Stamp put at the start of msg.
func ParseStamp(msg string) (time.Time, bool) {
	return parseStampAt(msg, 0)
}

// ParseSent reads the second time StampSent put in msg.
func ParseSent(msg string) (time.Time, bool) {
	return parseStampAt(msg, payloadStampLen)
}

func parseStampAt(msg string, at int) (time.Time, bool) {
	if len(msg) < at+payloadStampLen {
		return time.Time{}, false
	}
	var n int64
	for i := at; i < at+payloadStampLen; i++ {
		c := msg[i]
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(0, n), true
}

func readStats(gc bool, sessions int) Stats {
	if gc {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Stats{RSSBytes: selfRSS(), HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse,
		Goroutines: runtime.NumGoroutine(), Sessions: sessions}
}

// selfRSS reads VmRSS from /proc/self/status, or -1.
func selfRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb * 1024
		}
	}
	return -1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
