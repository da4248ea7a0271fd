package servers

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"
)

// Main is benchserver's command line, here so that a test binary can run
// it too (re-executing itself as the server): it serves until SIGINT or
// SIGTERM, or with -stdin-exit until stdin closes (the benchmark holds the
// pipe, so a server never outlives a benchmark that died). It returns the
// exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	impl := fs.String("impl", "cometkit", "implementation: "+strings.Join(Impls, ", "))
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	stdinExit := fs.Bool("stdin-exit", false, "exit when stdin closes")
	withPprof := fs.Bool("pprof", false, "also serve net/http/pprof under /debug/pprof/")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *stdinExit {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		go func() { _, _ = io.Copy(io.Discard, stdin); cancel() }()
	}
	if err := Run(ctx, Config{Impl: *impl, Addr: *addr, Out: stdout, Log: log, Pprof: *withPprof}); err != nil {
		fmt.Fprintln(stderr, "benchserver:", err)
		return 1
	}
	return 0
}
