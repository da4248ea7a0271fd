package websocket

import (
	"testing"
	"unsafe"
)

// An idle server holds thousands of links and connections: they stay in
// their size classes (192 and 112 bytes; smaller on 32-bit systems).
// Growing them is a decision, not an accident.
func TestIdleStateSize(t *testing.T) {
	if n := unsafe.Sizeof(link{}); n > 192 {
		t.Errorf("link is %d bytes, over 192", n)
	}
	if n := unsafe.Sizeof(rfcConn{}); n > 112 {
		t.Errorf("rfcConn is %d bytes, over 112", n)
	}
}
