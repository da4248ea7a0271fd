// Command echo serves a page at / and a cometkit endpoint at /echo that
// sends back every message it receives.
//
//	go run ./examples/echo -addr :8080
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/cometkit/cometkit/server"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/websocket"
)

//go:embed index.html
var page []byte

// echo is the application: one call per session, returning ends it.
func echo(s *session.Session) {
	ctx := s.Context()
	for {
		msg, err := s.Recv(ctx)
		if err != nil {
			return
		}
		if err := s.Send(ctx, msg); err != nil {
			return
		}
	}
}

// newRouter mounts the echo endpoint at /echo and the page at /. Any
// WebSocket client can also echo on ws://HOST/echo/websocket.
func newRouter(log *slog.Logger, hixie75 bool) (http.Handler, *server.Server, error) {
	rt, err := server.New(server.HandlerFunc(echo), server.Options{Logger: log,
		WebSocket: websocket.Options{AllowHixie75: hixie75}})
	if err != nil {
		return nil, nil, err
	}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	r.Mount("/echo", rt)
	return r, rt, nil
}

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	hixie75 := flag.Bool("hixie75", false, "also accept the hixie-75 WebSocket draft (no key check; off by default)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	r, rt, err := newRouter(log, *hixie75)
	if err != nil {
		log.Error("cometkit", "err", err)
		os.Exit(1)
	}
	hs := &http.Server{Addr: *addr, Handler: r, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Shutdown(shutdown) // tell clients to come back, then
		_ = hs.Shutdown(shutdown) // stop listening
	}()
	log.Info("echo example listening", "addr", *addr, "page", "/", "endpoint", "/echo")
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
}
