package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// wsReadBuffer is each client WebSocket's read buffer: the frames of this
// benchmark are small, and 20,000 connections × 1 KiB is cheap.
const wsReadBuffer = 1024

// wsConn is a client WebSocket (RFC 6455) over gobwas/ws: it reads whole
// text messages, answers pings, and writes masked text frames, one writer
// at a time.
type wsConn struct {
	nc net.Conn
	br *bufio.Reader
	mu sync.Mutex // serialises writes
}

// dialWS opens a WebSocket to u (ws://…) through env's dialer.
func dialWS(ctx context.Context, env *Env, u string, header http.Header) (*wsConn, error) {
	d := ws.Dialer{
		Timeout: dialTimeout,
		NetDial: func(ctx context.Context, _, addr string) (net.Conn, error) { return env.Dial(ctx, addr) },
	}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	nc, br, _, err := d.Dial(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("websocket %s: %w", u, err)
	}
	var r io.Reader = nc
	if br != nil { // bytes the server sent right after its handshake
		r = io.MultiReader(br, nc)
	}
	return &wsConn{nc: nc, br: bufio.NewReaderSize(r, wsReadBuffer)}, nil
}

// errWSClosed is what read returns after a close frame.
var errWSClosed = errors.New("websocket closed by the server")

// read returns the next text (or binary) message, answering pings on the way.
func (c *wsConn) read() ([]byte, error) {
	var msg []byte
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		if h.Length > 1<<24 {
			return nil, fmt.Errorf("websocket frame of %d bytes", h.Length)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			if err := c.writeFrame(ws.NewPongFrame(payload)); err != nil {
				return nil, err
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			_ = c.writeFrame(ws.NewCloseFrame(payload))
			code, reason := ws.ParseCloseFrameData(payload)
			return nil, fmt.Errorf("%w: %d %s", errWSClosed, code, reason)
		}
		msg = append(msg, payload...)
		if h.Fin {
			return msg, nil
		}
	}
}

// writeText sends p as one masked text frame. p is masked in place: the
// caller gives up p.
func (c *wsConn) writeText(p []byte) error { return c.writeFrame(ws.NewTextFrame(p)) }

func (c *wsConn) writeFrame(f ws.Frame) error {
	b, err := ws.CompileFrame(ws.MaskFrameInPlace(f)) // one write, one syscall
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.nc.Write(b)
	return err
}

func (c *wsConn) close() { _ = c.nc.Close() }
