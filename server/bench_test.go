package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/internal/testclient"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/longpoll"
	"github.com/cometkit/cometkit/transports/wire"
)

func benchTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 20000,
		IdleConnTimeout:     time.Minute,
	}
}

// BenchmarkLongPollRoundTrip: one op is a message sent by POST, echoed by
// the application, and received by the next poll (two HTTP requests). Each
// parallel worker is its own session; server and clients share the machine.
func BenchmarkLongPollRoundTrip(b *testing.B) {
	srv, err := New(echo, Options{HashKey: []byte("0123456789abcdef0123456789abcdef"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	tr := benchTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	ctx := context.Background()
	msg := strings.Repeat("x", 64)
	var failed atomic.Value
	b.ReportAllocs()
	b.SetParallelism(8) // 16 sessions on 2 cores: enough to keep both busy
	b.ResetTimer()
	start, cpu := time.Now(), processCPU()
	b.RunParallel(func(pb *testing.PB) {
		c, err := testclient.Negotiate(ctx, hc, hs.URL, nil)
		if err != nil {
			failed.Store(err)
			return
		}
		for pb.Next() {
			if _, err := c.Send(ctx, msg); err != nil {
				failed.Store(err)
				return
			}
			for got := false; !got; {
				res, err := c.Poll(ctx)
				if err != nil {
					failed.Store(err)
					return
				}
				got = len(res.Messages) > 0
			}
		}
	})
	elapsed, cpu := time.Since(start), processCPU()-cpu
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "roundtrips/s")
	// Client and server together; steadier than round trips/s when other
	// jobs share the cores.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/roundtrip")
}

// idleServerEnv makes the test binary run as a bare server process for
// BenchmarkIdleLongPollSessions, so that the client's memory is not counted.
const idleServerEnv = "COMETKIT_IDLE_SERVER"

func init() {
	if os.Getenv(idleServerEnv) == "" {
		return
	}
	runIdleServer()
	os.Exit(0)
}

type memReport struct {
	RSS        int64 // bytes, from /proc/self/status, after a GC
	RSSFreed   int64 // the same after debug.FreeOSMemory: what an idle process converges to
	Stack      uint64
	HeapInuse  uint64
	Goroutines int
	Opened     uint64
	Sessions   int
	Parked     int // long polls parked (longpoll.Options.ParkAfter)
}

// COMETKIT_IDLE_CPUPROFILE=FILE profiles the server process from its first
// broadcast to its exit (when the benchmark closes its stdin): where a
// broadcast's server time goes, without the client's share or the set-up.
var serverProfile struct {
	once sync.Once
	mu   sync.Mutex
	stop func()
}

func startProfile() {
	serverProfile.once.Do(func() {
		path := os.Getenv("COMETKIT_IDLE_CPUPROFILE")
		if path == "" {
			return
		}
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			serverProfile.mu.Lock()
			serverProfile.stop = func() { pprof.StopCPUProfile(); f.Close() }
			serverProfile.mu.Unlock()
		}
	})
}

func stopProfile() {
	serverProfile.mu.Lock()
	defer serverProfile.mu.Unlock()
	if serverProfile.stop != nil {
		serverProfile.stop()
		serverProfile.stop = nil
	}
}

// runIdleServer serves an application that waits in Recv (as most do),
// prints its address, reports its memory at /_mem, and exits when stdin closes.
func runIdleServer() {
	var live sync.Map // *session.Session → struct{}: for /_broadcast
	var liveCount atomic.Int64
	var srv *Server
	var openedMu sync.Mutex
	opened, openedCh := uint64(0), make(chan struct{}) // closed and replaced at every open
	app := HandlerFunc(func(s *session.Session) {
		openedMu.Lock()
		opened++
		close(openedCh)
		openedCh = make(chan struct{})
		openedMu.Unlock()
		live.Store(s, struct{}{})
		liveCount.Add(1)
		defer func() { live.Delete(s); liveCount.Add(-1) }()
		_ = srv.Hub().Subscribe(s.Context(), s, "all")
		for {
			if _, err := s.Recv(s.Context()); err != nil {
				return
			}
		}
	})
	var err error
	// COMETKIT_PARK_AFTER (a duration) overrides longpoll.Options.ParkAfter.
	parkAfter, _ := time.ParseDuration(os.Getenv("COMETKIT_PARK_AFTER"))
	srv, err = New(app, Options{
		HashKey:     []byte("0123456789abcdef0123456789abcdef"),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxSessions: 1 << 20,
		Session:     session.Config{HeartbeatInterval: 10 * time.Minute, DisconnectTimeout: 20 * time.Minute},
		LongPoll:    longpoll.Options{ParkAfter: parkAfter},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/rt/", srv)
	mux.HandleFunc("/_mem", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		if path := os.Getenv("COMETKIT_IDLE_HEAPPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := srv.Stats()
		rss := selfRSS()
		debug.FreeOSMemory()
		_ = json.NewEncoder(w).Encode(memReport{RSS: rss, RSSFreed: selfRSS(), HeapInuse: ms.HeapInuse, Stack: ms.StackInuse,
			Goroutines: runtime.NumGoroutine(), Opened: st.Opened, Sessions: st.Sessions, Parked: st.ParkedPolls})
	})
	// /_wait?opened=N answers once N sessions have opened since start,
	// and (with &parked=P) P long polls are parked.
	mux.HandleFunc("/_wait", func(w http.ResponseWriter, r *http.Request) {
		want, _ := strconv.ParseUint(r.URL.Query().Get("opened"), 10, 64)
		for {
			openedMu.Lock()
			n, ch := opened, openedCh
			openedMu.Unlock()
			if n >= want {
				break
			}
			select {
			case <-ch:
			case <-r.Context().Done():
				return
			}
		}
		parked, _ := strconv.Atoi(r.URL.Query().Get("parked"))
		if err := waitParkedAtLeast(r.Context(), srv, parked); err != nil {
			return
		}
		fmt.Fprintln(w, want)
	})
	// /_cpu answers the CPU time the server process has used, in ns.
	mux.HandleFunc("/_cpu", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, processCPU().Nanoseconds())
	})
	// /_broadcast sends every live session one 64-byte message that starts
	// with the send time, so clients can measure delivery latency.
	mux.HandleFunc("/_broadcast", func(w http.ResponseWriter, r *http.Request) {
		startProfile()
		start := time.Now()
		msg := fmt.Sprintf("%020d", start.UnixNano()) + strings.Repeat(".", 44)
		n := 0
		live.Range(func(k, _ any) bool {
			if k.(*session.Session).Send(r.Context(), msg) == nil {
				n++
			}
			return true
		})
		fmt.Fprintf(w, "%d %d\n", n, time.Since(start).Nanoseconds())
	})
	// /_publish does the same through the hub: one Publish to the topic
	// every session joined.
	mux.HandleFunc("/_publish", func(w http.ResponseWriter, r *http.Request) {
		startProfile()
		start := time.Now()
		msg := fmt.Sprintf("%020d", start.UnixNano()) + strings.Repeat(".", 44)
		if _, err := srv.Hub().Publish(r.Context(), "all", msg); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// The count of live sessions, not Hub.Members: its sorted copy of
		// 10,000 sessions would take the server's CPU from the broadcast.
		fmt.Fprintf(w, "%d %d\n", liveCount.Load(), time.Since(start).Nanoseconds())
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().String())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stopProfile(); os.Exit(0) }()
	_ = http.Serve(ln, mux)
}

// waitParkedAtLeast waits until n long polls are parked.
func waitParkedAtLeast(ctx context.Context, srv *Server, n int) error {
	for {
		st, changed := srv.longpoll.ParkStats()
		if st.Parked >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func selfRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return -1
}

// BenchmarkIdleLongPollSessions holds COMETKIT_IDLE_SESSIONS (default
// 10,000) sessions, each with a held poll, against a server in its own
// process, and reports that process's RSS and heap growth per session,
// once every poll has been held long enough to be parked (ParkAfter).
// Run it once: go test ./server -run '^$' -bench IdleLongPoll -benchtime 1x
func BenchmarkIdleLongPollSessions(b *testing.B) {
	benchAgainstServer(b, func(ctx context.Context, c *testclient.Client) { _, _ = c.Poll(ctx) }, nil, true)
}

// BenchmarkIdleEventStreamSessions is the same with an open event stream
// per session (read up to its first event, then left idle).
// Run it once: go test ./server -run '^$' -bench IdleEventStream -benchtime 1x
func BenchmarkIdleEventStreamSessions(b *testing.B) {
	benchIdle(b, func(ctx context.Context, c *testclient.Client) {
		st, err := c.OpenStream(ctx, nil, nil)
		if err != nil {
			return
		}
		defer st.Close()
		if _, err := st.Next(); err != nil {
			return
		}
		<-ctx.Done()
	})
}

// BenchmarkIdleWebSocketSessions is the same with a WebSocket per session
// (the session endpoint, read up to its first frame, then idle).
// Run it once: go test ./server -run '^$' -bench IdleWebSocket -benchtime 1x
func BenchmarkIdleWebSocketSessions(b *testing.B) {
	var failed atomic.Int64
	var first atomic.Value
	defer func() {
		if n := failed.Load(); n > 0 {
			b.Logf("%d connections failed; the first: %v", n, first.Load())
		}
	}()
	benchIdle(b, func(ctx context.Context, c *testclient.Client) {
		nc, r, err := dialBenchWS(ctx, c)
		if err == nil {
			defer nc.Close()
			_, err = ws.ReadFrame(r)
		}
		if err != nil {
			if failed.Add(1) == 1 {
				first.Store(err)
			}
			return
		}
		<-ctx.Done()
	})
}

// dialSlots bounds the handshakes in flight: 20,000 connects at once
// overflow the listener's backlog, and the SYNs retried after 1, 3, 7 s
// outlast the dial timeout.
var dialSlots = make(chan struct{}, 256)

func dialBenchWS(ctx context.Context, c *testclient.Client) (net.Conn, io.Reader, error) {
	u := strings.Replace(c.URL("websocket", nil), "http://", "ws://", 1)
	select {
	case dialSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	nc, br, _, err := ws.Dialer{Timeout: 10 * time.Second}.Dial(ctx, u)
	<-dialSlots
	if err != nil {
		return nil, nil, err
	}
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	return nc, r, nil
}

// BenchmarkWebSocketBroadcast holds 10,000 WebSocket sessions (as the idle
// benchmark) and has the server send one 64-byte message to every one of
// them per op; clients time each delivery from the send time it carries.
// Run: go test ./server -run '^$' -bench WebSocketBroadcast -benchtime 5x
func BenchmarkWebSocketBroadcast(b *testing.B) { benchBroadcast(b, "/_broadcast") }

// BenchmarkHubBroadcast is the same through the hub: one Publish to a topic
// all 10,000 sessions joined, fanned out with one shared payload.
// Run: go test ./server -run '^$' -bench HubBroadcast -benchtime 5x
func BenchmarkHubBroadcast(b *testing.B) { benchBroadcast(b, "/_publish") }

func benchBroadcast(b *testing.B, endpoint string) {
	// COMETKIT_ACK_EVERY=N acknowledges after every N messages instead of
	// the browser client's 32: 1 puts an acknowledgement on the wire for
	// every delivery, the heaviest load on the server's reading side.
	ackEvery := uint64(32)
	if v, err := strconv.ParseUint(os.Getenv("COMETKIT_ACK_EVERY"), 10, 64); err == nil && v > 0 {
		ackEvery = v
	}
	var mu sync.Mutex
	var lat []time.Duration
	delivered := make(chan struct{}, 1<<16)
	benchAgainstServer(b, func(ctx context.Context, c *testclient.Client) {
		nc, r, err := dialBenchWS(ctx, c)
		if err != nil {
			return
		}
		defer nc.Close()
		go func() { <-ctx.Done(); nc.Close() }()
		// Read and acknowledge as the browser client does: a buffered read
		// per arrival, and an acknowledgement (one write) after every 32
		// messages or 1 s after the first one not yet acknowledged
		// (client-js: ackEvery, ackTimer). The load generator shares the
		// two cores with the server: it wastes none of them.
		r = bufio.NewReaderSize(r, 512)
		var ackMu sync.Mutex
		var rcv, acked uint64
		var ackTimer *time.Timer
		flush := func() {
			ackMu.Lock()
			defer ackMu.Unlock()
			if rcv > acked {
				ack := wire.AppendFrame(nil, wire.Frame{Kind: wire.KindAck, Seq: rcv})
				if out, err := ws.CompileFrame(ws.MaskFrame(ws.NewTextFrame(ack))); err == nil {
					_, _ = nc.Write(out)
				}
				acked = rcv
			}
			if ackTimer != nil {
				ackTimer.Stop()
				ackTimer = nil
			}
		}
		defer flush()
		for {
			f, err := ws.ReadFrame(r)
			if err != nil {
				return
			}
			if f.Header.OpCode != ws.OpText || len(f.Payload) < 1 || f.Payload[0] != 'm' {
				continue
			}
			fr, err := wire.ParseFrame(string(f.Payload))
			if err != nil || len(fr.Data) < 20 {
				continue
			}
			sent, _ := strconv.ParseInt(fr.Data[:20], 10, 64)
			d := time.Since(time.Unix(0, sent))
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			delivered <- struct{}{}
			// Acknowledge, so the server's replay queue does not grow.
			ackMu.Lock()
			rcv = fr.Seq
			now := rcv-acked >= ackEvery
			if !now && ackTimer == nil {
				ackTimer = time.AfterFunc(time.Second, flush)
			}
			ackMu.Unlock()
			if now {
				flush()
			}
		}
	}, func(hc *http.Client, base string, n int) {
		serverCPU := func() time.Duration {
			resp, err := hc.Get(base + "/_cpu")
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			var ns int64
			fmt.Fscan(resp.Body, &ns)
			return time.Duration(ns)
		}
		// CPU time per delivery, each side's: what the two share of the
		// machine's cores, and robust to other load on it.
		var total int
		srv0, cli0 := serverCPU(), processCPU()
		defer func() {
			if total > 0 {
				b.ReportMetric(float64((serverCPU()-srv0).Microseconds())/float64(total), "server-cpu-µs/delivery")
				b.ReportMetric(float64((processCPU()-cli0).Microseconds())/float64(total), "client-cpu-µs/delivery")
			}
		}()
		for i := 0; i < b.N; i++ {
			mu.Lock()
			lat = lat[:0]
			mu.Unlock()
			start := time.Now()
			resp, err := hc.Get(base + endpoint)
			if err != nil {
				b.Fatal(err)
			}
			var sent int
			var sendNs int64
			fmt.Fscan(resp.Body, &sent, &sendNs)
			resp.Body.Close()
			total += sent
			for j := 0; j < sent; j++ {
				select {
				case <-delivered:
				case <-time.After(30 * time.Second):
					b.Fatalf("broadcast %d: %d of %d delivered", i, j, sent)
				}
			}
			elapsed := time.Since(start)
			mu.Lock()
			sort.Slice(lat, func(x, y int) bool { return lat[x] < lat[y] })
			p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
			mu.Unlock()
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(sent)/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(sendNs)/1e6, "server-send-ms")
		}
	}, false)
}

func benchIdle(b *testing.B, hold func(context.Context, *testclient.Client)) {
	benchAgainstServer(b, hold, nil, false)
}

// benchAgainstServer starts the server process, opens the sessions, each
// held by hold, and then either reports memory per session (measure nil)
// or runs measure.
func benchAgainstServer(b *testing.B, hold func(context.Context, *testclient.Client), measure func(hc *http.Client, base string, n int), parked bool) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("COMETKIT_IDLE_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleServerEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	base := "http://" + strings.TrimSpace(addr)
	tr := benchTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	mem := func() memReport {
		resp, err := hc.Get(base + "/_mem")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var m memReport
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			b.Fatal(err)
		}
		return m
	}
	if measure != nil {
		holdIdleSessions(b, hc, base, n, mem, hold, parked, func() {
			b.ResetTimer()
			measure(hc, base, n)
		})
		return
	}
	for i := 0; i < b.N; i++ {
		holdIdleSessions(b, hc, base, n, mem, hold, parked, nil)
	}
}

func holdIdleSessions(b *testing.B, hc *http.Client, base string, n int, mem func() memReport, hold func(context.Context, *testclient.Client), parked bool, then func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var polls sync.WaitGroup
	defer func() { cancel(); polls.Wait() }()
	{
		before := mem()
		clients := make([]*testclient.Client, n)
		var wg sync.WaitGroup
		var failed atomic.Value
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for j := w; j < n; j += 32 {
					c, err := testclient.Negotiate(ctx, hc, base+"/rt", nil)
					if err != nil {
						failed.Store(err)
						return
					}
					clients[j] = c
				}
			}(w)
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		for _, c := range clients {
			polls.Add(1)
			go func(c *testclient.Client) { defer polls.Done(); hold(ctx, c) }(c)
		}
		// Every session opens when its first poll or stream attaches: wait
		// for the server to say all have (and that all polls are parked).
		waitCtx, stop := context.WithTimeout(context.Background(), 2*time.Minute)
		wait := fmt.Sprintf("%s/_wait?opened=%d", base, before.Opened+uint64(n))
		if parked {
			wait += fmt.Sprintf("&parked=%d", before.Parked+n)
		}
		req, _ := http.NewRequestWithContext(waitCtx, http.MethodGet, wait, nil)
		resp, err := hc.Do(req)
		stop()
		if err != nil {
			b.Fatalf("waiting for %d sessions to open: %v", n, err)
		}
		resp.Body.Close()
		after := mem()
		if after.Opened < before.Opened+uint64(n) {
			b.Fatalf("only %d of %d sessions opened", after.Opened-before.Opened, n)
		}
		if then != nil {
			then()
			return
		}
		b.ReportMetric(float64(after.RSS-before.RSS)/float64(n)/1024, "rss-KB/session")
		b.ReportMetric(float64(after.RSSFreed-before.RSSFreed)/float64(n)/1024, "rss-freed-KB/session")
		b.ReportMetric(float64(int64(after.Stack)-int64(before.Stack))/float64(n)/1024, "stack-KB/session")
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(n)/1024, "heap-KB/session")
		b.ReportMetric(float64(after.Goroutines-before.Goroutines)/float64(n), "goroutines/session")
		if parked {
			b.ReportMetric(float64(after.Parked-before.Parked)/float64(n), "parked/session")
		}
		b.ReportMetric(float64(n), "sessions")
	}
}

// BenchmarkEventStreamFanOut: one op sends a 64-byte message to each of
// 1,000 sessions, each read by its own event stream over real HTTP; it
// reports messages delivered per second (clients share the machine).
func BenchmarkEventStreamFanOut(b *testing.B) {
	const streams = 1000
	opened := make(chan *session.Session, streams)
	srv, err := New(HandlerFunc(func(s *session.Session) {
		opened <- s
		<-s.Context().Done()
	}), Options{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: discard,
		Session: session.Config{MaxQueueMessages: 1 << 16, MaxQueueBytes: 64 << 20}})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	tr := benchTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got atomic.Int64
	var readers sync.WaitGroup
	sessions := make([]*session.Session, 0, streams)
	for i := 0; i < streams; i++ {
		c, err := testclient.Negotiate(ctx, hc, hs.URL, nil)
		if err != nil {
			b.Fatal(err)
		}
		st, err := c.OpenStream(ctx, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		sessions = append(sessions, <-opened)
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer st.Close()
			for {
				ev, err := st.Next()
				if err != nil {
					return
				}
				if ev.Frame.Kind == wire.KindMessage {
					got.Add(1)
					// Acknowledge now and then so the replay queue stays short.
					if ev.Frame.Seq%64 == 0 {
						_, _ = c.SendRaw(ctx, string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindAck, Seq: ev.Frame.Seq})))
					}
				}
			}
		}()
	}
	msg := strings.Repeat("x", 64)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, s := range sessions {
			if err := s.Send(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	want := int64(b.N) * streams
	for got.Load() < want {
		if time.Since(start) > time.Minute {
			b.Fatalf("delivered %d of %d", got.Load(), want)
		}
		runtime.Gosched()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "msgs/s")
	cancel()
	srv.Close()
	readers.Wait()
}

// BenchmarkWebSocketRoundTrip: one op is a session frame sent over the
// session's WebSocket, echoed by the application and read back; 16
// sessions in parallel, clients in the same process.
func BenchmarkWebSocketRoundTrip(b *testing.B) {
	srv, err := New(echo, Options{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	ctx := context.Background()
	msg := strings.Repeat("x", 64)
	var failed atomic.Value
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := testclient.Negotiate(ctx, hs.Client(), hs.URL, nil)
		if err != nil {
			failed.Store(err)
			return
		}
		nc, r, err := dialBenchWS(ctx, c)
		if err != nil {
			failed.Store(err)
			return
		}
		defer nc.Close()
		var seq uint64
		for pb.Next() {
			seq++
			out := wire.AppendFrame(nil, wire.Frame{Kind: wire.KindMessage, Seq: seq, Data: msg})
			if err := ws.WriteFrame(nc, ws.MaskFrame(ws.NewTextFrame(out))); err != nil {
				failed.Store(err)
				return
			}
			for {
				f, err := ws.ReadFrame(r)
				if err != nil {
					failed.Store(err)
					return
				}
				if len(f.Payload) > 0 && f.Payload[0] == 'm' {
					break
				}
			}
			if seq%64 == 0 { // acknowledge now and then, as a client must
				ack := wire.AppendFrame(nil, wire.Frame{Kind: wire.KindAck, Seq: seq})
				if err := ws.WriteFrame(nc, ws.MaskFrame(ws.NewTextFrame(ack))); err != nil {
					failed.Store(err)
					return
				}
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "roundtrips/s")
}

// BenchmarkLongPollFanOut: one op sends a 64-byte message to each of 64
// sessions and waits until every client has it; each client polls again at
// once, so most polls wait for the next op. It compares the ways a waiting
// poll can be held: by net/http (held), parked and its connection handed
// back to the http.Server (parked), or parked and answered with
// Connection: close (parked-close). Clients share the machine.
// Run: go test ./server -run '^$' -bench LongPollFanOut -benchtime 2000x
func BenchmarkLongPollFanOut(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts longpollOptions
	}{
		{"held", longpollOptions{NoHijack: true}},
		{"parked", longpollOptions{ParkAfter: -1}},
		{"parked-close", longpollOptions{ParkAfter: -1, CloseParked: true}},
	} {
		b.Run(mode.name, func(b *testing.B) { benchLongPollFanOut(b, mode.opts) })
	}
}

func benchLongPollFanOut(b *testing.B, lpo longpollOptions) {
	const sessions = 64
	opened := make(chan *session.Session, sessions)
	srv, err := New(HandlerFunc(func(s *session.Session) {
		opened <- s
		<-s.Context().Done()
	}), Options{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: discard, LongPoll: lpo})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	tr := benchTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, sessions)
	var failed atomic.Value
	var clients sync.WaitGroup
	all := make([]*session.Session, 0, sessions)
	for i := 0; i < sessions; i++ {
		c, err := testclient.Negotiate(ctx, hc, hs.URL, nil)
		if err != nil {
			b.Fatal(err)
		}
		clients.Add(1)
		go func() {
			defer clients.Done()
			for ctx.Err() == nil {
				res, err := c.Poll(ctx)
				if err != nil {
					if ctx.Err() == nil {
						failed.Store(err)
					}
					return
				}
				for range res.Messages {
					got <- struct{}{}
				}
			}
		}()
		all = append(all, <-opened)
	}
	msg := strings.Repeat("x", 64)
	b.ReportAllocs()
	b.ResetTimer()
	st, _ := srv.longpoll.ParkStats()
	start, cpu, parks := time.Now(), processCPU(), st.Parks
	for i := 0; i < b.N; i++ {
		for _, s := range all {
			if err := s.Send(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
		for range all {
			select {
			case <-got:
			case <-time.After(30 * time.Second):
				b.Fatalf("op %d: not delivered (%v)", i, failed.Load())
			}
		}
	}
	elapsed, cpu := time.Since(start), processCPU()-cpu
	b.StopTimer()
	b.ReportMetric(float64(b.N*sessions)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*sessions), "cpu-µs/delivery")
	st, _ = srv.longpoll.ParkStats()
	b.ReportMetric(float64(st.Parks-parks)/float64(b.N*sessions), "parks/delivery")
	cancel()
	srv.Close()
	hs.CloseClientConnections()
	clients.Wait()
}

type longpollOptions = longpoll.Options

// BenchmarkWebSocketConnect: one op is a new session on
// .../negotiate/websocket, from the upgrade to the application's welcome,
// then the socket closes. Clients share the machine; allocs/op counts
// both sides (profile with -memprofile and focus on the server).
// Run: go test ./server -run '^$' -bench WebSocketConnect -benchmem
func BenchmarkWebSocketConnect(b *testing.B) {
	app := HandlerFunc(func(s *session.Session) {
		if s.Send(s.Context(), "welcome") != nil {
			return
		}
		_, _ = s.Recv(s.Context())
	})
	srv, err := New(app, Options{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: discard, MaxSessions: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	u := strings.Replace(hs.URL, "http://", "ws://", 1) + "/negotiate/websocket"
	var failed atomic.Value
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			nc, br, _, err := ws.Dial(context.Background(), u)
			if err != nil {
				failed.Store(err)
				return
			}
			var r io.Reader = nc
			if br != nil {
				r = io.MultiReader(br, nc)
			}
			for got := 0; got < 2; { // the o frame, then the welcome
				f, err := ws.ReadFrame(r)
				if err != nil {
					failed.Store(err)
					nc.Close()
					return
				}
				if f.Header.OpCode == ws.OpText {
					got++
				}
			}
			nc.Close()
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "connects/s")
}
