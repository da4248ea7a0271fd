package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/cometkit/cometkit/server"
	"github.com/cometkit/cometkit/session"
)

// shout is an application: it answers every message in capitals.
func shout(s *session.Session) {
	for {
		msg, err := s.Recv(s.Context())
		if err != nil {
			return // closed by the client, a timeout, or shutdown
		}
		if err := s.Send(s.Context(), strings.ToUpper(msg)); err != nil {
			return
		}
	}
}

// Mount the server in chi, then talk to it the way a client does
// (docs/PROTOCOL.md): negotiate, send a batch, poll for the answer.
func Example() {
	rt, err := server.New(server.HandlerFunc(shout), server.Options{
		HashKey: []byte("use 32 or 64 random bytes, the same on every node"),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	r := chi.NewRouter()
	r.Mount("/rt", rt)
	hs := httptest.NewServer(r)
	defer hs.Close()
	defer rt.Close()

	resp, _ := http.Post(hs.URL+"/rt/negotiate", "text/plain", nil)
	var neg struct {
		SID   string `json:"sid"`
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&neg)
	resp.Body.Close()
	session := hs.URL + "/rt/s/" + neg.SID
	token := "?t=" + url.QueryEscape(neg.Token)

	// One message, sequence number 1: "<UTF-16 length>:m<seq>:<text>\n".
	resp, _ = http.Post(session+"/send"+token, "text/plain", strings.NewReader("8:m1:hello\n"))
	ack, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("send answered %q\n", ack)

	resp, _ = http.Get(session + "/poll" + token + "&ack=0")
	batch, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("poll answered %q\n", batch)
	// Output:
	// send answered "2:a1\n"
	// poll answered "8:m1:HELLO\n"
}

// Mount the server in a net/http ServeMux: it finds its endpoints by the
// end of the path, so any prefix works.
func Example_serveMux() {
	rt, err := server.New(server.HandlerFunc(shout), server.Options{
		AllowedOrigins: []string{"https://app.example.com"},
		Session:        session.Config{MaxQueueMessages: 256, Overflow: session.OverflowWait},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/realtime/", rt)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	defer rt.Close()

	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/realtime/negotiate", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	fmt.Println("foreign origin:", resp.StatusCode)

	req.Header.Set("Origin", "https://app.example.com")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	fmt.Println("allowed origin:", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	// Output:
	// foreign origin: 403
	// allowed origin: 200 https://app.example.com
}

// Shutdown tells every client to come back (close code 1001) and waits for
// them to collect that, or for ctx to end.
func ExampleServer_Shutdown() {
	rt, _ := server.New(server.HandlerFunc(shout), server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hs := &http.Server{Addr: "127.0.0.1:0", Handler: rt}
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	_ = rt.Shutdown(ctx) // first the sessions,
	_ = hs.Shutdown(ctx) // then the listener
	fmt.Println(rt.Len(), "sessions left")
	// Output: 0 sessions left
}

// Sessions join topics; a publish reaches every member on every node (with
// a Broker that spans nodes), one shared payload, never waiting on a slow
// member (it is cut off with 4009 instead).
func ExampleHub() {
	var rt *server.Server
	rt, _ = server.New(server.HandlerFunc(func(s *session.Session) {
		hub := rt.Hub()
		_ = hub.Subscribe(s.Context(), s, "lobby")
		for {
			msg, err := s.Recv(s.Context())
			if err != nil {
				return // the hub forgets a session when it ends
			}
			_, _ = hub.Publish(s.Context(), "lobby", msg) // to everyone in the lobby
		}
	}), server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer rt.Close()
	fmt.Println(len(rt.Hub().Members("lobby")), "in the lobby")
	// Output: 0 in the lobby
}
