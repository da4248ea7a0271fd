//go:build linux

package websocket

import (
	"bytes"
	"io"
	"syscall"
	"testing"
	"time"
)

// A held 101 answer that meets a full socket is not lost or cut: tryWrite
// leaves it, whole or in part, for writeRest, which sends it before the
// frames.
func TestHeldAnswerAfterAFullSocket(t *testing.T) {
	srv, cli := tcpPair(t)
	_ = srv.SetWriteBuffer(4096)
	_ = cli.SetReadBuffer(4096)
	c := newRFCConn(srv, nil, 1<<16, time.Minute, time.Minute)
	if !c.initRaw() {
		t.Fatal("no raw connection")
	}
	// Fill the socket until it takes no more.
	filled := 0
	chunk := bytes.Repeat([]byte{'.'}, 1024)
	if err := c.rc.Write(func(fd uintptr) bool {
		for {
			n, err := syscall.Write(int(fd), chunk)
			if n > 0 {
				filled += n
			}
			if err != nil {
				return true // EAGAIN: full
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	head := []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n")
	c.head = &heldAnswer{b: bytes.Clone(head)}
	frames := []byte("frames")
	n, held, err := c.tryWrite(frames)
	if err != nil || n >= len(frames) || !held {
		t.Fatalf("tryWrite on a full socket: %d of %d, held %v, %v", n, len(frames), held, err)
	}
	got := make(chan []byte, 1)
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost byte fails, not hangs
	go func() {
		b, _ := io.ReadAll(io.LimitReader(cli, int64(filled+len(head)+len(frames))))
		got <- b
	}()
	if err := c.writeRest(frames[n:], held); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if len(b) < filled || !bytes.Equal(b[filled:], append(head, frames...)) {
		t.Fatalf("after %d bytes of filler the peer read %q; want the answer, then the frames", filled, b[min(filled, len(b)):])
	}
	if c.head != nil {
		t.Fatal("the answer is still held after it was sent")
	}
}
