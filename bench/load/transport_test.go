package load

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingDial dials with net.Dialer and counts the dials.
func countingDial(n *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func TestLeanTransportKeepsConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Content-Type")+" "+string(body))
	}))
	defer srv.Close()
	var dials atomic.Int64
	tr := newLeanTransport(countingDial(&dials), 4, 512)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b := &base{ctx: context.Background()}
	env := &Env{HTTP: c}
	for i := range 20 {
		method, body, want := http.MethodGet, "", "GET /x?a=1  "
		if i%2 == 1 {
			method, body, want = http.MethodPost, strings.Repeat("b", 3000), "POST /x?a=1 text/plain "+strings.Repeat("b", 3000)
		}
		status, got, err := b.httpDo(env, method, srv.URL+"/x?a=1", map[bool]string{true: "text/plain"}[method == http.MethodPost], body)
		if err != nil || status != http.StatusOK || got != want {
			t.Fatalf("request %d: %d %q %v; want 200 %q", i, status, got, err, want)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for 20 sequential requests; want 1 (kept alive)", n)
	}
}

func TestLeanTransportContextEndsHeldRequest(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	var dials atomic.Int64
	tr := newLeanTransport(countingDial(&dials), 4, 512)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/held", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := (&http.Client{Transport: tr}).Do(req)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("held request ended with %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled context did not end the held request")
	}
	if idle, _ := tr.counts(srv); idle != 0 {
		t.Fatalf("%d idle connections after a cut request; want 0", idle)
	}
}

func TestLeanTransportRetriesConnectionClosedWhileIdle(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, "ok "+string(body))
	}))
	srv.Start()
	defer srv.Close()
	var dials atomic.Int64
	tr := newLeanTransport(countingDial(&dials), 4, 512)
	tr.probeAfter = 0 // look at every kept connection before using it
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	post := func() string {
		t.Helper()
		resp, err := c.Post(srv.URL+"/s", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := post(); got != "ok hello" {
		t.Fatalf("first answer %q", got)
	}
	srv.CloseClientConnections() // the kept connection is now dead
	if got := post(); got != "ok hello" {
		t.Fatalf("answer after the server closed the idle connection: %q", got)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials; want 2 (the dead connection seen before use, a new one dialled)", n)
	}
}

// A POST that was written on a kept connection is not sent again when the
// connection closes before the answer: the server may have taken it.
func TestLeanTransportDoesNotResendWrittenPost(t *testing.T) {
	var posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if posts.Add(1) == 2 { // take the second, then drop the connection unanswered
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	tr := newLeanTransport(countingDial(new(atomic.Int64)), 4, 512)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for i := range 2 {
		resp, err := c.Post(srv.URL+"/s", "text/plain", strings.NewReader("x"))
		if i == 0 {
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			continue
		}
		if err == nil {
			resp.Body.Close()
			t.Fatal("the dropped POST succeeded")
		}
	}
	if n := posts.Load(); n != 2 {
		t.Fatalf("the server saw %d POSTs for 2; want 2 (a written POST is not resent)", n)
	}
}

func TestLeanTransportStreamsAndDropsUnreadBody(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/plain" {
			io.WriteString(w, "plain")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			io.WriteString(w, "data: "+string(rune('a'+i))+"\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer srv.Close()
	var dials atomic.Int64
	tr := newLeanTransport(countingDial(&dials), 4, 512)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	resp, err := c.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	sc := newSSEReader(resp.Body)
	for i := range 3 {
		data, err := sc.next()
		if want := string(rune('a' + i)); err != nil || data != want {
			t.Fatalf("event %d: %q %v; want %q", i, data, err, want)
		}
		if i < 2 {
			next <- struct{}{}
		}
	}
	resp.Body.Close() // not read to its end: the connection must not be kept
	resp, err = c.Get(srv.URL + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "plain" {
		t.Fatalf("after a dropped stream: %q", b)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials; want 2 (the stream's connection was not reused)", n)
	}
}

func TestLeanTransportRefusesHTTPS(t *testing.T) {
	tr := newLeanTransport(countingDial(new(atomic.Int64)), 4, 512)
	if _, err := (&http.Client{Transport: tr}).Get("https://127.0.0.1:1/"); err == nil || !strings.Contains(err.Error(), "only http") {
		t.Fatalf("https: %v; want a refusal", err)
	}
}

// At the open-file limit (a dial waiting for a file), a finished request's
// connection is closed instead of kept idle, so the waiting dial gets it.
func TestLeanTransportShedsIdleWhenStarved(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	var dials atomic.Int64
	var starved atomic.Bool
	tr := newLeanTransport(countingDial(&dials), 4, 512)
	tr.shed = starved.Load
	defer tr.CloseIdleConnections()
	get := func() {
		t.Helper()
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	get()
	get()
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials before starving; want 1", n)
	}
	starved.Store(true)
	get() // takes the kept connection, and closes it after
	get()
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials while starved; want 2 (nothing kept idle)", n)
	}
	if idle, _ := tr.counts(srv); idle != 0 {
		t.Fatalf("%d connections kept idle while starved", idle)
	}
}

// A request whose dial waits (at the open-file limit, say) is handed the
// connection another request frees meanwhile, as net/http does; the dial,
// when it ends, leaves its connection for later.
func TestLeanTransportHandsFreedConnectionToWaiter(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, r.URL.Path)
	}))
	defer srv.Close()
	var dials atomic.Int64
	gate := make(chan struct{})
	dial := countingDial(&dials)
	tr := newLeanTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Load() >= 1 { // every dial after the first waits for the gate
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return dial(ctx, network, addr)
	}, 4, 512)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get := func(path string, out chan<- string) {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			out <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- string(b)
	}
	slow, fast := make(chan string, 1), make(chan string, 1)
	go get("/slow", slow) // takes the first (and only ungated) connection
	<-arrived             // and holds it: its own dial is over, it waits no more
	go get("/fast", fast) // no idle connection: dials, and the dial waits at the gate
	for {
		if _, waiters := tr.counts(srv); waiters == 1 {
			break
		}
		runtime.Gosched()
	}
	close(release) // /slow answers; its connection goes to the waiting request
	if got := <-slow; got != "/slow" {
		t.Fatalf("slow: %q", got)
	}
	if got := <-fast; got != "/fast" {
		t.Fatalf("fast: %q", got)
	}
	close(gate) // the waiting dial ends: its connection is kept idle
	for {
		if idle, _ := tr.counts(srv); idle == 2 {
			break
		}
		runtime.Gosched()
	}
}

// counts says how many connections to srv t keeps idle, and how many
// requests wait on a dial to it.
func (t *leanTransport) counts(srv *httptest.Server) (idle, waiters int) {
	host := srv.Listener.Addr().String()
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle[host]), len(t.waiters[host])
}
