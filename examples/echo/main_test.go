package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cometkit/cometkit/internal/testclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEchoExample(t *testing.T) {
	r, rt, err := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(r)
	defer hs.Close()
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	resp, err := hs.Client().Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `new CometKit("/echo"`) {
		t.Fatalf("page: %d", resp.StatusCode)
	}

	c, err := testclient.Negotiate(ctx, hs.Client(), hs.URL+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"hello", "ünïcode 😀"} {
		if _, err := c.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
		res, err := c.Poll(ctx)
		if err != nil || len(res.Messages) != 1 || res.Messages[0] != m {
			t.Fatalf("echo of %q: %+v %v", m, res, err)
		}
	}
}

// The raw endpoint echoes for a plain WebSocket client in every dialect.
func TestEchoWebSocketEveryDialect(t *testing.T) {
	r, rt, err := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(r)
	defer hs.Close()
	defer rt.Close()
	u, _ := url.Parse(hs.URL)
	msg := "ünïcode 😀"
	for _, tc := range []struct {
		name    string
		headers string
		body    string
		status  string
		frame   func(string) []byte
	}{
		{"rfc6455", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
			"", "HTTP/1.1 101", maskedText},
		{"hybi-08", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
			"", "HTTP/1.1 101", maskedText},
		// The draft's own example keys; its answer is 8jKS'y:G*Co,Wxa-.
		{"hixie-76", "Upgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nOrigin: " + hs.URL + "\r\n",
			"^n:ds[4U", "HTTP/1.1 101 WebSocket Protocol Handshake", hixieText},
		{"hixie-75", "Upgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: " + hs.URL + "\r\n",
			"", "HTTP/1.1 101 Web Socket Protocol Handshake", hixieText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(nc, "GET /echo/websocket HTTP/1.1\r\nHost: %s\r\n%s\r\n%s", u.Host, tc.headers, tc.body)
			br := bufio.NewReader(nc)
			status, _ := br.ReadString('\n')
			if !strings.HasPrefix(status, tc.status) {
				t.Fatalf("status line %q", status)
			}
			for line, _ := br.ReadString('\n'); line != "\r\n"; line, _ = br.ReadString('\n') {
			}
			if tc.name == "hixie-76" {
				answer := make([]byte, 16)
				if _, err := io.ReadFull(br, answer); err != nil || string(answer) != "8jKS'y:G*Co,Wxa-" {
					t.Fatalf("hixie-76 answer %q %v", answer, err)
				}
			}
			nc.Write(tc.frame(msg))
			got, err := readText(br, tc.name)
			if err != nil || got != msg {
				t.Fatalf("echo %q %v", got, err)
			}
		})
	}
}

// maskedText is an RFC 6455 client text frame (masked, short).
func maskedText(s string) []byte {
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(s)), mask[0], mask[1], mask[2], mask[3]}
	for i := 0; i < len(s); i++ {
		b = append(b, s[i]^mask[i%4])
	}
	return b
}

func hixieText(s string) []byte { return append(append([]byte{0}, s...), 0xFF) }

func readText(br *bufio.Reader, dialect string) (string, error) {
	if strings.HasPrefix(dialect, "hixie") {
		if b, err := br.ReadByte(); err != nil || b != 0 {
			return "", fmt.Errorf("frame type %x %v", b, err)
		}
		s, err := br.ReadString(0xFF)
		return strings.TrimSuffix(s, "\xff"), err
	}
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return "", err
	}
	if h[0] != 0x81 || h[1] > 125 {
		return "", fmt.Errorf("unexpected header %x", h)
	}
	p := make([]byte, h[1])
	_, err := io.ReadFull(br, p)
	return string(p), err
}
