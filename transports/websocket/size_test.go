package websocket

import (
	"testing"
	"unsafe"
)

// An idle server holds thousands of links and connections: they stay in
// their size classes (208 and 128 bytes; smaller on 32-bit systems).
// Growing them is a decision, not an accident: the link went from 192 to
// 200 bytes (class 208) for the negotiate answer a connection that
// negotiated writes with its first frames, sparing a write per connect;
// rfcConn went from 112 to 120 (class 128) for the 101 answer held to go
// with those frames, sparing another; the link filled its class (208) for
// the flag that keeps it in the batch of delayed acknowledgements once,
// which spares a write and a frame per message an application answers.
func TestIdleStateSize(t *testing.T) {
	if n := unsafe.Sizeof(link{}); n > 208 {
		t.Errorf("link is %d bytes, over 208", n)
	}
	if n := unsafe.Sizeof(rfcConn{}); n > 120 {
		t.Errorf("rfcConn is %d bytes, over 120", n)
	}
}
