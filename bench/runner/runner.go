// Package runner runs the benchmark: every scenario against every server
// that offers the transport, each measurement against a server process
// started fresh, and writes the results as JSON, Markdown tables and an
// SVG chart. cmd/bench is its command line; its smoke test runs the whole
// pipeline in quick mode.
package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/cometkit/cometkit/bench/load"
	"github.com/cometkit/cometkit/bench/servers"
)

// Scenarios, numbered as issue 8 lists them.
const (
	ScenarioIdle      = "idle"      // (1) idle sessions held: memory and goroutines per session
	ScenarioEcho      = "echo"      // (2) echo round trip at a fixed offered rate, open loop
	ScenarioBroadcast = "broadcast" // (3) one message to 10,000 WebSocket sessions
	ScenarioRoundTrip = "roundtrip" // (4a) long-poll round trips/s, closed loop
	ScenarioFanOut    = "fanout"    // (4b) event-stream messages/s, server to clients
	ScenarioConnect   = "connect"   // (5) connects per second
)

// Scenarios lists every scenario in the order they run. Idle runs last:
// it ends with 19,900 connections closing, and for a minute or more after
// it this host answers slowly. With idle first, the echo's first pass
// (cometkit's three targets, first in the list, just after the settling
// runs) had p99s 1.4-3.0x cometkit's later passes' over five full runs,
// while every peer's first-pass runs were within 0.84-1.28x of its
// later ones. Nothing after idle measures latency now.
var Scenarios = []string{ScenarioEcho, ScenarioBroadcast, ScenarioRoundTrip, ScenarioFanOut, ScenarioConnect, ScenarioIdle}

// Sizes are the scenarios' counts and durations.
type Sizes struct {
	IdleCounts          []int         `json:"idle_counts"` // ascending; the last is cut to the file limit
	EchoSessions        int           `json:"echo_sessions"`
	EchoRate            float64       `json:"echo_rate_per_s"`
	EchoDuration        time.Duration `json:"echo_duration_ns"`
	BroadcastSessions   int           `json:"broadcast_sessions"`
	BroadcastRounds     int           `json:"broadcast_rounds"`
	RoundTripSessions   int           `json:"roundtrip_sessions"`
	RoundTripDuration   time.Duration `json:"roundtrip_duration_ns"`
	FanOutSessions      int           `json:"fanout_sessions"`
	FanOutPerRound      int           `json:"fanout_per_round"`
	FanOutDuration      time.Duration `json:"fanout_duration_ns"`
	ConnectSessions     int           `json:"connect_sessions"`
	ConnectConcurrency  int           `json:"connect_concurrency"`
	SessionsConcurrency int           `json:"open_concurrency"` // connects at a time when filling a scenario
	// Passes is how many times each repeated scenario (every one but
	// idle) runs against each server: in passes, each pass starting every
	// server afresh in turn, each pass starting a passes-th of the list
	// further on (passOrder), so that no server always runs early (just
	// after the scenario before, or while the load generator's heap
	// grows). The run whose headline figure is the median is reported,
	// with the lowest and highest.
	Passes int `json:"passes"`
	// Settle is how long each repeated scenario first runs measurements
	// that are not counted, on its last target (the raw floor, where it
	// takes part): the machine settles from the scenario before, and no
	// server's counted run pays for it. (Added in session 8, when the echo
	// came right after idle and its first three measurements, always
	// cometkit's, had p99s up to 4x their later passes'; 10 s did not
	// cure that, and idle now runs last: see Scenarios.)
	Settle time.Duration `json:"settle_ns"`
}

// MaxSessions stands for "as many as the file limit allows" in IdleCounts.
const MaxSessions = -1

// DefaultSizes are the full run's.
func DefaultSizes() Sizes {
	return Sizes{
		IdleCounts:   []int{10_000, MaxSessions},
		EchoSessions: 100, EchoRate: 2000, EchoDuration: 3 * time.Second,
		BroadcastSessions: 10_000, BroadcastRounds: 10,
		RoundTripSessions: 32, RoundTripDuration: 3 * time.Second,
		FanOutSessions: 1000, FanOutPerRound: 50, FanOutDuration: 3 * time.Second,
		ConnectSessions: 2000, ConnectConcurrency: 32,
		SessionsConcurrency: 128, Passes: 3, Settle: 10 * time.Second,
	}
}

// QuickSizes are a smoke test's: every scenario once, small.
func QuickSizes() Sizes {
	return Sizes{
		IdleCounts:   []int{50, 100},
		EchoSessions: 10, EchoRate: 200, EchoDuration: time.Second,
		BroadcastSessions: 100, BroadcastRounds: 2,
		RoundTripSessions: 4, RoundTripDuration: time.Second,
		FanOutSessions: 20, FanOutPerRound: 10, FanOutDuration: time.Second,
		ConnectSessions: 50, ConnectConcurrency: 8,
		SessionsConcurrency: 16, Passes: 1,
	}
}

// Config is one benchmark run.
type Config struct {
	// ServerCmd runs a server: the benchserver binary (or a test binary
	// that acts as one), to which the runner adds -impl, -addr and -stdin-exit.
	ServerCmd []string
	// ServerEnv is added to each server's environment (GOMAXPROCS=1 always is).
	ServerEnv []string
	// ServerCPU pins each server with taskset -c (e.g. "1"); empty: no pinning.
	ServerCPU string
	// LoadPinning says how the load generator itself is pinned, for the report.
	LoadPinning string
	Impls       []string // default servers.Impls
	Scenarios   []string // default Scenarios
	Transports  []string // default all
	Sizes       Sizes
	Quick       bool
	// Progress receives a line per measurement.
	Progress io.Writer
	Log      *slog.Logger

	taskset string
}

// Result is one measurement.
type Result struct {
	Scenario  string       `json:"scenario"`
	Impl      string       `json:"impl"`
	Transport string       `json:"transport"`
	Native    string       `json:"native_transport"` // the implementation's own name for it
	Step      string       `json:"step,omitempty"`   // idle: "10000", "max"
	Figures   load.Figures `json:"figures"`
	Error     string       `json:"error,omitempty"`
	Seconds   float64      `json:"seconds"`
}

// Target is the result's implementation and transport.
func (r Result) Target() load.Target { return load.Target{Impl: r.Impl, Transport: r.Transport} }

// OK says the measurement finished without any failure.
func (r Result) OK() bool { return r.Error == "" }

// Report is a whole run.
type Report struct {
	Machine  Machine   `json:"machine"`
	Setup    Setup     `json:"setup"`
	Sizes    Sizes     `json:"sizes"`
	Quick    bool      `json:"quick"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Results  []Result  `json:"results"`
	Versions []string  `json:"versions"`
}

// Setup is how the processes were placed.
type Setup struct {
	ServerPinning string `json:"server_pinning"`
	LoadPinning   string `json:"load_pinning"`
	FileLimit     int64  `json:"file_limit"`
	MaxSessions   int    `json:"max_sessions"`
}

// Run runs every selected scenario against every selected server.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.ServerCmd) == 0 {
		return nil, errors.New("runner: no server command")
	}
	if cfg.Impls == nil {
		cfg.Impls = servers.Impls
	}
	if cfg.Scenarios == nil {
		cfg.Scenarios = Scenarios
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	rep := &Report{Machine: ReadMachine(), Sizes: cfg.Sizes, Quick: cfg.Quick, Started: time.Now().UTC(), Versions: Versions}
	rep.Setup.ServerPinning = "none"
	if cfg.ServerCPU != "" {
		path, err := exec.LookPath("taskset")
		if err != nil {
			cfg.Log.Warn("taskset not found: servers run unpinned", "err", err)
			cfg.ServerCPU = ""
		} else {
			cfg.taskset = path
			rep.Setup.ServerPinning = "taskset -c " + cfg.ServerCPU + ", GOMAXPROCS=1"
		}
	}
	if cfg.ServerCPU == "" {
		rep.Setup.ServerPinning = "not pinned, GOMAXPROCS=1"
	}
	rep.Setup.LoadPinning = cfg.LoadPinning
	dialer := load.NewDialer()
	rep.Setup.FileLimit = fileLimit()
	// Both processes have this limit; each keeps ~100 files for its own use.
	maxSessions := int(min(rep.Setup.FileLimit-100, int64(dialer.Limit())))
	if maxSessions > 19_900 {
		maxSessions = 19_900
	}
	rep.Setup.MaxSessions = maxSessions
	fmt.Fprintf(cfg.Progress, "servers: %s; load generator: %s\n", rep.Setup.ServerPinning, rep.Setup.LoadPinning)

	start := time.Now()
	for _, sc := range Scenarios {
		if !slices.Contains(cfg.Scenarios, sc) {
			continue
		}
		var targets []load.Target
		for _, t := range load.Targets {
			if slices.Contains(cfg.Impls, t.Impl) && (cfg.Transports == nil || slices.Contains(cfg.Transports, t.Transport)) && Offers(sc, t) {
				targets = append(targets, t)
			}
		}
		passes := 1
		if _, repeated := headlines[sc]; repeated {
			passes = max(cfg.Sizes.Passes, 1)
		}
		if passes > 1 && len(targets) > 0 {
			settle(ctx, &cfg, dialer, sc, targets[len(targets)-1], maxSessions)
		}
		runs := make([][]Result, len(targets))
		for pass := 0; pass < passes; pass++ {
			for k := range targets {
				i := passOrder(k, pass, passes, len(targets))
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				for _, r := range measure(ctx, &cfg, dialer, sc, targets[i], maxSessions) {
					runs[i] = append(runs[i], r)
					fmt.Fprintln(cfg.Progress, progressLine(r))
				}
			}
		}
		reported := make([][]Result, len(targets))
		for i := range targets {
			reported[i] = median(sc, runs[i])
		}
		pairPasses(sc, targets, runs, reported)
		for _, r := range reported {
			rep.Results = append(rep.Results, r...)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// settle runs sc against t, uncounted, until cfg.Sizes.Settle has passed
// (at least once if it is positive).
func settle(ctx context.Context, cfg *Config, dialer *load.Dialer, sc string, t load.Target, maxSessions int) {
	start := time.Now()
	for cfg.Sizes.Settle > 0 && ctx.Err() == nil {
		for _, r := range measure(ctx, cfg, dialer, sc, t, maxSessions) {
			fmt.Fprintln(cfg.Progress, "(settling, not counted) "+progressLine(r))
		}
		if time.Since(start) >= cfg.Sizes.Settle {
			return
		}
	}
}

// passOrder is the target run k-th in pass pass of passes over n targets.
// Each pass starts a passes-th of the list further on, so that every
// target runs early in one pass, midway in another and late in a third.
// (Starting one target further on each pass kept the first few targets,
// cometkit's, within the first three places of every pass: always the
// nearest to the end of the scenario before, which on this machine can
// still be settling, tens of thousands of closed connections later.)
func passOrder(k, pass, passes, n int) int {
	return (k + pass*n/passes) % n
}

// Offers says whether scenario sc applies to t (broadcast: WebSocket;
// round trips: long-poll; fan-out: event stream; the rest: every transport).
func Offers(sc string, t load.Target) bool {
	switch sc {
	case ScenarioBroadcast:
		return t.Transport == load.WebSocket
	case ScenarioRoundTrip:
		return t.Transport == load.LongPoll
	case ScenarioFanOut:
		return t.Transport == load.EventStream
	}
	return true
}

// loadHeapLimit bounds the load generator's heap while holdCollections
// holds its collector off: past it, Go collects as usual.
const loadHeapLimit = 4 << 30

// holdCollections collects the load generator's garbage now and holds its
// collector off until the returned func is called (unless the heap
// reaches loadHeapLimit). On its one core, a collection's mark phase took
// 12-37 ms of wall clock at GOGC=400 and came inside a third of the echo
// runs, whichever server's turn it was: the echoes it held up set that
// run's p99 (GODEBUG=gctrace=1 beside the progress lines). The figures are
// the servers', not the instrument's.
func holdCollections() (restore func()) {
	runtime.GC()
	percent := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(loadHeapLimit)
	return func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(percent)
	}
}

// measure runs one scenario against one target on a fresh server.
func measure(ctx context.Context, cfg *Config, dialer *load.Dialer, sc string, t load.Target, maxSessions int) []Result {
	started := time.Now()
	load.SockJSRetries.Store(0)
	res := Result{Scenario: sc, Impl: t.Impl, Transport: t.Transport, Native: t.Native(), Figures: load.Figures{}}
	fail := func(err error) []Result {
		res.Error = err.Error()
		res.Seconds = time.Since(started).Seconds()
		return []Result{res}
	}
	p, err := startServer(ctx, cfg, t.Impl)
	if err != nil {
		return fail(err)
	}
	defer p.stop()
	if sc != ScenarioIdle {
		defer holdCollections()()
	}
	serverCPU0, clientCPU0 := p.cpuSeconds(), selfCPUSeconds()
	env := load.NewEnv("http://"+p.addr, dialer)
	env.CPU = func() (float64, float64) { return p.cpuSeconds(), selfCPUSeconds() }
	defer env.Close()
	sz := cfg.Sizes
	var out []Result
	switch sc {
	case ScenarioIdle:
		counts := make([]int, 0, len(sz.IdleCounts))
		for _, n := range sz.IdleCounts {
			if n == MaxSessions || n > maxSessions {
				n = maxSessions
			}
			if len(counts) == 0 || n > counts[len(counts)-1] {
				counts = append(counts, n)
			}
		}
		for i, st := range load.Idle(ctx, env, t, counts, sz.SessionsConcurrency) {
			r := res
			r.Figures = st.Figures
			r.Step = strconv.Itoa(st.Sessions)
			if i == len(counts)-1 && slices.Contains(sz.IdleCounts, MaxSessions) {
				r.Step = "max"
			}
			if st.Err != nil {
				r.Error = st.Err.Error()
			}
			out = append(out, r)
		}
	case ScenarioEcho:
		res.Figures, err = load.Echo(ctx, env, t, load.EchoConfig{Sessions: sz.EchoSessions, Rate: sz.EchoRate,
			Duration: sz.EchoDuration, Concurrency: sz.SessionsConcurrency})
	case ScenarioBroadcast:
		res.Figures, err = load.Broadcast(ctx, env, t, load.BroadcastConfig{Sessions: sz.BroadcastSessions,
			Rounds: sz.BroadcastRounds, Size: load.MessageSize, Concurrency: sz.SessionsConcurrency})
	case ScenarioRoundTrip:
		res.Figures, err = load.RoundTrips(ctx, env, t, load.RoundTripConfig{Sessions: sz.RoundTripSessions, Duration: sz.RoundTripDuration})
	case ScenarioFanOut:
		res.Figures, err = load.FanOut(ctx, env, t, load.FanOutConfig{Sessions: sz.FanOutSessions, PerRound: sz.FanOutPerRound,
			Duration: sz.FanOutDuration, Concurrency: sz.SessionsConcurrency})
	case ScenarioConnect:
		res.Figures, err = load.Connects(ctx, env, t, load.ConnectConfig{Sessions: sz.ConnectSessions, Concurrency: sz.ConnectConcurrency})
	}
	if out == nil {
		if err != nil {
			res.Error = err.Error()
		}
		out = []Result{res}
	}
	// A server that died explains every failure it caused. (When something
	// failed, give a dying server a moment to be seen dead.)
	grace := time.Duration(0)
	if slices.ContainsFunc(out, func(r Result) bool { return !r.OK() }) {
		grace = 500 * time.Millisecond
	}
	if crash := p.crashed(grace); crash != nil {
		for i := range out {
			out[i].Error = joinErr(crash.Error(), out[i].Error)
		}
	}
	retries := load.SockJSRetries.Swap(0)
	// CPU time of each side over the whole measurement (set-up included):
	// which of the two cores was the limit.
	serverCPU, clientCPU := p.cpuSeconds()-serverCPU0, selfCPUSeconds()-clientCPU0
	p.stop()
	for i := range out {
		out[i].Seconds = time.Since(started).Seconds()
		if out[i].Figures != nil && i == len(out)-1 {
			out[i].Figures["server_cpu_s"] = serverCPU
			out[i].Figures["client_cpu_s"] = clientCPU
		}
		if retries > 0 && out[i].Figures != nil {
			out[i].Figures["sockjs_2010_retries"] = float64(retries)
		}
	}
	return out
}

// fileLimit is the process's open-file limit (the soft one, which Go
// raises to the hard one at start).
func fileLimit() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return -1
	}
	return int64(rl.Cur)
}

func joinErr(a, b string) string {
	if b == "" {
		return a
	}
	return a + " (" + b + ")"
}

// headlines are the repeated scenarios' headline figures: the one the
// median run is chosen by, and whether lower is better.
var headlines = map[string]struct {
	key         string
	lowerBetter bool
	name        string // in prose
}{
	ScenarioEcho:      {"sent_p99_ms", true, "p99 from Send"}, // p99 from due is mostly the load generator's lateness
	ScenarioBroadcast: {"p99_ms", true, "p99"},
	ScenarioRoundTrip: {"round_trips_per_s", false, "round trips/s"},
	ScenarioFanOut:    {"messages_per_s", false, "messages/s"},
	ScenarioConnect:   {"connects_per_s", false, "connects/s"},
}

// median reduces one server's runs of scenario sc to the run whose
// headline figure is the median, with the lowest and highest beside it
// (<key>_lo, <key>_hi) and the count of runs: a single run's tail on one
// shared core swings 2-3x, and the median of a few is what a second run
// of the bench would show again. A failed run is reported as it is: a
// failure is never averaged away.
func median(sc string, runs []Result) []Result {
	h, repeated := headlines[sc]
	if !repeated || len(runs) <= 1 {
		return runs
	}
	if i := slices.IndexFunc(runs, func(r Result) bool { return !r.OK() }); i >= 0 {
		return runs[i : i+1]
	}
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b Result) int { return cmp.Compare(a.Figures[h.key], b.Figures[h.key]) })
	m := sorted[len(sorted)/2]
	f := maps.Clone(m.Figures)
	f[h.key+"_lo"], f[h.key+"_hi"] = sorted[0].Figures[h.key], sorted[len(sorted)-1].Figures[h.key]
	f["runs"] = float64(len(runs))
	m.Figures = f
	return []Result{m}
}
