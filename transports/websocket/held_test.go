package websocket

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

// writeLog records each Write on the server's side of a connection.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *writeLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *writeLog) first() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.writes) == 0 {
		return nil
	}
	return c.writes[0]
}

type loggingListener struct {
	net.Listener
	conns chan *writeLog
}

func (l loggingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wl := &writeLog{Conn: c}
	select {
	case l.conns <- wl:
	default: // a test that does not look at this connection
	}
	return wl, nil
}

// openServer serves ServeOpen for a new session on each request, over
// connections whose writes it records.
func openServer(t *testing.T, opening string) (*httptest.Server, chan *writeLog) {
	t.Helper()
	tr := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	cfg := session.Config{}.Defaults()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.New(session.NewID(), session.Info{}, &cfg, nil)
		t.Cleanup(func() { s.Terminate(session.CodeGoingAway, "test over") })
		tr.ServeOpen(w, r, s, opening)
	}))
	conns := make(chan *writeLog, 4)
	ts.Listener = loggingListener{Listener: ts.Listener, conns: conns}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, conns
}

// A negotiating connection's 101 answer goes out in the same write as its
// first frames (the o frame with the session's opening): one system call
// per connect, not two.
func TestOpeningGoesWithTheHandshake(t *testing.T) {
	const opening = `{"sid":"s1","token":"t1"}`
	ts, conns := openServer(t, opening)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/negotiate/websocket")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	f, err := ws.ReadFrame(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.ParseFrame(string(f.Payload))
	if err != nil || got.Kind != wire.KindOpen || got.Data != opening {
		t.Fatalf("first frame %q (%v); want the o frame with %s", f.Payload, err, opening)
	}
	first := (<-conns).first()
	if !bytes.HasPrefix(first, []byte("HTTP/1.1 101 ")) {
		t.Fatalf("first write %q; want the 101 answer", first)
	}
	if !bytes.Contains(first, f.Payload) {
		t.Fatalf("first write %q lacks the o frame %q: the answer and the frames went in two writes", first, f.Payload)
	}
}

// A refused handshake still gets its answer (426 for a version we do not
// speak, 400 for no key) when the answer is held for the first frames.
func TestHeldRefusalIsSent(t *testing.T) {
	ts, _ := openServer(t, "{}")
	for _, tc := range []struct {
		name, version, key, want string
	}{
		{"unknown version", "12", "dGhlIHNhbXBsZSBub25jZQ==", "HTTP/1.1 426 "},
		{"no key", "13", "", "HTTP/1.1 400 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			req := "GET /negotiate/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Version: " + tc.version + "\r\n"
			if tc.key != "" {
				req += "Sec-WebSocket-Key: " + tc.key + "\r\n"
			}
			if _, err := io.WriteString(c, req+"\r\n"); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, tc.want) {
				t.Fatalf("answer %q (%v); want %q", line, err, tc.want)
			}
		})
	}
}

// A client that sends its handshake and half-closes still gets the held
// 101 answer: the reader meets the end first and ends the connection, and
// the answer goes out before it closes.
func TestHeldAnswerSurvivesAHalfClose(t *testing.T) {
	ts, _ := openServer(t, "{}")
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req := "GET /negotiate/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 101 ")) {
			t.Fatalf("trial %d: read %q (%v); want the 101 answer", i, got, err)
		}
	}
}
