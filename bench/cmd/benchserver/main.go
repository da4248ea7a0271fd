// Command benchserver serves one implementation under test — cometkit or a
// peer — for the benchmark in its own process, so that its memory and CPU
// are its own. It prints its listen address as the first line of stdout.
//
//	benchserver -impl cometkit|sockjs|centrifuge|socketio|raw -addr 127.0.0.1:0
package main

import (
	"os"

	"github.com/cometkit/cometkit/bench/servers"
)

func main() { os.Exit(servers.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
