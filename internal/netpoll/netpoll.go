// Package netpoll tells when connections become readable without a
// goroutine per connection, so that an idle connection costs its socket and
// a few bytes, not a blocked reader and its stack.
//
// On Linux it is an epoll instance of our own, itself watched by Go's
// runtime poller: one goroutine waits for all connections, and exists only
// while some connection is registered. Registrations are one-shot: a
// connection reported readable is not reported again until re-armed, so
// that whoever reads it owns it until it parks it again. Elsewhere Register
// fails with ErrUnsupported and callers keep a reader goroutine.
//
// Only the readiness of the socket is watched: bytes that a caller has
// already read into a buffer of its own must be consumed before it parks,
// or they wait for the peer's next bytes.
package netpoll

import "errors"

// ErrUnsupported: this system has no poller here; read with a goroutine.
var ErrUnsupported = errors.New("netpoll: not supported on this system")

// ErrClosed: the registration was closed.
var ErrClosed = errors.New("netpoll: registration closed")

// Mode is how a registration reports readiness (see Register).
type Mode int

const (
	// OneShot: one report per Arm, while the socket is readable.
	OneShot Mode = iota
	// Edge: a report whenever bytes arrive; no arming.
	Edge
)

// Report is what the poller saw when it called a registration's fn.
type Report struct {
	bytesOnly bool // EPOLLIN alone: no hang-up, no error
}

// Drained reports whether a read that returns less than its buffer leaves
// nothing to read until the next report. That holds for an Edge
// registration of a TCP socket when the report came for bytes alone: a FIN
// or error that came with them (or before) shows only on one more read,
// and urgent data stops a read at its mark, while anything that comes
// later is reported again. Otherwise (a hang-up, an error, urgent data, a
// Unix socket, a failing poller, or OneShot mode, where nothing comes
// again before Arm) the reader must read until the read itself says EAGAIN
// or EOF. Reading until EAGAIN costs one system call more per report: on a
// connection that sends an acknowledgement at a time, twice the reads.
func (r Report) Drained() bool { return r.bytesOnly }
