package websocket

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// byteConn is a net.Conn that reads a fixed byte string and swallows writes.
type byteConn struct {
	r *bytes.Reader
}

func (c *byteConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *byteConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *byteConn) Close() error                     { return nil }
func (c *byteConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *byteConn) SetDeadline(time.Time) error      { return nil }
func (c *byteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *byteConn) SetWriteDeadline(time.Time) error { return nil }

func clientFrames(frames ...ws.Frame) []byte {
	var b bytes.Buffer
	for _, f := range frames {
		_ = ws.WriteFrame(&b, ws.MaskFrame(f))
	}
	return b.Bytes()
}

// FuzzRFCReadMessage: whatever bytes a peer sends, the read loop neither
// panics nor returns a message over the limit or invalid UTF-8, and every
// end of the connection is a *CloseError.
func FuzzRFCReadMessage(f *testing.F) {
	f.Add(clientFrames(ws.NewTextFrame([]byte("hello"))))
	f.Add(clientFrames(ws.NewFrame(ws.OpText, false, []byte("frag")), ws.NewPingFrame([]byte("p")),
		ws.NewFrame(ws.OpContinuation, true, []byte("ment"))))
	f.Add(clientFrames(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "bye"))))
	f.Add(clientFrames(ws.NewTextFrame([]byte{0xff})))
	f.Add(clientFrames(ws.NewBinaryFrame([]byte{1})))
	f.Add(clientFrames(ws.NewTextFrame(make([]byte, 300))))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 256
		c := newRFCConn(&byteConn{r: bytes.NewReader(in)}, nil, limit, 0, time.Second)
		for i := 0; i < 1000; i++ {
			msg, err := c.ReadMessage()
			if err != nil {
				var ce *CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("error %v is not a *CloseError", err)
				}
				return
			}
			if len(msg) > limit || !utf8.ValidString(msg) {
				t.Fatalf("message of %d bytes, valid UTF-8 %v", len(msg), utf8.ValidString(msg))
			}
		}
	})
}

func TestRFCReadMessageEndsOnEOF(t *testing.T) {
	c := newRFCConn(&byteConn{r: bytes.NewReader(nil)}, nil, 10, 0, time.Second)
	_, err := c.ReadMessage()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != CodeAbnormal || !errors.Is(err, io.EOF) {
		t.Fatalf("%v", err)
	}
}
