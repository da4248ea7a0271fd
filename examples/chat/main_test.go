package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/redisbroker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var httpClient = http.Client{}

// Two chat nodes sharing rooms through the real Redis: a user on each, the
// same room; they see each other arrive and talk.
func TestTwoNodesShareRooms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "cometkit-chat-test:" + hex.EncodeToString(b) + ":"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var urls []string
	for i := 0; i < 2; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer rdb.Close()
		broker := redisbroker.New(rdb, redisbroker.Options{Prefix: prefix, Logger: log})
		defer broker.Close()
		r, srv, err := newRouter(log, broker)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(r)
		defer hs.Close()
		defer srv.Close()
		urls = append(urls, hs.URL+"/chat")
	}
	join := func(url, nick string) *testclient.Client {
		c, err := testclient.Negotiate(ctx, &httpClient, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(ctx, `{"t":"nick","nick":"`+nick+`"}`, `{"t":"join","room":"lobby"}`); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// until polls c until it sees an event matching want.
	until := func(c *testclient.Client, want event) {
		t.Helper()
		for {
			res, err := c.Poll(ctx)
			if err != nil {
				t.Fatalf("waiting for %+v: %v", want, err)
			}
			found := false
			for _, m := range res.Messages { // the whole batch: a "who" may follow
				var e event
				json.Unmarshal([]byte(m), &e)
				if e.T == "who" {
					c.Send(ctx, `{"t":"here"}`)
				}
				found = found || e == want
			}
			if found {
				return
			}
		}
	}
	alice := join(urls[0], "alice")
	until(alice, event{T: "join", Room: "lobby", Nick: "alice"})
	// From now on Alice's page polls on its own, as a page does, answering
	// "who" and reporting what it sees.
	seen := make(chan event, 64)
	var sendMu sync.Mutex // the test client takes one send at a time
	aliceSend := func(ctx context.Context, m string) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		_, err := alice.Send(ctx, m)
		return err
	}
	pollCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for pollCtx.Err() == nil {
			res, err := alice.Poll(pollCtx)
			if err != nil {
				return
			}
			for _, m := range res.Messages {
				var e event
				json.Unmarshal([]byte(m), &e)
				if e.T == "who" {
					_ = aliceSend(pollCtx, `{"t":"here"}`)
				}
				select {
				case seen <- e:
				default:
				}
			}
		}
	}()
	defer func() { stop(); <-done }()
	bob := join(urls[1], "bob")
	for e := range seen { // node A sees node B's user arrive
		if e == (event{T: "join", Room: "lobby", Nick: "bob"}) {
			break
		}
	}
	until(bob, event{T: "here", Room: "lobby", Nick: "alice"}) // and B learns who is already there
	if err := aliceSend(ctx, `{"t":"say","text":"hi from node A"}`); err != nil {
		t.Fatal(err)
	}
	until(bob, event{T: "say", Room: "lobby", Nick: "alice", Text: "hi from node A"})
}
