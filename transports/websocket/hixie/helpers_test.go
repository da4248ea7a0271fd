package hixie

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The draft's own example (draft-hixie-thewebsocketprotocol-76, section 1.3).
const (
	vecKey1   = "4 @1  46546xW%0l 1 5"
	vecKey2   = "12998 5 Y3 1  .P00"
	vecKey3   = "^n:ds[4U"
	vecAnswer = "8jKS'y:G*Co,Wxa-"
)

// safety bounds a test's wait on a socket so that a bug fails the test rather
// than hanging it; it is never what a test waits for.
const safety = 10 * time.Second

// outcome is what a test handler reports when it returns.
type outcome struct {
	draft Draft
	err   error
}

// startServer runs handler behind a real TCP listener on 127.0.0.1 and
// returns its address and the channel on which the handler reports.
func startServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, done chan<- outcome)) (string, <-chan outcome) {
	t.Helper()
	done := make(chan outcome, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, done) }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), done
}

// echoServer upgrades with opts and echoes every message until an error,
// which it reports.
func echoServer(t *testing.T, opts Options) (string, <-chan outcome) {
	return startServer(t, func(w http.ResponseWriter, r *http.Request, done chan<- outcome) {
		c, err := Upgrade(w, r, opts)
		if err != nil {
			done <- outcome{None, err}
			return
		}
		defer c.Close()
		for {
			msg, err := c.ReadMessage()
			if err == nil {
				err = c.WriteMessage(msg)
			}
			if err != nil {
				done <- outcome{c.Draft(), err}
				return
			}
		}
	})
}

// wait returns the handler's report.
func wait(t *testing.T, done <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(safety):
		t.Fatal("the handler did not return")
		return outcome{}
	}
}

// client is a hand-written hixie client for the tests.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(safety))
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// request76 is the draft's example request, for the path given, with extra
// header lines (each ending in \r\n) and an optional Content-Length.
func request76(path, extra string, contentLength bool) string {
	s := "GET " + path + " HTTP/1.1\r\n" +
		"Host: example.com\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key2: " + vecKey2 + "\r\n" +
		"Upgrade: WebSocket\r\n" +
		"Sec-WebSocket-Key1: " + vecKey1 + "\r\n" +
		"Origin: http://example.com\r\n" + extra
	if contentLength {
		s += "Content-Length: 8\r\n"
	}
	return s + "\r\n"
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

// response reads the handshake answer's status line and headers.
func (c *client) response() *http.Response {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading the answer: %v", err)
	}
	return resp
}

// handshake76 sends the draft's example and checks the 101 and the answer.
func (c *client) handshake76() {
	c.t.Helper()
	c.write(request76("/demo", "", false) + vecKey3)
	resp := c.response()
	if resp.StatusCode != 101 {
		c.t.Fatalf("status %q, want 101", resp.Status)
	}
	var answer [16]byte
	if _, err := io.ReadFull(c.br, answer[:]); err != nil {
		c.t.Fatalf("reading the 16-byte answer: %v", err)
	}
	if string(answer[:]) != vecAnswer {
		c.t.Fatalf("answer %q, want %q", answer, vecAnswer)
	}
}

// readFrame returns the next frame: ("text", payload) or ("close", nil), or
// ("eof", nil) when the server closed TCP.
func (c *client) readFrame() (string, []byte) {
	c.t.Helper()
	typ, err := c.br.ReadByte()
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return "eof", nil
	}
	if err != nil {
		c.t.Fatalf("client read: %v", err)
	}
	switch typ {
	case 0x00:
		b, err := c.br.ReadBytes(0xFF)
		if err != nil {
			c.t.Fatalf("client read text frame: %v", err)
		}
		return "text", b[:len(b)-1]
	case 0xFF:
		b, err := c.br.ReadByte()
		if err != nil || b != 0x00 {
			c.t.Fatalf("after 0xFF got %#x, %v; want 0x00", b, err)
		}
		return "close", nil
	}
	c.t.Fatalf("unexpected frame type %#x", typ)
	return "", nil
}

// expectText reads one text frame and checks its payload.
func (c *client) expectText(want string) {
	c.t.Helper()
	kind, b := c.readFrame()
	if kind != "text" || string(b) != want {
		c.t.Fatalf("got %s %q (len %d), want text of len %d", kind, trunc(b), len(b), len(want))
	}
}

// expectClosed checks that the server sent 0xFF 0x00 (if withClose) and then
// closed TCP.
func (c *client) expectClosed(withClose bool) {
	c.t.Helper()
	if withClose {
		if kind, _ := c.readFrame(); kind != "close" {
			c.t.Fatalf("got %s, want the closing handshake 0xFF 0x00", kind)
		}
	}
	if kind, b := c.readFrame(); kind != "eof" {
		c.t.Fatalf("got %s %q, want the server to close TCP", kind, trunc(b))
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return append(bytes.Clone(b[:40]), "..."...)
	}
	return b
}

func textFrame(s string) string { return "\x00" + s + "\xff" }

// bigUTF8 returns valid UTF-8 of exactly n bytes mixing 1- to 4-byte runes.
func bigUTF8(n int) string {
	var sb strings.Builder
	runes := []string{"a", "é", "日", "🎉", "z", "ж"}
	for i := 0; ; i++ {
		r := runes[i%len(runes)]
		if sb.Len()+len(r) > n {
			break
		}
		sb.WriteString(r)
	}
	for sb.Len() < n {
		sb.WriteByte('.')
	}
	return sb.String()
}
