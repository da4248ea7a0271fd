// Command chat is a chat with rooms, nicknames and a presence list, over
// whichever transport the browser gets. Run two nodes sharing rooms through
// Redis:
//
//	go run ./examples/chat -redis 127.0.0.1:6379 -addr :8080
//	go run ./examples/chat -redis 127.0.0.1:6379 -addr :8081
//
// Without -redis it runs alone, with the in-memory broker.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/redis/go-redis/v9"

	"github.com/cometkit/cometkit/redisbroker"
	"github.com/cometkit/cometkit/server"
	"github.com/cometkit/cometkit/session"
)

//go:embed index.html
var page []byte

// event is every message of the chat, both ways, as JSON.
//
//	client → server: {"t":"nick","nick":N}  {"t":"join","room":R}  {"t":"say","text":X}  {"t":"here"}
//	server → client: {"t":"say","room":R,"nick":N,"text":X}  {"t":"join"|"leave"|"here","room":R,"nick":N}
//	                 {"t":"who","room":R} (answer with "here")  {"t":"error","text":X}
type event struct {
	T    string `json:"t"`
	Room string `json:"room,omitempty"`
	Nick string `json:"nick,omitempty"`
	Text string `json:"text,omitempty"`
}

// chat is the application: one call per session.
type chat struct {
	srv *server.Server
	log *slog.Logger
}

func (c *chat) ServeSession(s *session.Session) {
	ctx := s.Context()
	hub := c.srv.Hub()
	nick, room := "anonymous", ""
	publish := func(e event) {
		b, _ := json.Marshal(e)
		if _, err := hub.Publish(context.Background(), "room:"+e.Room, string(b)); err != nil {
			c.log.Warn("chat: publish failed", "room", e.Room, "err", err)
			c.tell(s, event{T: "error", Text: "the message could not be sent: " + err.Error()})
		}
	}
	defer func() {
		if room != "" {
			publish(event{T: "leave", Room: room, Nick: nick})
		}
	}()
	for {
		msg, err := s.Recv(ctx)
		if err != nil {
			return
		}
		var e event
		if json.Unmarshal([]byte(msg), &e) != nil {
			c.tell(s, event{T: "error", Text: "not a chat message"})
			continue
		}
		switch e.T {
		case "nick":
			if n := clean(e.Nick, 24); n != "" {
				nick = n
			}
		case "join":
			r := clean(e.Room, 40)
			if r == "" || r == room {
				continue
			}
			if room != "" {
				hub.Unsubscribe(s, "room:"+room)
				publish(event{T: "leave", Room: room, Nick: nick})
			}
			room = r
			if err := hub.Subscribe(ctx, s, "room:"+room); err != nil {
				c.tell(s, event{T: "error", Text: "could not join: " + err.Error()})
				room = ""
				continue
			}
			publish(event{T: "join", Room: room, Nick: nick})
			publish(event{T: "who", Room: room}) // everyone in the room says "here"
		case "say":
			if t := clean(e.Text, 2000); room != "" && t != "" {
				publish(event{T: "say", Room: room, Nick: nick, Text: t})
			}
		case "here":
			if room != "" {
				publish(event{T: "here", Room: room, Nick: nick})
			}
		}
	}
}

func (c *chat) tell(s *session.Session, e event) {
	b, _ := json.Marshal(e)
	_ = s.Send(s.Context(), string(b))
}

// clean trims a user's text and bounds its length.
func clean(s string, max int) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, ""))
	for len(s) > max {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// newRouter mounts the chat endpoint at /chat and the page at /.
func newRouter(log *slog.Logger, broker server.Broker) (http.Handler, *server.Server, error) {
	app := &chat{log: log}
	srv, err := server.New(app, server.Options{
		Logger: log,
		Broker: broker,
		// Every node must share the key, or a client moving between nodes
		// is refused. An example's fixed key; use your own secret.
		HashKey: []byte("cometkit chat example: replace with 32+ secret bytes"),
	})
	if err != nil {
		return nil, nil, err
	}
	app.srv = srv
	r := chi.NewRouter()
	r.Get("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	r.Mount("/chat", srv)
	return r, srv, nil
}

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	redisAddr := flag.String("redis", "", "Redis address (host:port) to share rooms with other nodes; empty: this node alone")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	var broker server.Broker
	if *redisAddr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: *redisAddr})
		rb := redisbroker.New(rdb, redisbroker.Options{Logger: log})
		defer rb.Close()
		broker = rb
	}
	r, srv, err := newRouter(log, broker)
	if err != nil {
		log.Error("chat", "err", err)
		os.Exit(1)
	}
	hs := &http.Server{Addr: *addr, Handler: r, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		_ = hs.Shutdown(shutdown)
	}()
	log.Info("chat example listening", "addr", *addr, "redis", *redisAddr)
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
}
