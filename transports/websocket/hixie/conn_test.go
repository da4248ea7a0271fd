package hixie

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEcho(t *testing.T) {
	addr, done := echoServer(t, Options{})
	c := dial(t, addr)
	c.handshake76()
	for _, msg := range []string{
		"hello",
		"",
		"héllo wörld — 日本語 🎉 ж",
		"nul \x00 inside",
		bigUTF8(64 << 10), // exactly MaxMessageBytes
		strings.Repeat("x", 5000),
	} {
		c.write(textFrame(msg))
		c.expectText(msg)
	}
	// Several frames in one write come back in order.
	c.write(textFrame("one") + textFrame("two") + textFrame("three"))
	c.expectText("one")
	c.expectText("two")
	c.expectText("three")
	// The client ends with the closing handshake: answered, then TCP closed.
	c.write("\xff\x00")
	c.expectClosed(true)
	if o := wait(t, done); o.err != io.EOF {
		t.Fatalf("handler ended with %v, want io.EOF", o.err)
	}
}

// TestRefusals sends what a client must not, and checks that the server
// answers with the closing handshake, closes TCP, and names the error.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		send  string
		want  error
		close bool // 0xFF 0x00 expected before the TCP close
	}{
		{"invalid UTF-8", Options{}, textFrame("ok \xc3\x28 no"), ErrInvalidUTF8, true},
		{"invalid UTF-8 in a long frame", Options{}, textFrame(strings.Repeat("a", 9000) + "\xed\xa0\x80"), ErrInvalidUTF8, true},
		{"too large", Options{}, textFrame(strings.Repeat("a", 64<<10+1)), ErrTooLarge, true},
		{"too large (small limit)", Options{MaxMessageBytes: 10}, textFrame("0123456789a"), ErrTooLarge, true},
		{"binary frame", Options{}, "\x80\x03abc", ErrBinaryRefused, true},
		{"binary frame, two length bytes", Options{}, "\x81\x01" + strings.Repeat("b", 129), ErrBinaryRefused, true},
		{"binary frame of type 0xFF", Options{}, "\xff\x02xy", ErrBinaryRefused, true},
		{"binary frame too large", Options{}, "\x80\x84\x80\x80\x00", ErrTooLarge, true},
		{"binary frame over a small limit", Options{MaxMessageBytes: 10}, "\x80\x0bxxxxxxxxxxx", ErrTooLarge, true},
		{"length that does not end", Options{}, "\x80" + strings.Repeat("\x80", 12), ErrProtocol, true},
		{"unknown frame type", Options{}, "\x01abc\xff", ErrProtocol, true},
		{"unknown frame type too large", Options{MaxMessageBytes: 4}, "\x7fabcde\xff", ErrTooLarge, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := echoServer(t, tc.opts)
			c := dial(t, addr)
			c.handshake76()
			c.write(textFrame("ok"))
			c.expectText("ok")
			c.write(tc.send)
			o := wait(t, done)
			if !errors.Is(o.err, tc.want) || !strings.HasPrefix(o.err.Error(), "hixie: read: ") {
				t.Fatalf("handler ended with %v, want %v", o.err, tc.want)
			}
			c.expectClosed(tc.close)
		})
	}
}

func TestBareClose(t *testing.T) {
	t.Run("between frames", func(t *testing.T) {
		addr, done := echoServer(t, Options{})
		c := dial(t, addr)
		c.handshake76()
		c.write(textFrame("bye"))
		c.expectText("bye")
		c.nc.Close() // what PhantomJS's ws.close() does
		if o := wait(t, done); o.err != io.EOF {
			t.Fatalf("handler ended with %v, want io.EOF", o.err)
		}
	})
	t.Run("right after the handshake", func(t *testing.T) {
		addr, done := echoServer(t, Options{})
		c := dial(t, addr)
		c.handshake76()
		c.nc.Close()
		if o := wait(t, done); o.err != io.EOF {
			t.Fatalf("handler ended with %v, want io.EOF", o.err)
		}
	})
	t.Run("inside a frame", func(t *testing.T) {
		addr, done := echoServer(t, Options{})
		c := dial(t, addr)
		c.handshake76()
		c.write("\x00half a mess")
		c.nc.Close()
		if o := wait(t, done); !errors.Is(o.err, io.ErrUnexpectedEOF) {
			t.Fatalf("handler ended with %v, want io.ErrUnexpectedEOF", o.err)
		}
	})
	t.Run("inside a length", func(t *testing.T) {
		addr, done := echoServer(t, Options{})
		c := dial(t, addr)
		c.handshake76()
		c.write("\x80\x81")
		c.nc.Close()
		if o := wait(t, done); !errors.Is(o.err, io.ErrUnexpectedEOF) {
			t.Fatalf("handler ended with %v, want io.ErrUnexpectedEOF", o.err)
		}
	})
}

// connServer upgrades and hands the Conn to the test's goroutine, which
// returns the handler by sending on release.
func connServer(t *testing.T, opts Options) (addr string, conns <-chan *Conn, release chan<- struct{}) {
	ch := make(chan *Conn, 1)
	rel := make(chan struct{})
	addr, _ = startServer(t, func(w http.ResponseWriter, r *http.Request, done chan<- outcome) {
		c, err := Upgrade(w, r, opts)
		if err != nil {
			t.Error(err)
			close(ch)
			return
		}
		ch <- c
		<-rel
	})
	return addr, ch, rel
}

func TestServerClose(t *testing.T) {
	addr, conns, release := connServer(t, Options{})
	defer close(release)
	c := dial(t, addr)
	c.handshake76()
	sc := <-conns
	if sc.Draft() != Hixie76 || sc.RemoteAddr().String() != c.nc.LocalAddr().String() {
		t.Fatalf("Draft %v, RemoteAddr %v", sc.Draft(), sc.RemoteAddr())
	}
	if err := sc.WriteMessage("last words"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c.expectText("last words")
	c.expectClosed(true)
	if err := sc.WriteMessage("x"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := sc.ReadMessage(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
}

// TestCloseWhileReading checks that Close from another goroutine ends a
// blocked ReadMessage with net.ErrClosed.
func TestCloseWhileReading(t *testing.T) {
	addr, conns, release := connServer(t, Options{})
	defer close(release)
	c := dial(t, addr)
	c.handshake76()
	sc := <-conns
	got := make(chan error, 1)
	go func() {
		_, err := sc.ReadMessage()
		got <- err
	}()
	// Closing before the read starts or while it blocks ends it the same way.
	sc.Close()
	if err := <-got; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadMessage ended with %v, want net.ErrClosed", err)
	}
	c.expectClosed(true)
}

func TestWriteChecks(t *testing.T) {
	addr, conns, release := connServer(t, Options{})
	defer close(release)
	c := dial(t, addr)
	c.handshake76()
	sc := <-conns
	defer sc.Close()

	if err := sc.WriteMessage("bad \xff"); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("WriteMessage(invalid) = %v, want ErrInvalidUTF8", err)
	}
	if Frame("bad \xc3") != nil {
		t.Error("Frame(invalid UTF-8) should be nil")
	}
	if got := string(Frame("héllo")); got != "\x00héllo\xff" {
		t.Errorf("Frame = %q", got)
	}
	for _, b := range [][]byte{nil, {}, {0x00}, {0x01, 0xFF}, {0x00, 'a'}, {0x00, 0xFF, 'a', 0xFF}} {
		if err := sc.WritePrepared(b); !errors.Is(err, ErrProtocol) {
			t.Errorf("WritePrepared(%q) = %v, want a refusal", b, err)
		}
	}
	// One prepared frame to the same connection twice, as a broadcast would
	// to many; the bad writes above sent nothing.
	f := Frame("to everyone ✓")
	for range 2 {
		if err := sc.WritePrepared(f); err != nil {
			t.Fatal(err)
		}
	}
	if string(f) != "\x00to everyone ✓\xff" {
		t.Fatal("WritePrepared changed its frame")
	}
	c.expectText("to everyone ✓")
	c.expectText("to everyone ✓")
	if err := sc.WriteMessage(""); err != nil {
		t.Fatal(err)
	}
	c.expectText("")
}

// TestReadDeadline checks that a read deadline ends the connection with an
// error that says so.
func TestReadDeadline(t *testing.T) {
	addr, conns, release := connServer(t, Options{})
	defer close(release)
	c := dial(t, addr)
	c.handshake76()
	sc := <-conns
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := sc.ReadMessage()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadMessage = %v, want a deadline error", err)
	}
	if _, again := sc.ReadMessage(); again != err {
		t.Fatalf("second ReadMessage = %v, want the same error", again)
	}
	c.expectClosed(false)
	sc.Close()
}

// TestWriteDeadline checks that a client that does not read is cut off.
func TestWriteDeadline(t *testing.T) {
	addr, conns, release := connServer(t, Options{HandshakeTimeout: time.Second})
	defer close(release)
	c := dial(t, addr)
	c.handshake76()
	sc := <-conns
	sc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	big := Frame(strings.Repeat("z", 1<<20))
	var err error
	for i := 0; i < 256 && err == nil; i++ { // 256 MiB at most; the socket buffers fill long before
		err = sc.WritePrepared(big)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WritePrepared = %v, want a deadline error", err)
	}
	if again := sc.WriteMessage("x"); !errors.Is(again, os.ErrDeadlineExceeded) {
		t.Fatalf("write after a failed write = %v, want the same error", again)
	}
	if _, err := sc.ReadMessage(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after a failed write = %v, want net.ErrClosed", err)
	}
	if err := sc.Close(); err != nil {
		t.Fatalf("Close after a failed write = %v", err)
	}
}

// TestConcurrentReadWrite runs one reader and two writers at once (under
// -race in CI) and checks that every frame arrives whole.
func TestConcurrentReadWrite(t *testing.T) {
	const n = 300
	addr, done := startServer(t, func(w http.ResponseWriter, r *http.Request, done chan<- outcome) {
		c, err := Upgrade(w, r, Options{})
		if err != nil {
			done <- outcome{None, err}
			return
		}
		defer c.Close()
		var wg sync.WaitGroup
		for wr := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					if err := c.WriteMessage(fmt.Sprintf("w%d-%d", wr, i)); err != nil {
						return
					}
				}
			}()
		}
		count := 0
		for {
			_, err := c.ReadMessage()
			if err != nil {
				wg.Wait()
				if count != n {
					err = fmt.Errorf("read %d messages, want %d (%w)", count, n, err)
				}
				done <- outcome{c.Draft(), err}
				return
			}
			count++
		}
	})
	c := dial(t, addr)
	c.handshake76()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			if _, err := io.WriteString(c.nc, textFrame(fmt.Sprint("c", i))); err != nil {
				return
			}
		}
	}()
	next := [2]int{}
	for range 2 * n {
		kind, b := c.readFrame()
		var wr, i int
		if _, err := fmt.Sscanf(string(b), "w%d-%d", &wr, &i); kind != "text" || err != nil || wr < 0 || wr > 1 || i != next[wr] {
			t.Fatalf("got %s %q, want w%d-%d or w%d-%d", kind, b, 0, next[0], 1, next[1])
		}
		next[wr]++
	}
	<-sent
	c.write("\xff\x00")
	c.expectClosed(true)
	if o := wait(t, done); o.err != io.EOF {
		t.Fatal(o.err)
	}
}
