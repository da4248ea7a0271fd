//go:build linux && !race

// Not under the race detector: these counts rest on sync.Pool (rawOps,
// the frame buffers), and with -race a Pool drops a quarter of what is put
// back, at random, so a run can count an allocation per call (1 to 3 % of
// runs did). `make allocs` runs them without it.

package websocket

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/cometkit/cometkit/session"
)

// Writing a message costs no allocation: a broadcast to 10,000 sessions
// framed and wrote each one with four (a closure for the raw write and
// its captured results, and the frame's scratch buffer), most of the
// garbage a broadcast made.
func TestMessageWriteAllocatesNothing(t *testing.T) {
	srv, cli := tcpPair(t)
	go func() { _, _ = io.Copy(io.Discard, cli) }()
	c := newRFCConn(srv, nil, 1<<16, time.Minute, time.Minute)
	if !c.initRaw() {
		t.Fatal("no raw connection")
	}
	l := &link{conn: c, rfc: c}
	sh := &session.Shared{Topic: "news", Offset: 7, Data: "hello, every session"}
	buf := make([]byte, 0, 512)
	var seq uint64
	allocs := testing.AllocsPerRun(200, func() {
		seq++
		buf = l.message(buf[:0], session.Message{Seq: seq, Data: sh.Data, Shared: sh})
		if n, held, err := c.tryWrite(buf); err != nil || held || n != len(buf) {
			t.Fatalf("tryWrite: %d of %d, held %v, %v", n, len(buf), held, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per message framed and written, want 0", allocs)
	}
	if want := []byte("news"); !bytes.Contains(buf, want) {
		t.Fatalf("frame %q lacks the topic", buf)
	}
}

// Reading without waiting costs no allocation either (the poller's reads
// of acknowledgements).
func TestReadNBAllocatesNothing(t *testing.T) {
	srv, _ := tcpPair(t)
	c := newRFCConn(srv, nil, 1<<16, time.Minute, time.Minute)
	if !c.initRaw() {
		t.Fatal("no raw connection")
	}
	p := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.readNB(p); err != errWouldBlock {
			t.Fatalf("readNB on an empty socket: %v", err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per read, want 0", allocs)
	}
}
