package websocket

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
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
type rfcConn struct {
	nc           net.Conn
	r            io.Reader // nc, or the hijack's reader while it holds bytes
	maxMsg       int
	readTimeout  time.Duration
	writeTimeout time.Duration

	wmu       sync.Mutex
	closeSent bool
	closed    bool
}

func newRFCConn(nc net.Conn, br *bufio.Reader, maxMsg int, readTimeout, writeTimeout time.Duration) *rfcConn {
	c := &rfcConn{nc: nc, r: nc, maxMsg: maxMsg, readTimeout: readTimeout, writeTimeout: writeTimeout}
	if br != nil && br.Buffered() > 0 {
		c.r = io.MultiReader(io.LimitReader(br, int64(br.Buffered())), nc)
	}
	return c
}

func (c *rfcConn) Dialect() string { return "rfc6455" }

func (c *rfcConn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// ReadMessage implements Conn: it answers pings, takes pongs as signs of
// life, joins fragments, and closes with 1002 (protocol), 1003 (binary),
// 1007 (invalid UTF-8) or 1009 (too big) as RFC 6455 asks.
func (c *rfcConn) ReadMessage() (string, error) {
	var msg []byte
	fragmented := false
	for {
		if c.readTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
		}
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			return "", c.broken(err)
		}
		state := ws.StateServerSide
		if fragmented {
			state = state.Set(ws.StateFragmented)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return "", c.fail(session.CodeProtocolError, err.Error())
		}
		if h.OpCode == ws.OpBinary {
			return "", c.fail(CodeUnsupportedData, "binary messages are not taken")
		}
		if !h.OpCode.IsControl() && int64(len(msg))+h.Length > int64(c.maxMsg) {
			return "", c.fail(session.CodeMessageTooBig, fmt.Sprintf("message over %d bytes", c.maxMsg))
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, payload); err != nil {
			return "", c.broken(err)
		}
		ws.Cipher(payload, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			if err := c.write(ws.MustCompileFrame(ws.NewPongFrame(payload))); err != nil {
				return "", c.broken(err)
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			return "", c.peerClosed(payload)
		}
		msg = append(msg, payload...)
		if !h.Fin {
			fragmented = true
			continue
		}
		if !utf8.Valid(msg) {
			return "", c.fail(session.CodeInvalidPayload, "text message is not valid UTF-8")
		}
		return string(msg), nil
	}
}

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
	c.closed = true
	_ = c.nc.Close()
	c.wmu.Unlock()
	return &CloseError{Code: CodeAbnormal, Reason: "connection lost", Err: err}
}

// AppendText implements Conn: a server frame, unmasked, FIN, text.
func (c *rfcConn) AppendText(dst []byte, msg string) []byte {
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

func (c *rfcConn) Write(framed []byte) error { return c.write(framed) }

func (c *rfcConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.closeSent {
		return net.ErrClosed
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.closed = true
		_ = c.nc.Close()
		return err
	}
	return nil
}

func (c *rfcConn) Ping() error { return c.write(ws.MustCompileFrame(ws.NewPingFrame(nil))) }

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
		_, _ = c.nc.Write(ws.MustCompileFrame(ws.NewCloseFrame(body)))
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
}

func (h *hixieConn) Dialect() string { return h.c.Draft().String() }

func (h *hixieConn) SetReadDeadline(t time.Time) error { return h.c.SetReadDeadline(t) }

func (h *hixieConn) ReadMessage() (string, error) {
	if h.readTimeout > 0 {
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

func (h *hixieConn) AppendText(dst []byte, msg string) []byte {
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
