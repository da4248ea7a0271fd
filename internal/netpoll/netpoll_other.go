//go:build !linux

package netpoll

import "syscall"

// Supported reports whether Register can work on this system.
const Supported = false

// Desc is one connection's registration.
type Desc struct{}

// Register fails with ErrUnsupported here: read with a goroutine.
func Register(syscall.RawConn, Mode, func(Report)) (*Desc, error) { return nil, ErrUnsupported }

// Arm asks for one more call of fn when the connection is readable.
func (d *Desc) Arm() error { return ErrUnsupported }

// Close ends the registration.
func (d *Desc) Close() error { return nil }

// FailForTests gives up on the current poller (there is none here).
func FailForTests() {}

// Closed reports whether the registration is closed.
func (d *Desc) Closed() bool { return true }
