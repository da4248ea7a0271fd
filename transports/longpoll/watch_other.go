//go:build !linux

package longpoll

import "net"

// watcher would learn that clients hang up parked connections; off Linux it
// does not, and a parked poll learns its client left when its answer is
// written (at the latest, the session's heartbeat).
type watcher struct{}

type watchHandle struct{}

func (*watcher) add(net.Conn, func()) watchHandle { return watchHandle{} }
func (*watcher) remove(watchHandle)               {}
