package hixie

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDraftVector(t *testing.T) {
	got, err := ComputeAnswer76(vecKey1, vecKey2, []byte(vecKey3))
	if err != nil {
		t.Fatal(err)
	}
	if string(got[:]) != vecAnswer {
		t.Fatalf("answer %q, want %q", got, vecAnswer)
	}
	n1, _ := parseKey(vecKey1)
	n2, _ := parseKey(vecKey2)
	if n1 != 829309203 || n2 != 259970620 {
		t.Fatalf("numbers %d, %d; want 829309203, 259970620 (the draft's)", n1, n2)
	}
}

// TestDraftVectorOnTheWire sends the draft's example request byte for byte
// and checks the whole answer byte for byte.
func TestDraftVectorOnTheWire(t *testing.T) {
	addr, done := echoServer(t, Options{Protocol: "sample"})
	c := dial(t, addr)
	c.write(request76("/demo", "Sec-WebSocket-Protocol: sample\r\n", false) + vecKey3)
	want := "HTTP/1.1 101 WebSocket Protocol Handshake\r\n" +
		"Upgrade: WebSocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Origin: http://example.com\r\n" +
		"Sec-WebSocket-Location: ws://example.com/demo\r\n" +
		"Sec-WebSocket-Protocol: sample\r\n" +
		"\r\n" + vecAnswer
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c.br, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("answer:\n%q\nwant:\n%q", got, want)
	}
	c.write("\xff\x00")
	c.expectClosed(true)
	if o := wait(t, done); o.err != io.EOF || o.draft != Hixie76 {
		t.Fatalf("handler ended with %v (%v), want io.EOF (hixie-76)", o.err, o.draft)
	}
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want uint32
		err  string // substring; "" means no error
	}{
		{vecKey1, 829309203, ""},
		{vecKey2, 259970620, ""},
		{"0 ", 0, ""},
		{"1 ", 1, ""},
		{"4294967295 ", 4294967295, ""},
		{"000000000000000000000000000042 ", 42, ""},             // leading zeros do not overflow
		{" 4 2 ", 14, ""},                                       // 42 / 3
		{"1\t2 ", 12, ""},                                       // a tab is not a space
		{"12", 0, "no spaces"},                                  // zero spaces
		{"\t12\t", 0, "no spaces"},                              // tabs are not spaces
		{"1 0", 10, ""},                                         // 10 / 1
		{"1 1 ", 0, "not a multiple"},                           // 11 / 2
		{"7  ", 0, "not a multiple"},                            // 7 / 2
		{"4294967296 ", 0, "exceed"},                            // 2^32
		{"99999999999999999999999999999 ", 0, "exceed"},         // far over, no overflow
		{"42949672950 0", 0, "exceed"},                          // over even though /1 would be ok
		{"  ", 0, "no digits"},                                  // no digits
		{"", 0, "no digits"},                                    // empty
		{"abc def", 0, "no digits"},                             // letters only
		{"\u0663\u0664 ", 0, "no digits"},                       // Arabic-Indic digits are not digits
		{strings.Repeat(" ", 5) + "5", 1, ""},                   // 5 / 5
		{"8 " + strings.Repeat("x", 1000) + " 8", 44, ""},       // 88 / 2
		{"4 @1  46546xW%0l 1 5 ", 0, "not a multiple"},          // one more space
		{"1" + strings.Repeat(" ", 1<<16), 0, "not a multiple"}, // many spaces
	} {
		got, err := parseKey(tc.key)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("parseKey(%q) = %d, %v; want %d", trunc([]byte(tc.key)), got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errKey)):
			t.Errorf("parseKey(%q) = %d, %v; want an error about %q", trunc([]byte(tc.key)), got, err, tc.err)
		}
	}
}

func TestComputeAnswer76Errors(t *testing.T) {
	for _, tc := range []struct{ k1, k2, k3, want string }{
		{vecKey1, vecKey2, "short", "key3 is 5 bytes"},
		{vecKey1, vecKey2, "nine byte", "key3 is 9 bytes"},
		{"12", vecKey2, vecKey3, "Sec-WebSocket-Key1: no spaces"},
		{vecKey1, "1 1 ", vecKey3, "Sec-WebSocket-Key2: digits 11 not a multiple of 2 spaces"},
	} {
		_, err := ComputeAnswer76(tc.k1, tc.k2, []byte(tc.k3))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "hixie: ") {
			t.Errorf("ComputeAnswer76(%q, %q, %q) error %v, want one about %q", tc.k1, tc.k2, tc.k3, err, tc.want)
		}
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    Draft
	}{
		{"hixie-76", map[string]string{"Upgrade": "WebSocket", "Connection": "Upgrade", "Sec-WebSocket-Key1": "1 ", "Sec-WebSocket-Key2": "1 "}, Hixie76},
		{"hixie-76 any case", map[string]string{"upgrade": "websocket", "connection": "keep-alive, UPGRADE", "sec-websocket-key1": "1 ", "sec-websocket-key2": "1 "}, Hixie76},
		{"hixie-75", map[string]string{"Upgrade": "WebSocket", "Connection": "Upgrade", "Origin": "http://x"}, Hixie75},
		{"RFC 6455", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}, None},
		{"keys and a version", map[string]string{"Upgrade": "WebSocket", "Connection": "Upgrade", "Sec-WebSocket-Key1": "1 ", "Sec-WebSocket-Key2": "1 ", "Sec-WebSocket-Version": "8"}, None},
		{"key without version", map[string]string{"Upgrade": "WebSocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "x"}, None},
		{"one key", map[string]string{"Upgrade": "WebSocket", "Connection": "Upgrade", "Sec-WebSocket-Key1": "1 "}, None},
		{"no Upgrade", map[string]string{"Connection": "Upgrade", "Sec-WebSocket-Key1": "1 ", "Sec-WebSocket-Key2": "1 "}, None},
		{"Upgrade: h2c", map[string]string{"Upgrade": "h2c", "Connection": "Upgrade"}, None},
		{"no Connection", map[string]string{"Upgrade": "WebSocket"}, None},
		{"plain GET", nil, None},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		if got := Detect(r); got != tc.want {
			t.Errorf("%s: Detect = %v, want %v", tc.name, got, tc.want)
		}
	}
	if Hixie76.String() != "hixie-76" || Hixie75.String() != "hixie-75" || None.String() != "none" {
		t.Error("Draft.String")
	}
}

// TestMalformedHandshakes sends bad requests over TCP and checks each gets
// 400, Connection: close and a plain-text reason before any hijack.
func TestMalformedHandshakes(t *testing.T) {
	const up = "Upgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: http://example.com\r\n"
	keys := func(k1, k2 string) string {
		return "Sec-WebSocket-Key1: " + k1 + "\r\nSec-WebSocket-Key2: " + k2 + "\r\n"
	}
	for _, tc := range []struct {
		name, req, reason string
	}{
		{"POST", "POST / HTTP/1.1\r\nHost: h\r\n" + up + keys(vecKey1, vecKey2) + "Content-Length: 8\r\n\r\n" + vecKey3, "method must be GET"},
		{"no Host (HTTP/1.0)", "GET / HTTP/1.0\r\n" + up + keys(vecKey1, vecKey2) + "\r\n" + vecKey3, "Host missing"},
		{"no Upgrade", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n" + keys(vecKey1, vecKey2) + "\r\n", "Upgrade: WebSocket missing"},
		{"no Connection", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n" + keys(vecKey1, vecKey2) + "\r\n", "Connection: Upgrade missing"},
		{"RFC 6455", "GET / HTTP/1.1\r\nHost: h\r\n" + up + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", "RFC 6455"},
		{"Key2 missing", "GET / HTTP/1.1\r\nHost: h\r\n" + up + "Sec-WebSocket-Key1: " + vecKey1 + "\r\n\r\n", "Sec-WebSocket-Key2 missing"},
		{"Key1 missing", "GET / HTTP/1.1\r\nHost: h\r\n" + up + "Sec-WebSocket-Key2: " + vecKey2 + "\r\n\r\n", "Sec-WebSocket-Key1 missing"},
		{"zero spaces", "GET / HTTP/1.1\r\nHost: h\r\n" + up + keys("1234", vecKey2) + "\r\n" + vecKey3, "Sec-WebSocket-Key1: no spaces"},
		{"non-integral", "GET / HTTP/1.1\r\nHost: h\r\n" + up + keys(vecKey1, "7  x") + "\r\n" + vecKey3, "Sec-WebSocket-Key2: digits 7 not a multiple of 2 spaces"},
		{"over 2^32-1", "GET / HTTP/1.1\r\nHost: h\r\n" + up + keys("4294967296 ", vecKey2) + "\r\n" + vecKey3, "Sec-WebSocket-Key1: digits exceed 4294967295"},
		{"no digits", "GET / HTTP/1.1\r\nHost: h\r\n" + up + keys(vecKey1, "a b c") + "\r\n" + vecKey3, "Sec-WebSocket-Key2: no digits"},
		{"two Key1", "GET / HTTP/1.1\r\nHost: h\r\n" + up + keys(vecKey1, vecKey2) + "Sec-WebSocket-Key1: " + vecKey1 + "\r\n\r\n" + vecKey3, "Sec-WebSocket-Key1 sent 2 times"},
		{"Content-Length 5", "GET / HTTP/1.1\r\nHost: h\r\n" + up + keys(vecKey1, vecKey2) + "Content-Length: 5\r\n\r\n12345", "Content-Length must be 8"},
		{"hixie-75 not allowed", "GET / HTTP/1.1\r\nHost: h\r\n" + up + "\r\n", "hixie-75 handshake refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := echoServer(t, Options{})
			c := dial(t, addr)
			c.write(tc.req)
			resp := c.response()
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Fatalf("status %q, want 400", resp.Status)
			}
			if !resp.Close { // ReadResponse turns Connection: close into Close
				t.Errorf("no Connection: close")
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", ct)
			}
			if !strings.Contains(string(body), tc.reason) {
				t.Errorf("body %q, want a reason containing %q", body, tc.reason)
			}
			o := wait(t, done)
			if !errors.Is(o.err, ErrBadHandshake) || !strings.Contains(o.err.Error(), tc.reason) {
				t.Errorf("Upgrade error %v, want ErrBadHandshake with %q", o.err, tc.reason)
			}
		})
	}
}

// TestMissingHostDirect covers a request without Host that net/http would
// not let through on HTTP/1.1 (another server framework might).
func TestMissingHostDirect(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = ""
	r.Header.Set("Upgrade", "WebSocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Key1", vecKey1)
	r.Header.Set("Sec-WebSocket-Key2", vecKey2)
	w := httptest.NewRecorder()
	if _, err := Upgrade(w, r, Options{}); !errors.Is(err, ErrBadHandshake) {
		t.Fatalf("error %v, want ErrBadHandshake", err)
	}
	if w.Code != 400 || !strings.Contains(w.Body.String(), "Host missing") {
		t.Fatalf("got %d %q", w.Code, w.Body)
	}
	// Header injection through values echoed in the answer is refused.
	r.Host = "example.com"
	r.Header.Set("Origin", "http://x\r\nSet-Cookie: a=b")
	w = httptest.NewRecorder()
	if _, err := Upgrade(w, r, Options{}); !errors.Is(err, ErrBadHandshake) || w.Code != 400 {
		t.Fatalf("Origin with CRLF: %v, %d; want 400", err, w.Code)
	}
}

// TestKey3 covers the eight key bytes sent with and without Content-Length,
// in the same write as the headers and in a later one.
func TestKey3(t *testing.T) {
	for _, contentLength := range []bool{false, true} {
		for _, separate := range []bool{false, true} {
			name := map[bool]string{false: "no Content-Length", true: "Content-Length 8"}[contentLength] +
				map[bool]string{false: ", same write", true: ", separate write"}[separate]
			t.Run(name, func(t *testing.T) {
				entered := make(chan struct{})
				addr, done := startServer(t, func(w http.ResponseWriter, r *http.Request, done chan<- outcome) {
					close(entered) // the headers are parsed; key3 may not be here yet
					c, err := Upgrade(w, r, Options{})
					if err != nil {
						done <- outcome{None, err}
						return
					}
					defer c.Close()
					msg, err := c.ReadMessage()
					if err == nil {
						err = c.WriteMessage(msg)
					}
					done <- outcome{c.Draft(), err}
				})
				c := dial(t, addr)
				req := request76("/demo", "", contentLength)
				if separate {
					c.write(req)
					<-entered
					c.write(vecKey3)
				} else {
					c.write(req + vecKey3)
				}
				resp := c.response()
				if resp.StatusCode != 101 {
					t.Fatalf("status %q", resp.Status)
				}
				answer := make([]byte, 16)
				if _, err := io.ReadFull(c.br, answer); err != nil || string(answer) != vecAnswer {
					t.Fatalf("answer %q, %v; want %q", answer, err, vecAnswer)
				}
				c.write(textFrame("after key3"))
				c.expectText("after key3")
				if o := wait(t, done); o.err != nil {
					t.Fatal(o.err)
				}
				c.expectClosed(true)
			})
		}
	}
}

// TestKey3Missing checks that a client that sends fewer than eight key bytes
// is cut off at HandshakeTimeout, with no answer.
func TestKey3Missing(t *testing.T) {
	const timeout = 150 * time.Millisecond
	addr, done := echoServer(t, Options{HandshakeTimeout: timeout})
	c := dial(t, addr)
	start := time.Now()
	c.write(request76("/demo", "", false) + vecKey3[:3])
	o := wait(t, done)
	if !errors.Is(o.err, os.ErrDeadlineExceeded) || !strings.Contains(o.err.Error(), "8 key bytes") {
		t.Fatalf("Upgrade error %v, want a deadline on the 8 key bytes", o.err)
	}
	if elapsed := time.Since(start); elapsed < timeout {
		t.Fatalf("gave up after %v, before the %v deadline", elapsed, timeout)
	}
	b, err := io.ReadAll(c.br)
	if len(b) != 0 || err != nil {
		t.Fatalf("client read %q, %v; want a bare close", b, err)
	}
}

func TestHixie75(t *testing.T) {
	req := "GET /chat?room=7 HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nHost: example.com:8080\r\n" +
		"Origin: http://example.com:8080\r\nWebSocket-Protocol: chat\r\n\r\n"
	t.Run("refused by default", func(t *testing.T) {
		addr, done := echoServer(t, Options{})
		c := dial(t, addr)
		c.write(req)
		if resp := c.response(); resp.StatusCode != 400 {
			t.Fatalf("status %q, want 400", resp.Status)
		}
		if o := wait(t, done); !errors.Is(o.err, ErrBadHandshake) {
			t.Fatal(o.err)
		}
	})
	t.Run("Allow75", func(t *testing.T) {
		addr, done := echoServer(t, Options{Allow75: true, Protocol: "chat"})
		c := dial(t, addr)
		c.write(req + textFrame("sent before the answer"))
		want := "HTTP/1.1 101 Web Socket Protocol Handshake\r\n" +
			"Upgrade: WebSocket\r\n" +
			"Connection: Upgrade\r\n" +
			"WebSocket-Origin: http://example.com:8080\r\n" +
			"WebSocket-Location: ws://example.com:8080/chat?room=7\r\n" +
			"WebSocket-Protocol: chat\r\n" +
			"\r\n"
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c.br, got); err != nil || string(got) != want {
			t.Fatalf("answer %q, %v; want %q", got, err, want)
		}
		c.expectText("sent before the answer")
		c.write(textFrame("héllo"))
		c.expectText("héllo")
		c.nc.Close()
		if o := wait(t, done); o.err != io.EOF || o.draft != Hixie75 {
			t.Fatalf("handler ended with %v (%v), want io.EOF (hixie-75)", o.err, o.draft)
		}
	})
}

// TestLocationAndProtocol checks the echoed Origin, the Location's scheme
// and path, and when the subprotocol is named.
func TestLocationAndProtocol(t *testing.T) {
	for _, tc := range []struct {
		name, path, extra, protocol string
		location, wantProto         string
	}{
		{"query kept", "/a/b?x=1&y=%20z", "", "", "ws://example.com/a/b?x=1&y=%20z", ""},
		{"X-Forwarded-Proto https", "/s", "X-Forwarded-Proto: HTTPS\r\n", "", "wss://example.com/s", ""},
		{"X-Forwarded-Proto list", "/s", "X-Forwarded-Proto: https, http\r\n", "", "wss://example.com/s", ""},
		{"X-Forwarded-Proto http", "/s", "X-Forwarded-Proto: http\r\n", "", "ws://example.com/s", ""},
		{"protocol matches", "/", "Sec-WebSocket-Protocol: chat\r\n", "chat", "ws://example.com/", "chat"},
		{"protocol differs", "/", "Sec-WebSocket-Protocol: other\r\n", "chat", "ws://example.com/", ""},
		{"protocol not asked", "/", "", "chat", "ws://example.com/", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := echoServer(t, Options{Protocol: tc.protocol})
			c := dial(t, addr)
			c.write(request76(tc.path, tc.extra, false) + vecKey3)
			resp := c.response()
			if resp.StatusCode != 101 {
				t.Fatalf("status %q", resp.Status)
			}
			h := resp.Header
			if got := h.Get("Sec-WebSocket-Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if got := h.Get("Sec-WebSocket-Origin"); got != "http://example.com" {
				t.Errorf("Origin %q", got)
			}
			if got, ok := h["Sec-Websocket-Protocol"]; (tc.wantProto == "") != !ok || (ok && got[0] != tc.wantProto) {
				t.Errorf("Protocol %q (present %v), want %q", got, ok, tc.wantProto)
			}
			c.nc.Close()
			if o := wait(t, done); o.err != io.EOF {
				t.Fatal(o.err)
			}
		})
	}
}

// TestTLSLocation checks wss:// when the request came over TLS.
func TestTLSLocation(t *testing.T) {
	done := make(chan outcome, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, Options{})
		if err != nil {
			done <- outcome{None, err}
			return
		}
		defer c.Close()
		msg, err := c.ReadMessage()
		if err == nil {
			err = c.WriteMessage(msg)
		}
		done <- outcome{c.Draft(), err}
	}))
	defer srv.Close()
	nc, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(safety))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.write(request76("/secure", "", false) + vecKey3)
	resp := c.response()
	if got := resp.Header.Get("Sec-WebSocket-Location"); got != "wss://example.com/secure" {
		t.Fatalf("Location %q", got)
	}
	answer := make([]byte, 16)
	io.ReadFull(c.br, answer)
	c.write(textFrame("over TLS"))
	c.expectText("over TLS")
	if o := wait(t, done); o.err != nil {
		t.Fatal(o.err)
	}
}

// unwrapper is middleware's ResponseWriter: it hides http.Hijacker but
// offers Unwrap, which http.ResponseController follows.
type unwrapper struct{ rw http.ResponseWriter }

func (u unwrapper) Header() http.Header         { return u.rw.Header() }
func (u unwrapper) Write(b []byte) (int, error) { return u.rw.Write(b) }
func (u unwrapper) WriteHeader(code int)        { u.rw.WriteHeader(code) }
func (u unwrapper) Unwrap() http.ResponseWriter { return u.rw }

func TestUpgradeBehindMiddleware(t *testing.T) {
	addr, done := startServer(t, func(w http.ResponseWriter, r *http.Request, done chan<- outcome) {
		if _, ok := any(unwrapper{w}).(http.Hijacker); ok {
			panic("the wrapper must not be a Hijacker itself")
		}
		c, err := Upgrade(unwrapper{w}, r, Options{})
		if err != nil {
			done <- outcome{None, err}
			return
		}
		defer c.Close()
		msg, err := c.ReadMessage()
		if err == nil {
			err = c.WriteMessage(msg)
		}
		done <- outcome{c.Draft(), err}
	})
	c := dial(t, addr)
	c.handshake76()
	c.write(textFrame("wrapped"))
	c.expectText("wrapped")
	if o := wait(t, done); o.err != nil {
		t.Fatal(o.err)
	}
}

// A ResponseWriter that cannot be hijacked gets a 500 and an error, not a panic.
func TestUpgradeNoHijack(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Upgrade", "WebSocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Key1", vecKey1)
	r.Header.Set("Sec-WebSocket-Key2", vecKey2)
	w := httptest.NewRecorder()
	c, err := Upgrade(w, r, Options{})
	if c != nil || err == nil || !errors.Is(err, http.ErrNotSupported) || w.Code != 500 {
		t.Fatalf("got %v, %v, %d; want ErrNotSupported and 500", c, err, w.Code)
	}
}
