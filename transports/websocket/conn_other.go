//go:build !unix

package websocket

// Without the poller (netpoll.Supported is false here) links read and
// write the ordinary way: these are never reached.

func (c *rfcConn) initRaw() bool { return false }

func (c *rfcConn) readNB([]byte) (int, error) { return 0, errWouldBlock }

func (c *rfcConn) tryWrite([]byte) (int, bool, error) { return 0, false, nil }

func (c *rfcConn) writeNowLocked([]byte) {}
