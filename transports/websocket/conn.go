package websocket

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/websocket/hixie"
)

// Conn is an upgraded WebSocket connection of any dialect, carrying text
// messages. One goroutine reads; writes may come from any goroutine.
type Conn interface {
	// ReadMessage returns the next text message. Its error is a *CloseError
	// saying how the connection ended (the peer's close, a violation and the
	// code sent for it, or a broken connection).
	ReadMessage() (string, error)
	// AppendText appends msg framed for this dialect, to send with Write.
	AppendText(dst []byte, msg string) []byte
	// Write sends already-framed bytes, within the write timeout.
	Write(framed []byte) error
	// Ping asks the peer for a pong (RFC 6455); the drafts have none.
	Ping() error
	// Close sends the dialect's close (RFC 6455: with code and reason;
	// hixie: FF 00) if not yet sent, and closes the connection.
	Close(code session.Code, reason string) error
	// SetReadDeadline bounds the wait for the peer's next frame.
	SetReadDeadline(t time.Time) error
	// Dialect names the protocol spoken: "rfc6455", "hixie-76", "hixie-75".
	Dialect() string
}

// CloseError tells how a connection ended.
type CloseError struct {
	// Code is the peer's close code, or the code we closed with for its
	// violation, or 1006 when the connection just broke.
	Code session.Code
	// Reason is the peer's reason or ours.
	Reason string
	// ByPeer is true when the peer sent the close.
	ByPeer bool
	Err    error
}

// CodeAbnormal is RFC 6455's 1006: closed without a close frame.
const CodeAbnormal session.Code = 1006

// CodeUnsupportedData is RFC 6455's 1003: a binary message where only text is taken.
const CodeUnsupportedData session.Code = 1003

func (e *CloseError) Error() string {
	who := "we"
	if e.ByPeer {
		who = "peer"
	}
	if e.Err != nil {
		return fmt.Sprintf("websocket closed (%s, %d %s): %v", who, int(e.Code), e.Reason, e.Err)
	}
	return fmt.Sprintf("websocket closed (%s, %d %s)", who, int(e.Code), e.Reason)
}

func (e *CloseError) Unwrap() error { return e.Err }

// rfcConn is an RFC 6455 server connection on gobwas/ws's frame functions,
// with its own read loop so that every violation gets its close code.
//
// An idle server holds thousands: the fields are in an order that packs
// them into 120 bytes (size class 128).
type rfcConn struct {
	nc           net.Conn
	pre          []byte // what the hijack's reader held, read before nc
	readTimeout  time.Duration
	writeTimeout time.Duration

	// Parked (see link.readRun): no read waits between messages, so the
	// read deadline is the link's watchdog's, and reads go through br, a
	// pooled buffer held only while there are bytes to take.
	br      *bufio.Reader
	readErr error // met by the poller's read (link.fastRead): the next read returns it

	// rc, when set, lets the link read and write without waiting
	// (readNB, tryWrite): the socket is a *net.TCPConn or *net.UnixConn.
	rc syscall.RawConn

	wmu       sync.Mutex
	head      *heldAnswer // under wmu: the 101 answer, not yet sent, to go before the first write's bytes
	maxMsg    int32       // bytes (a larger bound is taken as 2 GiB - 1)
	parked    bool        // see br
	closeSent bool        // under wmu
	closed    bool        // under wmu
}

func newRFCConn(nc net.Conn, br *bufio.Reader, maxMsg int, readTimeout, writeTimeout time.Duration) *rfcConn {
	c := &rfcConn{nc: nc, maxMsg: int32(min(maxMsg, math.MaxInt32)), readTimeout: readTimeout, writeTimeout: writeTimeout}
	if br != nil && br.Buffered() > 0 {
		c.pre, _ = br.Peek(br.Buffered())
		c.pre = bytes.Clone(c.pre) // and br, net/http's, goes
	}
	return c
}

// source reads an rfcConn's bytes: first what the hijack's reader held,
// then the connection.
type source rfcConn

func (s *source) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		if s.pre = s.pre[n:]; len(s.pre) == 0 {
			s.pre = nil
		}
		return n, nil
	}
	if s.readErr != nil {
		return 0, s.readErr
	}
	return s.nc.Read(p)
}

// errWouldBlock: the socket has nothing to read, or no room to write, now.
var errWouldBlock = errors.New("websocket: would block")

// writeRest finishes what tryWrite left, waiting up to the write timeout.
func (c *rfcConn) writeRest(b []byte, held bool) error {
	if !held {
		c.wmu.Lock()
	}
	defer c.wmu.Unlock()
	if c.closed || c.closeSent {
		return net.ErrClosed
	}
	return c.writeLocked(b)
}

// appendRFCText appends msg as a server's text frame: unmasked, FIN.
func appendRFCText[T string | []byte](dst []byte, msg T) []byte {
	n := len(msg)
	switch {
	case n <= 125:
		dst = append(dst, 0x81, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x81, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, msg...)
}

// pingFrame is a server's empty ping.
var pingFrame = ws.MustCompileFrame(ws.NewPingFrame(nil))

// readBuffers are the buffers of parked connections' reads, held from a
// readiness report to the next park.
var readBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func (c *rfcConn) Dialect() string { return "rfc6455" }

func (c *rfcConn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// ReadMessage implements Conn: it answers pings, takes pongs as signs of
// life, joins fragments, and closes with 1002 (protocol), 1003 (binary),
// 1007 (invalid UTF-8) or 1009 (too big) as RFC 6455 asks.
func (c *rfcConn) ReadMessage() (string, error) {
	msg, _, err := c.next(false)
	return msg, err
}

// next reads the next message, as ReadMessage; with dry it also returns
// (got false) after a control frame when no byte of another frame has
// been read, so that a parked reader can park again.
func (c *rfcConn) next(dry bool) (msg string, got bool, err error) {
	if c.parked && c.br == nil {
		c.br = readBuffers.Get().(*bufio.Reader)
		c.br.Reset((*source)(c))
	}
	r := c.reader()
	var buf []byte
	fragmented := false
	for {
		if c.readTimeout > 0 && !c.parked {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
		}
		h, err := ws.ReadHeader(r)
		if err != nil {
			return "", false, c.broken(err)
		}
		state := ws.StateServerSide
		if fragmented {
			state = state.Set(ws.StateFragmented)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return "", false, c.fail(session.CodeProtocolError, err.Error())
		}
		if h.OpCode == ws.OpBinary {
			return "", false, c.fail(CodeUnsupportedData, "binary messages are not taken")
		}
		if !h.OpCode.IsControl() && int64(len(buf))+h.Length > int64(c.maxMsg) {
			return "", false, c.fail(session.CodeMessageTooBig, fmt.Sprintf("message over %d bytes", c.maxMsg))
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return "", false, c.broken(err)
		}
		ws.Cipher(payload, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			if err := c.write(ws.MustCompileFrame(ws.NewPongFrame(payload))); err != nil {
				return "", false, c.broken(err)
			}
			fallthrough
		case ws.OpPong:
			if dry && !fragmented && c.buffered() == 0 {
				return "", false, nil
			}
			continue
		case ws.OpClose:
			return "", false, c.peerClosed(payload)
		}
		buf = append(buf, payload...)
		if !h.Fin {
			fragmented = true
			continue
		}
		if !utf8.Valid(buf) {
			return "", false, c.fail(session.CodeInvalidPayload, "text message is not valid UTF-8")
		}
		return string(buf), true, nil
	}
}

// reader is where a read starts: the parked buffer, or the bytes as they come.
func (c *rfcConn) reader() io.Reader {
	if c.br != nil {
		return c.br
	}
	return (*source)(c)
}

// buffered is the count of bytes read from the connection and not yet taken.
func (c *rfcConn) buffered() int {
	n := len(c.pre)
	if c.br != nil {
		n += c.br.Buffered()
	}
	return n
}

// release gives back a parked connection's read buffer once it is empty.
func (c *rfcConn) release() {
	if c.br == nil || c.br.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	readBuffers.Put(c.br)
	c.br = nil
}

func (c *rfcConn) netConn() net.Conn      { return c.nc }
func (c *rfcConn) setParked(p bool)       { c.parked = p }
func (c *rfcConn) timeout() time.Duration { return c.readTimeout }
func (c *rfcConn) timedOut() error        { return c.broken(os.ErrDeadlineExceeded) }

// peerClosed answers the peer's close frame with the same code, as RFC 6455
// §5.5.1 asks, or with 1002 if its close frame was malformed.
func (c *rfcConn) peerClosed(payload []byte) error {
	if len(payload) == 0 {
		_ = c.Close(session.CodeNormal, "")
		return &CloseError{Code: 1005, ByPeer: true} // 1005: no status received
	}
	code, reason := ws.ParseCloseFrameData(payload)
	if len(payload) == 1 || ws.CheckCloseFrameData(code, reason) != nil {
		return c.fail(session.CodeProtocolError, "malformed close frame")
	}
	_ = c.Close(session.Code(code), reason)
	return &CloseError{Code: session.Code(code), Reason: reason, ByPeer: true}
}

// fail closes the connection for a peer's violation with its code.
func (c *rfcConn) fail(code session.Code, reason string) error {
	_ = c.Close(code, reason)
	return &CloseError{Code: code, Reason: reason}
}

// broken closes a connection that failed under us.
func (c *rfcConn) broken(err error) error {
	c.wmu.Lock()
	if c.head != nil && !c.closed {
		// The held 101 answer still goes: a client that half-closed
		// reads it, then sees the connection end, as it did when the
		// answer was flushed at once.
		c.sendHeadLocked()
	}
	c.closed = true
	_ = c.nc.Close()
	c.wmu.Unlock()
	return &CloseError{Code: CodeAbnormal, Reason: "connection lost", Err: err}
}

// sendHeadLocked sends the held 101 answer on its own, best effort. On a
// socket the poller watches it never waits (this may be the poller's
// goroutine): what the socket does not take now is dropped.
func (c *rfcConn) sendHeadLocked() {
	h := c.head.b
	c.head = nil
	if c.rc != nil {
		c.writeNowLocked(h)
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	_, _ = c.nc.Write(h)
}

// afterHeadLocked is b, behind the held 101 answer if it is not sent yet
// (which is then handed over): one Write, not a writev, as a wrapped
// connection (TLS) would make each buffer a write of its own.
func (c *rfcConn) afterHeadLocked(b []byte) []byte {
	if c.head == nil {
		return b
	}
	b = append(c.head.b, b...)
	c.head = nil
	return b
}

// AppendText implements Conn: a server frame, unmasked, FIN, text.
func (c *rfcConn) AppendText(dst []byte, msg string) []byte { return appendRFCText(dst, msg) }

func (c *rfcConn) Write(framed []byte) error { return c.write(framed) }

func (c *rfcConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.closeSent {
		return net.ErrClosed
	}
	return c.writeLocked(b)
}

func (c *rfcConn) writeLocked(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	if _, err := c.nc.Write(c.afterHeadLocked(b)); err != nil {
		c.closed = true
		_ = c.nc.Close()
		return err
	}
	if c.rc != nil {
		// tryWrite sets no deadline: leave none to expire under it.
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	return nil
}

func (c *rfcConn) Ping() error { return c.write(pingFrame) }

// Close implements Conn.
func (c *rfcConn) Close(code session.Code, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	if !c.closeSent {
		c.closeSent = true
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		body := ws.NewCloseFrameBody(ws.StatusCode(code), truncateReason(reason))
		_, _ = c.nc.Write(c.afterHeadLocked(ws.MustCompileFrame(ws.NewCloseFrame(body))))
	}
	c.closed = true
	return c.nc.Close()
}

// truncateReason keeps a close reason within a control frame's 125 bytes.
func truncateReason(r string) string {
	if len(r) <= 123 {
		return r
	}
	r = r[:123]
	for !utf8.ValidString(r) {
		r = r[:len(r)-1]
	}
	return r
}

// hixieConn adapts a hixie draft connection to Conn.
type hixieConn struct {
	c            *hixie.Conn
	readTimeout  time.Duration
	writeTimeout time.Duration
	parked       bool // the read deadline is the link's watchdog's
}

func (h *hixieConn) Dialect() string { return h.c.Draft().String() }

func (h *hixieConn) SetReadDeadline(t time.Time) error { return h.c.SetReadDeadline(t) }

// The drafts have no control frames: every frame read is a message, or the end.
func (h *hixieConn) next(bool) (string, bool, error) {
	m, err := h.ReadMessage()
	return m, err == nil, err
}

func (h *hixieConn) buffered() int          { return h.c.Buffered() }
func (h *hixieConn) release()               {} // the hixie.Conn keeps its reader
func (h *hixieConn) netConn() net.Conn      { return h.c.NetConn() }
func (h *hixieConn) setParked(p bool)       { h.parked = p }
func (h *hixieConn) timeout() time.Duration { return h.readTimeout }

func (h *hixieConn) timedOut() error {
	return &CloseError{Code: CodeAbnormal, Reason: "connection lost", Err: os.ErrDeadlineExceeded}
}

func (h *hixieConn) ReadMessage() (string, error) {
	if h.readTimeout > 0 && !h.parked {
		_ = h.c.SetReadDeadline(time.Now().Add(h.readTimeout))
	}
	m, err := h.c.ReadMessage()
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, io.EOF):
		return "", &CloseError{Code: session.CodeNormal, ByPeer: true}
	case errors.Is(err, hixie.ErrTooLarge):
		return "", &CloseError{Code: session.CodeMessageTooBig, Reason: "message too large", Err: err}
	case errors.Is(err, hixie.ErrInvalidUTF8):
		return "", &CloseError{Code: session.CodeInvalidPayload, Reason: "invalid UTF-8", Err: err}
	case errors.Is(err, hixie.ErrBinaryRefused):
		return "", &CloseError{Code: CodeUnsupportedData, Reason: "binary frame refused", Err: err}
	case errors.Is(err, hixie.ErrProtocol):
		return "", &CloseError{Code: session.CodeProtocolError, Reason: "protocol error", Err: err}
	default:
		return "", &CloseError{Code: CodeAbnormal, Reason: "connection lost", Err: err}
	}
}

func (h *hixieConn) AppendText(dst []byte, msg string) []byte { return appendHixieText(dst, msg) }

// appendHixieText appends msg as a draft text frame: 0x00, UTF-8, 0xFF.
func appendHixieText[T string | []byte](dst []byte, msg T) []byte {
	dst = append(dst, 0x00)
	dst = append(dst, msg...)
	return append(dst, 0xFF)
}

// Write sends one or more frames. The hixie package takes one prepared
// frame at a time; a batch splits at each 0xFF, which valid UTF-8 never
// contains, so the split is exact.
func (h *hixieConn) Write(framed []byte) error {
	_ = h.c.SetWriteDeadline(time.Now().Add(h.writeTimeout))
	for len(framed) > 0 {
		end := bytes.IndexByte(framed, 0xFF)
		if end < 0 {
			return fmt.Errorf("websocket: hixie batch without a frame end")
		}
		if err := h.c.WritePrepared(framed[:end+1]); err != nil {
			return err
		}
		framed = framed[end+1:]
	}
	return nil
}

func (h *hixieConn) Ping() error { return nil }

func (h *hixieConn) Close(session.Code, string) error { return h.c.Close() }
