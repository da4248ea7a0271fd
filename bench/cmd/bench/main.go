// Command bench compares cometkit with its peers — sockjs-go, centrifuge,
// a socket.io Go server — and a raw WebSocket floor, on this machine, with
// a load generator of our own. It builds benchserver once, runs every
// scenario against every server that offers the transport (a fresh server
// process for each measurement, pinned to CPU 1, GOMAXPROCS=1; the load
// generator re-executes itself pinned to CPU 0, GOMAXPROCS=1), and writes
// results.json, results.md and chart.svg.
//
//	go run ./bench/cmd/bench                 # everything, a few minutes
//	go run ./bench/cmd/bench -quick          # small sizes: a smoke test
//	go run ./bench/cmd/bench -scenarios idle,broadcast -impls cometkit,raw
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cometkit/cometkit/bench/runner"
	"github.com/cometkit/cometkit/bench/servers"
)

// pinnedEnv marks the re-executed, pinned process.
const pinnedEnv = "COMETKIT_BENCH_PINNED"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(log); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

// loadGOGC is the load generator's GC percent (servers keep Go's default):
// the instrument's own collections, on its one core, landed in the middle
// of broadcasts and echo runs and moved every server's tail alike; at 400
// they come a quarter as often. The heap stays well under a GiB.
const loadGOGC = 400

func run(log *slog.Logger) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(loadGOGC)
	}
	def := runner.DefaultSizes()
	out := flag.String("out", "docs/bench", "where results go; a relative path is taken from the repository root")
	quick := flag.Bool("quick", false, "small sizes, every scenario once: a smoke test, not figures")
	impls := flag.String("impls", strings.Join(servers.Impls, ","), "servers to run")
	scenarios := flag.String("scenarios", strings.Join(runner.Scenarios, ","), "scenarios to run")
	transports := flag.String("transports", "websocket,eventstream,longpoll", "transports to run")
	pin := flag.Bool("pin", true, "pin servers to CPU 1 and the load generator to CPU 0 (taskset), GOMAXPROCS=1 each")
	serverBin := flag.String("server-bin", "", "use this benchserver binary instead of building one")
	render := flag.String("render", "", "run nothing: write results.md and chart.svg (and results.json) again from this results.json")
	summarize := flag.String("summarize", "", "run nothing: print the headline figures of these results.json files (a glob), a column per run")
	idleCounts := flag.String("idle-counts", "10000,max", "idle scenario: session counts in turn (max = as many as the file limit allows)")
	echoSessions := flag.Int("echo-sessions", def.EchoSessions, "echo: sessions")
	echoRate := flag.Float64("echo-rate", def.EchoRate, "echo: messages per second offered, over all sessions")
	echoDuration := flag.Duration("echo-duration", def.EchoDuration, "echo: how long to send")
	bcSessions := flag.Int("broadcast-sessions", def.BroadcastSessions, "broadcast: sessions")
	passes := flag.Int("passes", def.Passes, "runs per server of each scenario but idle (the median run is reported)")
	settle := flag.Duration("settle", def.Settle, "uncounted runs on the last server before each repeated scenario, for this long (0: none)")
	bcRounds := flag.Int("broadcast-rounds", def.BroadcastRounds, "broadcast: broadcasts")
	rtSessions := flag.Int("roundtrip-sessions", def.RoundTripSessions, "long-poll round trips: sessions")
	rtDuration := flag.Duration("roundtrip-duration", def.RoundTripDuration, "long-poll round trips: duration")
	foSessions := flag.Int("fanout-sessions", def.FanOutSessions, "event-stream fan-out: sessions")
	foPerRound := flag.Int("fanout-burst", def.FanOutPerRound, "event-stream fan-out: messages per burst")
	foDuration := flag.Duration("fanout-duration", def.FanOutDuration, "event-stream fan-out: duration")
	cnSessions := flag.Int("connect-sessions", def.ConnectSessions, "connects: sessions")
	cnConc := flag.Int("connect-concurrency", def.ConnectConcurrency, "connects: at a time")
	cpuProfile := flag.String("cpuprofile", "", "write the load generator's CPU profile here (go tool pprof): whether the load side, not the server, bounds a figure")
	flag.Parse()

	if *summarize != "" {
		return summarizeRuns(*summarize)
	}
	if *render != "" {
		return rerender(*render, *out)
	}
	if *pin && os.Getenv(pinnedEnv) == "" {
		if err := reexecPinned(); err != nil {
			log.Warn("could not pin the load generator; running unpinned", "err", err)
		}
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}

	sizes := def
	if *quick {
		sizes = runner.QuickSizes()
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !*quick || set["idle-counts"] {
		counts, err := parseCounts(*idleCounts)
		if err != nil {
			return err
		}
		sizes.IdleCounts = counts
	}
	apply := func(name string, fn func()) {
		if !*quick || set[name] {
			fn()
		}
	}
	apply("echo-sessions", func() { sizes.EchoSessions = *echoSessions })
	apply("echo-rate", func() { sizes.EchoRate = *echoRate })
	apply("echo-duration", func() { sizes.EchoDuration = *echoDuration })
	apply("broadcast-sessions", func() { sizes.BroadcastSessions = *bcSessions })
	apply("passes", func() { sizes.Passes = *passes })
	apply("settle", func() { sizes.Settle = *settle })
	apply("broadcast-rounds", func() { sizes.BroadcastRounds = *bcRounds })
	apply("roundtrip-sessions", func() { sizes.RoundTripSessions = *rtSessions })
	apply("roundtrip-duration", func() { sizes.RoundTripDuration = *rtDuration })
	apply("fanout-sessions", func() { sizes.FanOutSessions = *foSessions })
	apply("fanout-burst", func() { sizes.FanOutPerRound = *foPerRound })
	apply("fanout-duration", func() { sizes.FanOutDuration = *foDuration })
	apply("connect-sessions", func() { sizes.ConnectSessions = *cnSessions })
	apply("connect-concurrency", func() { sizes.ConnectConcurrency = *cnConc })

	root, err := repoRoot()
	if err != nil {
		return err
	}
	outDir := *out
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bin := *serverBin
	if bin == "" {
		tmp, err := os.MkdirTemp("", "cometkit-bench-")
		if err != nil {
			return fmt.Errorf("temporary directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		bin = filepath.Join(tmp, "benchserver")
		start := time.Now()
		if err := buildServer(ctx, filepath.Join(root, "bench"), bin); err != nil {
			return err
		}
		log.Info("built benchserver", "took", time.Since(start).Round(time.Millisecond))
	}
	cfg := runner.Config{
		ServerCmd:   []string{bin},
		LoadPinning: loadPinning(),
		Impls:       split(*impls),
		Scenarios:   split(*scenarios),
		Transports:  split(*transports),
		Sizes:       sizes,
		Quick:       *quick,
		Progress:    os.Stdout,
		Log:         log,
	}
	if *pin {
		cfg.ServerCPU = "1"
	}
	rep, err := runner.Run(ctx, cfg)
	if rep != nil {
		if werr := runner.Write(rep, outDir); werr != nil {
			return errors.Join(err, werr)
		}
		fmt.Println()
		fmt.Print(runner.Markdown(rep))
		fmt.Printf("wrote %s/{results.json,results.md,chart.svg}; the run took %s\n", outDir,
			(time.Duration(rep.Seconds) * time.Second).String())
	}
	return err
}

// summarizeRuns prints runner.Summary of the results.json files matching
// pattern, in the order of their runs.
func summarizeRuns(pattern string) error {
	files, err := filepath.Glob(pattern)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no file matches %s", pattern)
	}
	var reps []*runner.Report
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		rep := new(runner.Report)
		if err := json.Unmarshal(b, rep); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		reps = append(reps, rep)
	}
	slices.SortFunc(reps, func(a, b *runner.Report) int { return a.Started.Compare(b.Started) })
	fmt.Print(runner.Summary(reps))
	return nil
}

// rerender writes the reports of an earlier run again (after a change to
// the tables or the chart, say) into out.
func rerender(from, out string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var rep runner.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	return runner.Write(&rep, out)
}

// reexecPinned replaces this process with itself under taskset -c 0 and
// GOMAXPROCS=1, so that every thread of the load generator stays on CPU 0.
// It returns only on failure.
func reexecPinned() error {
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), pinnedEnv+"=1", "GOMAXPROCS=1")
	return syscall.Exec(taskset, append([]string{"taskset", "-c", "0", self}, os.Args[1:]...), env)
}

// loadPinning describes this process's CPU affinity and GOMAXPROCS.
func loadPinning() string {
	var set unix.CPUSet
	cpus := "?"
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		var ids []string
		for i := 0; i < 1024; i++ {
			if set.IsSet(i) {
				ids = append(ids, strconv.Itoa(i))
			}
		}
		cpus = strings.Join(ids, ",")
	}
	how := "not pinned"
	if os.Getenv(pinnedEnv) != "" {
		how = "taskset -c 0"
	}
	gogc := debug.SetGCPercent(-1) // reads it (and turns GC off a moment)
	debug.SetGCPercent(gogc)
	return fmt.Sprintf("%s (CPUs %s), GOMAXPROCS=%d, GOGC=%d", how, cpus, runtime.GOMAXPROCS(0), gogc)
}

// buildServer builds benchserver from the bench module into bin.
func buildServer(ctx context.Context, moduleDir, bin string) error {
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gocmd); err != nil {
		gocmd = "go"
	}
	cmd := exec.CommandContext(ctx, gocmd, "build", "-o", bin, "./cmd/benchserver")
	cmd.Dir = moduleDir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building benchserver in %s: %w", moduleDir, err)
	}
	return nil
}

// repoRoot walks up from the working directory to cometkit's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/cometkit/cometkit\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no cometkit repository above %s", dir)
		}
	}
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, p := range split(s) {
		if p == "max" {
			out = append(out, runner.MaxSessions)
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-idle-counts: %q is not a count or max", p)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("-idle-counts: no counts")
	}
	return out, nil
}

// startCPUProfile profiles the load generator into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			slog.Error("cpu profile", "err", err)
		}
	}, nil
}
