package hixie

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// Errors ReadMessage returns (wrapped, test with errors.Is) when the client
// broke the protocol. The drafts have no close codes, so after each of them the
// connection has been closed with the bare closing handshake 0xFF 0x00.
var (
	// ErrInvalidUTF8: a text frame's bytes are not UTF-8, which the drafts forbid.
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrTooLarge: a frame is longer than Options.MaxMessageBytes.
	ErrTooLarge = errors.New("message too large")
	// ErrBinaryRefused: the client sent a length-prefixed (binary) frame; no
	// browser of these drafts sends one, and this package carries text only.
	ErrBinaryRefused = errors.New("binary frame refused")
	// ErrProtocol: a frame type the drafts do not define, or a length that
	// does not end.
	ErrProtocol = errors.New("protocol error")
)

// closeFrame is the closing handshake of hixie-76: a length-prefixed frame of
// type 0xFF and length 0. A hixie-75 client, which has no closing handshake,
// reads it as an empty frame to discard.
var closeFrame = []byte{0xFF, 0x00}

// maxLengthGroups bounds the 7-bit groups of a length prefix: ten carry 64 bits.
const maxLengthGroups = 10

// Conn is an upgraded hixie connection carrying UTF-8 text messages both ways.
//
// One goroutine may call ReadMessage while others write; writes are serialized
// by a lock, and Close may be called from any goroutine at any time. Conn owns
// no goroutine and no buffer beyond the bufio.Reader net/http handed over, so
// an idle connection costs little more than its socket.
type Conn struct {
	nc           net.Conn
	br           *bufio.Reader
	draft        Draft
	maxMsg       int
	closeTimeout time.Duration

	rerr    error       // the read side's terminal error; reader goroutine only
	closing atomic.Bool // set once; the socket is closed or about to be

	wmu       sync.Mutex
	closeSent bool  // 0xFF 0x00 written (or the write side is dead); under wmu
	werr      error // the write side's terminal error; under wmu
}

func newConn(nc net.Conn, br *bufio.Reader, d Draft, opts Options) *Conn {
	opts = opts.withDefaults()
	return &Conn{nc: nc, br: br, draft: d, maxMsg: opts.MaxMessageBytes, closeTimeout: opts.HandshakeTimeout}
}

// Draft tells which draft the client spoke, for logs and metrics.
func (c *Conn) Draft() Draft { return c.draft }

// RemoteAddr returns the client's address, as net.Conn does, for logs.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// NetConn returns the connection underneath, for a caller that waits for
// it to become readable by other means than a blocked ReadMessage (an
// event loop). Read from it only through ReadMessage.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Buffered is the count of bytes already read from the connection and not
// yet returned by ReadMessage. A caller that waits for readability by
// other means must call ReadMessage while it is not zero: those bytes make
// the connection readable no more.
func (c *Conn) Buffered() int { return c.br.Buffered() }

// SetReadDeadline bounds the wait in ReadMessage, so that a caller can detect
// a dead client (the drafts have no ping). A read that times out ends the
// connection like any read error. The zero time means no deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline bounds writes, so that a slow client is cut off rather
// than buffered for. A write that times out ends the connection: part of a
// frame may be on the wire. The zero time means no deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// ReadMessage returns the next text message, so the caller sees messages and
// never frames.
//
// It returns io.EOF, unwrapped, when the client ended the connection cleanly:
// with the closing handshake 0xFF 0x00 (answered before returning) or, as old
// WebKit's ws.close() does, by closing TCP between frames. Every error is
// final: the connection has been closed, and later calls return the same
// error. Protocol violations wrap ErrInvalidUTF8, ErrTooLarge,
// ErrBinaryRefused or ErrProtocol; after Close it wraps net.ErrClosed.
func (c *Conn) ReadMessage() (string, error) {
	if c.rerr == nil && c.closing.Load() {
		c.rerr = fmt.Errorf("hixie: read: %w", net.ErrClosed)
	}
	if c.rerr != nil {
		return "", c.rerr
	}
	msg, err := c.readMessage()
	if err != nil {
		c.rerr = err
	}
	return msg, err
}

func (c *Conn) readMessage() (string, error) {
	typ, err := c.br.ReadByte()
	if err != nil {
		return "", c.readFailed(err, true)
	}
	switch {
	case typ == 0x00:
		return c.readText()
	case typ&0x80 != 0:
		return "", c.skipLengthPrefixed(typ)
	default:
		// A sentinel-delimited frame of a type the drafts leave undefined:
		// the draft says to discard it up to its 0xFF; we also refuse it.
		if err := c.discardText(); err != nil {
			return "", err
		}
		return "", c.violation(fmt.Errorf("hixie: read: frame type 0x%02x: %w", typ, ErrProtocol))
	}
}

// readText reads a text frame's bytes up to its 0xFF.
func (c *Conn) readText() (string, error) {
	var sb strings.Builder // used only for a message longer than br's buffer
	for {
		chunk, err := c.br.ReadSlice(0xFF)
		n := len(chunk)
		if err == nil {
			n-- // the 0xFF
		}
		if sb.Len()+n > c.maxMsg {
			return "", c.violation(fmt.Errorf("hixie: read: text frame over %d bytes: %w", c.maxMsg, ErrTooLarge))
		}
		switch {
		case err == nil && sb.Len() == 0:
			if !utf8.Valid(chunk[:n]) {
				return "", c.violation(fmt.Errorf("hixie: read: %w", ErrInvalidUTF8))
			}
			return string(chunk[:n]), nil
		case err == nil:
			sb.Write(chunk[:n])
			msg := sb.String()
			if !utf8.ValidString(msg) {
				return "", c.violation(fmt.Errorf("hixie: read: %w", ErrInvalidUTF8))
			}
			return msg, nil
		case errors.Is(err, bufio.ErrBufferFull):
			sb.Write(chunk)
		default:
			return "", c.readFailed(err, false)
		}
	}
}

// discardText skips a sentinel-delimited frame, bounded by MaxMessageBytes
// like a text frame.
func (c *Conn) discardText() error {
	total := 0
	for {
		chunk, err := c.br.ReadSlice(0xFF)
		n := len(chunk)
		if err == nil {
			n-- // the 0xFF
		}
		total += n
		if total > c.maxMsg {
			return c.violation(fmt.Errorf("hixie: read: frame over %d bytes: %w", c.maxMsg, ErrTooLarge))
		}
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return c.readFailed(err, false)
		}
	}
}

// skipLengthPrefixed handles a frame whose type byte has the high bit set: the
// closing handshake 0xFF 0x00, or a binary frame, which is read, discarded and
// refused.
func (c *Conn) skipLengthPrefixed(typ byte) error {
	var length uint64
	limit := uint64(c.maxMsg)
	for i := 0; ; i++ {
		if i == maxLengthGroups {
			return c.violation(fmt.Errorf("hixie: read: length of frame type 0x%02x does not end: %w", typ, ErrProtocol))
		}
		b, err := c.br.ReadByte()
		if err != nil {
			return c.readFailed(err, false)
		}
		if length > limit>>7 {
			return c.violation(fmt.Errorf("hixie: read: frame type 0x%02x over %d bytes: %w", typ, c.maxMsg, ErrTooLarge))
		}
		length = length<<7 | uint64(b&0x7F)
		if b&0x80 == 0 {
			break
		}
	}
	if typ == 0xFF && length == 0 {
		c.shutdown(true)
		return io.EOF
	}
	if length > limit {
		return c.violation(fmt.Errorf("hixie: read: frame type 0x%02x over %d bytes: %w", typ, c.maxMsg, ErrTooLarge))
	}
	if _, err := c.br.Discard(int(length)); err != nil {
		return c.readFailed(err, false)
	}
	return c.violation(fmt.Errorf("hixie: read: frame type 0x%02x of %d bytes: %w", typ, length, ErrBinaryRefused))
}

// violation ends the connection with the closing handshake and returns err.
func (c *Conn) violation(err error) error {
	c.shutdown(true)
	return err
}

// readFailed turns an error of the socket into ReadMessage's answer and closes
// the connection. A clean end between frames (EOF, or the reset a peer's
// abrupt close may cause) is io.EOF; inside a frame it is unexpected.
func (c *Conn) readFailed(err error, betweenFrames bool) error {
	if c.closing.Load() {
		// We closed it (Close, or a write that failed): the read error is ours.
		return fmt.Errorf("hixie: read: %w", net.ErrClosed)
	}
	c.shutdown(false)
	if betweenFrames && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		return io.EOF
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("hixie: read: %w", err)
}

// WriteMessage sends msg as one text frame, so the client's onmessage gets it.
// It refuses a msg that is not valid UTF-8 (which is also what guarantees it
// holds no 0xFF byte to end the frame early). For the same message to many
// connections, build it once with Frame and use WritePrepared.
func (c *Conn) WriteMessage(msg string) error {
	if !utf8.ValidString(msg) {
		return fmt.Errorf("hixie: write: %w", ErrInvalidUTF8)
	}
	return c.write(frame(msg))
}

// Frame returns msg framed for the wire (0x00, the UTF-8 bytes, 0xFF), so that
// a broadcast is encoded once and handed to every connection's WritePrepared.
// It returns nil when msg is not valid UTF-8, and WritePrepared refuses nil.
// The drafts' framing is the same for hixie-75 and hixie-76.
func Frame(msg string) []byte {
	if !utf8.ValidString(msg) {
		return nil
	}
	return frame(msg)
}

func frame(msg string) []byte {
	b := make([]byte, len(msg)+2)
	copy(b[1:], msg)
	b[len(b)-1] = 0xFF
	return b
}

// WritePrepared writes b, a frame made by Frame, as it is. It does not modify
// b, so one b can go to many connections at once. It refuses b unless it looks
// like one text frame (0x00 first, 0xFF last and nowhere else), which keeps a
// stray byte from desynchronising the client; it does not re-check UTF-8.
func (c *Conn) WritePrepared(b []byte) error {
	if len(b) < 2 || b[0] != 0x00 || b[len(b)-1] != 0xFF || bytes.IndexByte(b[1:len(b)-1], 0xFF) >= 0 {
		return fmt.Errorf("hixie: write prepared: not one text frame made by Frame: %w", ErrProtocol)
	}
	return c.write(b)
}

func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent || c.closing.Load() {
		return fmt.Errorf("hixie: write: %w", net.ErrClosed)
	}
	if _, err := c.nc.Write(b); err != nil {
		// Part of the frame may be out: the stream is beyond repair.
		c.werr = fmt.Errorf("hixie: write: %w", err)
		c.closeSent = true
		if c.closing.CompareAndSwap(false, true) {
			c.nc.Close()
		}
		return c.werr
	}
	return nil
}

// Close sends the closing handshake 0xFF 0x00 (unless it was sent) and closes
// the TCP connection, so the client's onclose fires at once. It waits at most
// Options.HandshakeTimeout for a write in progress and for its own two bytes.
// It is safe to call more than once and from any goroutine; only the first
// call does anything.
func (c *Conn) Close() error {
	return c.shutdown(true)
}

// shutdown closes the connection once, first sending 0xFF 0x00 if asked to
// and not yet done.
func (c *Conn) shutdown(sendClose bool) error {
	if !c.closing.CompareAndSwap(false, true) {
		return nil
	}
	if sendClose {
		// Unblock a writer stuck on a client that does not read, and bound
		// our own write the same way.
		c.nc.SetWriteDeadline(time.Now().Add(c.closeTimeout))
		c.wmu.Lock()
		if !c.closeSent {
			c.closeSent = true
			c.nc.Write(closeFrame)
		}
		c.wmu.Unlock()
	}
	if err := c.nc.Close(); err != nil {
		return fmt.Errorf("hixie: close: %w", err)
	}
	return nil
}
