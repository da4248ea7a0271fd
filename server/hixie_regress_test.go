package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/cometkit/cometkit/session"
)

// hixieDial opens a hixie-76 connection (the draft's own key example).
func hixieDial(t *testing.T, rawURL string) (net.Conn, *bufio.Reader) {
	t.Helper()
	u, _ := url.Parse(rawURL)
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key1: 4 @1  46546xW%%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n^n:ds[4U",
		u.RequestURI(), u.Host)
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("hixie handshake: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	answer := make([]byte, 16)
	if _, err := io.ReadFull(br, answer); err != nil || string(answer) != "8jKS'y:G*Co,Wxa-" {
		t.Fatalf("hixie answer %q %v", answer, err)
	}
	return nc, br
}

// hixieNext reads one text frame; io.EOF after the closing handshake FF 00.
func hixieNext(br *bufio.Reader) (string, error) {
	typ, err := br.ReadByte()
	if err != nil {
		return "", err
	}
	if typ == 0xFF {
		b, _ := br.ReadByte()
		return "", fmt.Errorf("closing handshake FF %02x: %w", b, io.EOF)
	}
	s, err := br.ReadString(0xFF)
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

// Several queued messages go out as one batch of hixie frames; a hixie peer
// (Safari 5) gets each of them. (The batch was once refused whole.)
func TestWebSocketHixieSessionBatch(t *testing.T) {
	ts := newTestServer(t, newRecorder(), Options{})
	c := ts.negotiate(t)
	s := ts.Session(c.SessionID)
	for _, m := range []string{"one", "two"} {
		if err := s.Send(testCtx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	_, br := hixieDial(t, sessionWS(c, 0))
	for _, want := range []string{"m1:one", "m2:two"} {
		got, err := hixieNext(br)
		if err != nil || got != want {
			t.Fatalf("got %q %v, want %q", got, err, want)
		}
	}
}

// The same on the raw endpoint, where a lost batch could not be replayed.
func TestWebSocketHixieRawBurst(t *testing.T) {
	ts := newTestServer(t, HandlerFunc(func(s *session.Session) {
		for i := 0; i < 100; i++ {
			if s.Offer(fmt.Sprint(i)) != nil {
				return
			}
		}
		s.Recv(testCtx(t))
	}), Options{})
	_, br := hixieDial(t, ts.base+"/websocket")
	for i := 0; i < 100; i++ {
		got, err := hixieNext(br)
		if err != nil || got != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q %v", i, got, err)
		}
	}
}
