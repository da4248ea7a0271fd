package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/server"
	"github.com/cometkit/cometkit/session"
)

// stamp is a transport that records when the session first has something
// to deliver after a publish.
type stamp struct {
	mu   sync.Mutex
	at   time.Time
	done chan<- time.Time
}

func (s *stamp) Name() string { return "stamp" }
func (s *stamp) Wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() && s.done != nil {
		s.at = time.Now()
		s.done <- s.at
	}
}
func (s *stamp) Kick(session.Code, string) {}

// BenchmarkCrossNodeFanOut: one op publishes a 64-byte message on node A;
// 1,000 sessions on node B, subscribed through the real Redis, each get it.
// Reported: time from the publish to each session having it (p50, p99), and
// deliveries per second. Run: cd redisbroker && go test -run '^$' -bench CrossNode -benchtime 20x
func BenchmarkCrossNodeFanOut(b *testing.B) {
	const n = 1000
	buf := make([]byte, 6)
	_, _ = rand.Read(buf)
	p := "cometkit-bench:" + hex.EncodeToString(buf) + ":"
	defer func() {
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer rdb.Close()
		keys, _ := rdb.Keys(context.Background(), p+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	}()
	ctx := context.Background()
	var nodes []*server.Server
	opened := make(chan *session.Session, n)
	var urlB string
	for i := 0; i < 2; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer rdb.Close()
		br := New(rdb, Options{Prefix: p, Logger: discard, MaxHistory: 100})
		defer br.Close()
		srv, err := server.New(server.HandlerFunc(func(s *session.Session) { opened <- s; <-s.Context().Done() }),
			server.Options{HashKey: []byte("the same key on every node, 32+ bytes"), Logger: discard, Broker: br,
				MaxSessions: 2 * n, Session: session.Config{MaxQueueMessages: 1 << 16, MaxQueueBytes: 64 << 20}})
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		hs := httptest.NewServer(srv)
		defer hs.Close()
		nodes = append(nodes, srv)
		urlB = hs.URL
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	stamps := make([]*stamp, n)
	done := make(chan time.Time, n)
	for i := 0; i < n; i++ {
		c, err := testclient.Negotiate(ctx, hc, urlB, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Send(ctx, "hi"); err != nil {
			b.Fatal(err)
		}
		s := <-opened
		stamps[i] = &stamp{}
		if err := s.Attach(stamps[i]); err != nil {
			b.Fatal(err)
		}
		if err := nodes[1].Hub().Subscribe(ctx, s, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	payload := string(make([]byte, 64))
	lat := make([]time.Duration, 0, n)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, st := range stamps {
			st.mu.Lock()
			st.at, st.done = time.Time{}, done
			st.mu.Unlock()
		}
		start := time.Now()
		if _, err := nodes[0].Hub().Publish(ctx, "bench", payload); err != nil {
			b.Fatal(err)
		}
		lat = lat[:0]
		for j := 0; j < n; j++ {
			select {
			case at := <-done:
				lat = append(lat, at.Sub(start))
			case <-time.After(10 * time.Second):
				b.Fatalf("publish %d: %d of %d sessions got it", i, j, n)
			}
		}
		sort.Slice(lat, func(x, y int) bool { return lat[x] < lat[y] })
		total += lat[n-1]
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "deliveries/s")
}
