package websocket_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/cometkit/cometkit/server"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/websocket"
)

// The interop tests run WebSocket clients that nobody here wrote, as
// subprocesses, against the echo example's raw endpoint (ws://HOST/echo/websocket,
// one plain text message per WebSocket message):
//
//   - RFC 6455: Debian's python3-websockets (testdata/rfc_client.py) and npm's
//     ws (testdata/rfc_client.js, a devDependency of the root package.json);
//   - hybi-08: npm's ws with protocolVersion 8, and a hand-written handshake;
//   - hixie-76 and hixie-75: Perl's Protocol::WebSocket
//     (hixie/testdata/hixie_client.pl).
//
// A missing client fails the test, saying what to install; it never skips,
// so that CI cannot go green without the clients.
const (
	interopPython        = "/usr/bin/python3" // Debian's; a pyenv python3 on PATH lacks the module
	interopPythonInstall = "install it with: apt-get update && apt-get install -y python3 python3-websockets (or run `make setup`)"
	interopNodeInstall   = "install node with: apt-get update && apt-get install -y nodejs npm; then run `npm ci` in the repository root (or run `make setup`)"
	interopPerlInstall   = "install it with: apt-get update && apt-get install -y perl libprotocol-websocket-perl (or run `make setup`)"
)

// interopTimeout bounds one client subprocess; interopSafety bounds a wait
// for the server's report. Neither is what a test waits for: a bug fails
// the test instead of hanging it.
const (
	interopTimeout = 60 * time.Second
	interopSafety  = 20 * time.Second
)

// interopServer is the echo example (examples/echo) built the same way:
// server.New with the echo handler, mounted in chi at /echo, on a real TCP
// listener at 127.0.0.1. It also records each WebSocket upgrade's request
// header, and each session's end as its handler saw it.
type interopServer struct {
	addr string
	ends chan error // s.Err() of each session, when its handler returns
	log  interopLog

	mu       sync.Mutex
	upgrades []http.Header
}

func startInteropServer(t *testing.T, wso websocket.Options) *interopServer {
	t.Helper()
	is := &interopServer{ends: make(chan error, 16)}
	// The echo example's handler, word for word, plus the report at its end.
	echo := func(s *session.Session) {
		defer func() { is.ends <- s.Err() }()
		ctx := s.Context()
		for {
			msg, err := s.Recv(ctx)
			if err != nil {
				return
			}
			if err := s.Send(ctx, msg); err != nil {
				return
			}
		}
	}
	rt, err := server.New(server.HandlerFunc(echo), server.Options{
		Logger:    slog.New(slog.NewTextHandler(&is.log, nil)),
		WebSocket: wso,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if websocket.IsUpgrade(r) {
				is.mu.Lock()
				is.upgrades = append(is.upgrades, r.Header.Clone())
				is.mu.Unlock()
			}
			next.ServeHTTP(w, r)
		})
	})
	r.Mount("/echo", rt)
	hs := httptest.NewServer(r) // 127.0.0.1:0
	t.Cleanup(func() {
		rt.Close() // ends every session and waits for the handlers
		hs.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", is.log.String())
		}
	})
	is.addr = hs.Listener.Addr().String()
	return is
}

// url is the raw echo endpoint.
func (is *interopServer) url() string { return "ws://" + is.addr + "/echo/websocket" }

// upgrade returns the header of the only WebSocket upgrade request seen.
func (is *interopServer) upgrade(t *testing.T) http.Header {
	t.Helper()
	is.mu.Lock()
	defer is.mu.Unlock()
	if len(is.upgrades) != 1 {
		t.Fatalf("server saw %d WebSocket upgrade requests, want 1", len(is.upgrades))
	}
	return is.upgrades[0]
}

// end waits for a session's handler to return and gives the session's error.
func (is *interopServer) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-is.ends:
		return err
	case <-time.After(interopSafety):
		t.Fatal("no session ended on the server")
		return nil
	}
}

// wantClientClose checks that the server's session ended by the client's
// close with this code.
func (is *interopServer) wantClientClose(t *testing.T, code session.Code) {
	t.Helper()
	err := is.end(t)
	var ce *session.CloseError
	if !errors.As(err, &ce) || ce.Code != code || !ce.ByClient {
		t.Fatalf("server session ended with %v, want the client's close %d", err, int(code))
	}
}

// interopLog collects the server's log lines for a failing test's output.
type interopLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *interopLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *interopLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// interopRun runs a client to its end within interopTimeout and returns the
// lines it printed; it fails the test if the client fails.
func interopRun(t *testing.T, argv []string, stdin string) []string {
	t.Helper()
	out, errOut, err := interopExec(argv, stdin)
	if err != nil {
		t.Fatalf("%s failed: %v\nstderr: %s\nstdout: %s", argv[0], err, errOut, interopTrunc(out))
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

func interopExec(argv []string, stdin string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &o, &e
	cmd.WaitDelay = 5 * time.Second // a grandchild holding the pipes cannot hang Wait
	err = cmd.Run()
	return o.String(), e.String(), err
}

// wantLines compares a client's output with what it should have printed.
func wantLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("client printed %d lines, want %d:\n%s\nwant:\n%s", len(got), len(want),
			interopTrunc(strings.Join(got, "\n")), interopTrunc(strings.Join(want, "\n")))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %q, want %q", i, interopTrunc(got[i]), interopTrunc(want[i]))
		}
	}
}

func interopTrunc(s string) string {
	if len(s) > 300 {
		return s[:300] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// interopBig is a text of exactly n bytes in 1-, 2-, 3- and 4-byte UTF-8.
func interopBig(n int) string {
	var b strings.Builder
	for b.Len()+10 <= n {
		b.WriteString("aé日🎉") // 1 + 2 + 3 + 4 bytes
	}
	for b.Len() < n {
		b.WriteByte('x')
	}
	return b.String()
}

// interopMessages are echoed by every client: ASCII, multi-byte UTF-8 with
// an emoji, a message of exactly the default 64 KiB limit, an empty one, and
// the lengths at the edges of RFC 6455's 7-, 16- and 64-bit length fields
// (Autobahn's cases 1.1.1–1.1.7).
var interopMessages = []string{
	"hello from Go",
	"héllo wörld — 日本語 🎉 ж",
	interopBig(64 << 10),
	"",
	interopBig(125),
	interopBig(126),
	interopBig(127),
	interopBig(128),
	interopBig(64<<10 - 1),
}

// interopPong is what rfc_client.* print for the pong answering their ping
// of the 125 bytes 00 01 … 7c.
func interopPong() string {
	p := make([]byte, 125)
	for i := range p {
		p[i] = byte(i)
	}
	return "pong " + hex.EncodeToString(p)
}

// rfcClient is an RFC 6455 client program speaking testdata/rfc_client.*'s contract.
type rfcClient struct {
	name string
	argv func(t *testing.T) []string // fails the test when the client is missing
}

var rfcClients = []rfcClient{
	{"python-websockets", pythonClient},
	{"node-ws", nodeClient},
}

// pythonClient returns the command line of testdata/rfc_client.py.
func pythonClient(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat(interopPython); err != nil {
		t.Fatalf("%s not found (%v); %s", interopPython, err, interopPythonInstall)
	}
	out, errOut, err := interopExec([]string{interopPython, "-c", "import websockets; print(websockets.__version__)"}, "")
	if err != nil {
		t.Fatalf("%s cannot import websockets (%v: %s); %s", interopPython, err, strings.TrimSpace(errOut), interopPythonInstall)
	}
	t.Logf("client: Python websockets %s", strings.TrimSpace(out))
	return []string{interopPython, "testdata/rfc_client.py"}
}

// nodeClient returns the command line of testdata/rfc_client.js.
func nodeClient(t *testing.T) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found; %s", interopNodeInstall)
	}
	// Resolved from testdata/, as the script resolves it: up to the root's node_modules.
	out, errOut, err := interopExec([]string{node, "-e",
		"process.chdir('testdata'); const p = require.resolve('ws/package.json', {paths: ['.']}); console.log(require(p).version)"}, "")
	if err != nil {
		t.Fatalf("npm package ws not found (%v: %s); %s", err, strings.TrimSpace(errOut), interopNodeInstall)
	}
	if v := strings.TrimSpace(out); !strings.HasPrefix(v, "8.") {
		t.Fatalf("npm package ws is %s, want 8.x; %s", v, interopNodeInstall)
	}
	t.Logf("client: node %s, ws %s", nodeVersion(node), strings.TrimSpace(out))
	return []string{node, "testdata/rfc_client.js"}
}

func nodeVersion(node string) string {
	out, _, _ := interopExec([]string{node, "--version"}, "")
	return strings.TrimSpace(out)
}

func textLine(m string) string   { return "text " + hex.EncodeToString([]byte(m)) + "\n" }
func binaryLine(b []byte) string { return "binary " + hex.EncodeToString(b) + "\n" }
func echoLine(m string) string   { return "echo " + hex.EncodeToString([]byte(m)) }

// TestInteropRFC6455Echo: each client sends an unsolicited pong (ignored)
// and a ping with a 125-byte payload (answered with the same payload),
// echoes every message through the raw endpoint, then closes with 1000 and
// gets 1000 back; the server declines the permessage-deflate both clients
// offer, and its session ends with the client's 1000.
func TestInteropRFC6455Echo(t *testing.T) {
	for _, c := range rfcClients {
		t.Run(c.name, func(t *testing.T) {
			argv := c.argv(t)
			is := startInteropServer(t, websocket.Options{})
			var in strings.Builder
			want := []string{"extensions ", interopPong()}
			for _, m := range interopMessages {
				in.WriteString(textLine(m))
				want = append(want, echoLine(m))
			}
			want = append(want, "closed 1000")
			wantLines(t, interopRun(t, append(argv, is.url(), "echo"), in.String()), want)
			is.wantClientClose(t, session.CodeNormal)

			h := is.upgrade(t)
			if v := h.Get("Sec-WebSocket-Version"); v != "13" {
				t.Errorf("client sent Sec-WebSocket-Version %q, want 13", v)
			}
			if !strings.Contains(h.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
				t.Errorf("client offered extensions %q; the test means to show permessage-deflate declined",
					h.Get("Sec-WebSocket-Extensions"))
			}
		})
	}
}

// TestInteropRFC6455Binary: a binary message, which the raw endpoint does
// not take, is answered with close code 1003.
func TestInteropRFC6455Binary(t *testing.T) {
	for _, c := range rfcClients {
		t.Run(c.name, func(t *testing.T) {
			argv := c.argv(t)
			is := startInteropServer(t, websocket.Options{})
			lines := interopRun(t, append(argv, is.url(), "expect-close"), binaryLine([]byte{0, 1, 2, 0xff}))
			wantLines(t, lines, []string{"extensions ", "closed 1003"})
			is.end(t)
		})
	}
}

// TestInteropRFC6455TooBig: a text message one byte over the default limit
// (64 KiB) is answered with close code 1009.
func TestInteropRFC6455TooBig(t *testing.T) {
	for _, c := range rfcClients {
		t.Run(c.name, func(t *testing.T) {
			argv := c.argv(t)
			is := startInteropServer(t, websocket.Options{})
			lines := interopRun(t, append(argv, is.url(), "expect-close"), textLine(interopBig(64<<10+1)))
			wantLines(t, lines, []string{"extensions ", "closed 1009"})
			is.end(t)
		})
	}
}

// TestInteropHybi08Node: npm's ws speaking the hybi-08 draft (Chrome 14–15,
// Firefox 6–10): Sec-WebSocket-Version 8, the page's origin in
// Sec-WebSocket-Origin. It pings, echoes and closes like RFC 6455, and its
// permessage-deflate offer is declined.
func TestInteropHybi08Node(t *testing.T) {
	argv := nodeClient(t)
	is := startInteropServer(t, websocket.Options{})
	origin := "http://" + is.addr
	var in strings.Builder
	want := []string{"extensions ", interopPong()}
	for _, m := range interopMessages {
		in.WriteString(textLine(m))
		want = append(want, echoLine(m))
	}
	want = append(want, "closed 1000")
	wantLines(t, interopRun(t, append(argv, is.url(), "echo", "8", origin), in.String()), want)
	is.wantClientClose(t, session.CodeNormal)
	h := is.upgrade(t)
	if v, o, so := h.Get("Sec-WebSocket-Version"), h.Get("Origin"), h.Get("Sec-WebSocket-Origin"); v != "8" || o != "" || so != origin {
		t.Errorf("client sent version %q, Origin %q, Sec-WebSocket-Origin %q; want 8, none, %q", v, o, so, origin)
	}
	if !strings.Contains(h.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		t.Errorf("client offered extensions %q; the test means to show permessage-deflate declined",
			h.Get("Sec-WebSocket-Extensions"))
	}
}

// TestInteropHybi08RawTCP speaks hybi-08 by hand on a TCP connection: the
// handshake with Sec-WebSocket-Version: 8 and Sec-WebSocket-Origin, a masked
// text frame and its echo, and the closing handshake. A foreign
// Sec-WebSocket-Origin is refused, which shows the header is read.
func TestInteropHybi08RawTCP(t *testing.T) {
	is := startInteropServer(t, websocket.Options{})

	handshake := func(origin string) (net.Conn, *bufio.Reader, *http.Response) {
		t.Helper()
		c, err := net.Dial("tcp", is.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(interopSafety))
		// The key and its answer are RFC 6455's own example (section 1.3).
		fmt.Fprintf(c, "GET /echo/websocket HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Origin: %s\r\nSec-WebSocket-Version: 8\r\n\r\n",
			is.addr, origin)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, br, resp
	}

	t.Run("foreign-origin", func(t *testing.T) {
		_, _, resp := handshake("http://evil.example")
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign Sec-WebSocket-Origin answered %s, want 403", resp.Status)
		}
	})

	t.Run("same-origin", func(t *testing.T) {
		c, br, resp := handshake("http://" + is.addr)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("answered %s, want 101", resp.Status)
		}
		if a := resp.Header.Get("Sec-WebSocket-Accept"); a != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Fatalf("Sec-WebSocket-Accept %q, want RFC 6455's s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", a)
		}

		mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
		masked := func(op byte, payload []byte) []byte {
			if len(payload) > 125 {
				t.Fatal("masked: payload too long for a one-byte length")
			}
			f := []byte{0x80 | op, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
			for i, b := range payload {
				f = append(f, b^mask[i%4])
			}
			return f
		}
		msg := "héllo, hybi-08 🎉"
		if _, err := c.Write(masked(0x1, []byte(msg))); err != nil {
			t.Fatal(err)
		}
		want := append([]byte{0x81, byte(len(msg))}, msg...) // FIN text, unmasked
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("echo frame % x (%v), want % x", got, err, want)
		}

		if _, err := c.Write(masked(0x8, []byte{0x03, 0xe8})); err != nil { // close, 1000
			t.Fatal(err)
		}
		got = make([]byte, 4)
		if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, []byte{0x88, 0x02, 0x03, 0xe8}) {
			t.Fatalf("close frame % x (%v), want 88 02 03 e8", got, err)
		}
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after the close frames: read %d, %v; want the server to close TCP (EOF)", n, err)
		}
		is.wantClientClose(t, session.CodeNormal)
	})
}

// perlClient returns the command line of the hixie package's Perl client.
func perlClient(t *testing.T) []string {
	t.Helper()
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Fatalf("perl not found; %s", interopPerlInstall)
	}
	if _, errOut, err := interopExec([]string{perl, "-MProtocol::WebSocket::Handshake::Client", "-MProtocol::WebSocket::Frame", "-e1"}, ""); err != nil {
		t.Fatalf("Perl module Protocol::WebSocket missing (%v: %s); %s", err, strings.TrimSpace(errOut), interopPerlInstall)
	}
	return []string{perl, "hixie/testdata/hixie_client.pl"}
}

// TestInteropHixie runs Perl's Protocol::WebSocket against the echo
// example's raw endpoint in hixie-76, and in hixie-75 with AllowHixie75:
// the client checks the handshake answer (hixie-76's MD5 of the keys), the
// echoes, and the closing handshake (FF 00 back, then TCP closed).
func TestInteropHixie(t *testing.T) {
	for _, tc := range []struct {
		name, version string
		opts          websocket.Options
	}{
		{"hixie-76", "draft-ietf-hybi-00", websocket.Options{}},
		{"hixie-75", "draft-hixie-75", websocket.Options{AllowHixie75: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			argv := perlClient(t)
			is := startInteropServer(t, tc.opts)
			var in strings.Builder
			want := []string{"origin http://" + is.addr, "location " + is.url()}
			for _, m := range interopMessages {
				in.WriteString(hex.EncodeToString([]byte(m)) + "\n")
				want = append(want, echoLine(m))
			}
			want = append(want, "closed")
			wantLines(t, interopRun(t, append(argv, is.url(), tc.version), in.String()), want)
			is.wantClientClose(t, session.CodeNormal)
		})
	}
}

// TestInteropHixie75OffByDefault: without AllowHixie75, a hixie-75 client
// gets no connection.
func TestInteropHixie75OffByDefault(t *testing.T) {
	argv := perlClient(t)
	is := startInteropServer(t, websocket.Options{})
	out, errOut, err := interopExec(append(argv, is.url(), "draft-hixie-75"), hex.EncodeToString([]byte("hi"))+"\n")
	if err == nil || strings.Contains(out, "location") {
		t.Fatalf("hixie-75 client connected to a server without AllowHixie75: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	if !strings.Contains(is.log.String(), "hixie-75") {
		t.Errorf("server log does not say why it refused:\n%s", is.log.String())
	}
}
