package websocket_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// connection's reader or writer, a session handler, a client's subprocess
// waiter. It is the only TestMain of this directory's test binary (package
// websocket and package websocket_test are linked into one): add no other.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
