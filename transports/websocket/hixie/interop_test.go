package hixie

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// interopInstall says what CI and developers must install for TestInterop.
const interopInstall = "install it with: apt-get update && apt-get install -y perl libprotocol-websocket-perl"

// perlClient returns the perl to run testdata/hixie_client.pl with, and fails
// the test, saying what to install, when perl or Protocol::WebSocket is missing.
func perlClient(t *testing.T) string {
	t.Helper()
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Fatalf("perl not found; %s", interopInstall)
	}
	if out, err := exec.Command(perl, "-MProtocol::WebSocket::Handshake::Client", "-MProtocol::WebSocket::Frame", "-e1").CombinedOutput(); err != nil {
		t.Fatalf("Perl module Protocol::WebSocket missing (%v: %s); %s", err, bytes.TrimSpace(out), interopInstall)
	}
	return perl
}

// TestInterop runs an independent hixie client, Perl's Protocol::WebSocket
// (testdata/hixie_client.pl), against the server: it checks the hixie-76
// answer itself, then echoes ASCII, multi-byte UTF-8 and a 64 KB message and
// ends with the closing handshake. It fails, and does not skip, when the
// client is missing, so that CI cannot go green without it.
func TestInterop(t *testing.T) {
	perl := perlClient(t)
	messages := []string{
		"hello from Go",
		"héllo wörld — 日本語 🎉 ж",
		bigUTF8(64 << 10),
		"",
	}
	for _, tc := range []struct {
		version string
		draft   Draft
	}{
		{"draft-ietf-hybi-00", Hixie76},
		{"draft-hixie-75", Hixie75},
	} {
		t.Run(tc.draft.String(), func(t *testing.T) {
			addr, done := echoServer(t, Options{Allow75: true})
			url := "ws://" + addr + "/echo?room=1"

			var stdin, stdout, stderr bytes.Buffer
			for _, m := range messages {
				stdin.WriteString(hex.EncodeToString([]byte(m)) + "\n")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, perl, "testdata/hixie_client.pl", url, tc.version)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = &stdin, &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("client failed: %v\nstderr: %s\nstdout: %s", err, stderr.Bytes(), trunc(stdout.Bytes()))
			}

			lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
			want := []string{"origin http://" + addr, "location " + url}
			for _, m := range messages {
				want = append(want, "echo "+hex.EncodeToString([]byte(m)))
			}
			want = append(want, "closed")
			if len(lines) != len(want) {
				t.Fatalf("client printed %d lines, want %d:\n%s", len(lines), len(want), trunc(stdout.Bytes()))
			}
			for i := range want {
				if lines[i] != want[i] {
					t.Errorf("line %d: %q, want %q", i, trunc([]byte(lines[i])), trunc([]byte(want[i])))
				}
			}
			o := wait(t, done)
			if o.err != io.EOF || o.draft != tc.draft {
				t.Fatalf("handler ended with %v (%v), want io.EOF (%v)", o.err, o.draft, tc.draft)
			}
		})
	}
}

// TestInteropRefusesBadAnswer proves the external client really checks the
// hixie-76 answer: a server that answers with the wrong 16 bytes is refused.
// Without this, TestInterop could pass against a client that checks nothing.
func TestInteropRefusesBadAnswer(t *testing.T) {
	perl := perlClient(t)
	addr, done := startServer(t, func(w http.ResponseWriter, r *http.Request, done chan<- outcome) {
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			done <- outcome{None, err}
			return
		}
		defer nc.Close()
		key3 := make([]byte, 8)
		io.ReadFull(brw, key3)
		io.WriteString(nc, "HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Origin: "+r.Header.Get("Origin")+"\r\nSec-WebSocket-Location: ws://"+r.Host+r.RequestURI+"\r\n\r\n"+
			"0123456789abcdef")
		io.Copy(io.Discard, brw) // until the client gives up
		done <- outcome{Hixie76, nil}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, perl, "testdata/hixie_client.pl", "ws://"+addr+"/", "draft-ietf-hybi-00")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = strings.NewReader("41\n"), &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "Checksum is wrong") {
		t.Fatalf("client accepted a wrong answer: %v, %s", err, stderr.Bytes())
	}
	wait(t, done)
}
