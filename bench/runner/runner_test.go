package runner_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cometkit/cometkit/bench/load"
	"github.com/cometkit/cometkit/bench/runner"
	"github.com/cometkit/cometkit/bench/servers"
)

// serverEnv makes this test binary act as benchserver: the runner starts
// servers as separate processes, and re-executing the test binary spares
// the smoke test a build of its own.
const serverEnv = "COMETKIT_BENCH_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(serverEnv) == "1" {
		os.Exit(servers.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// primary is the figure each scenario must produce when it succeeds.
var primary = map[string]string{
	runner.ScenarioIdle:      "rss_kb_per_session",
	runner.ScenarioEcho:      "sent_p99_ms",
	runner.ScenarioBroadcast: "deliveries_per_s",
	runner.ScenarioRoundTrip: "round_trips_per_s",
	runner.ScenarioFanOut:    "messages_per_s",
	runner.ScenarioConnect:   "connects_per_s",
}

// TestQuickPipeline runs the whole benchmark in quick mode against every
// implementation — servers in their own processes, every scenario once,
// small — and checks that every measurement produced its figure or a
// clearly reported failure, and that the three output files are sound.
func TestQuickPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 40 server processes")
	}
	sizes := runner.QuickSizes()
	sizes.IdleCounts = []int{20, 40}
	sizes.EchoSessions, sizes.EchoRate, sizes.EchoDuration = 5, 100, 300*time.Millisecond
	sizes.BroadcastSessions, sizes.BroadcastRounds = 50, 2
	sizes.RoundTripSessions, sizes.RoundTripDuration = 2, 300*time.Millisecond
	sizes.FanOutSessions, sizes.FanOutPerRound, sizes.FanOutDuration = 10, 5, 300*time.Millisecond
	sizes.ConnectSessions, sizes.ConnectConcurrency = 20, 4
	sizes.SessionsConcurrency = 8

	cfg := runner.Config{
		ServerCmd: []string{os.Args[0]},
		// A race-enabled binary sleeps 1 s at exit unless told not to.
		ServerEnv:   []string{serverEnv + "=1", "GORACE=atexit_sleep_ms=0 " + os.Getenv("GORACE")},
		LoadPinning: "not pinned (go test)",
		Sizes:       sizes,
		Quick:       true,
		Progress:    testWriter{t},
	}
	if _, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
		cfg.ServerCPU = "1" // the servers' pinning, as the full run does it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := runner.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("the pipeline took %s", time.Since(start).Round(time.Millisecond))

	for _, sc := range runner.Scenarios {
		for _, tg := range load.Targets {
			if !runner.Offers(sc, tg) {
				continue
			}
			var got []runner.Result
			for _, r := range rep.Results {
				if r.Scenario == sc && r.Target() == tg {
					got = append(got, r)
				}
			}
			if len(got) == 0 {
				t.Errorf("%s %s: no result", sc, tg)
				continue
			}
			for _, r := range got {
				v, ok := r.Figures[primary[sc]]
				switch {
				case r.OK() && (!ok || v <= 0):
					t.Errorf("%s %s %s: no %s in %v", sc, tg, r.Step, primary[sc], r.Figures)
				case !r.OK() && strings.TrimSpace(r.Error) == "":
					t.Errorf("%s %s %s: failed without saying why", sc, tg, r.Step)
				case !r.OK() && (tg.Impl == "cometkit" || tg.Impl == "raw"):
					// Ours (and the floor) must work; a peer's failure is a finding.
					t.Errorf("%s %s %s: %s", sc, tg, r.Step, r.Error)
				case !r.OK():
					t.Logf("reported failure: %s %s %s: %s", sc, tg, r.Step, r.Error)
				}
				if sc == runner.ScenarioBroadcast && r.OK() {
					// Each broadcast's own p99: the median broadcast's is
					// at most the worst's, which is at most the slowest delivery.
					med, worst, slowest := r.Figures["round_p99_median_ms"], r.Figures["round_p99_max_ms"], r.Figures["max_ms"]
					if med <= 0 || med > worst || worst > slowest {
						t.Errorf("%s %s: median broadcast's p99 %v, worst %v, slowest delivery %v", sc, tg, med, worst, slowest)
					}
				}
			}
		}
	}

	dir := t.TempDir()
	if err := runner.Write(rep, dir); err != nil {
		t.Fatal(err)
	}
	var back runner.Report
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != len(rep.Results) || back.Machine.Cores < 1 ||
		back.Machine.GoVersion == "" || back.Machine.Kernel == "" || back.Machine.Date == "" {
		t.Errorf("results.json does not hold the run (err %v): %s", err, b[:min(len(b), 400)])
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, heading := range []string{"## Idle sessions held", "## Echo round trip", "## Broadcast", "## Long-poll round trips",
		"## Event-stream messages", "## Connects per second", "vs best peer", "vs raw"} {
		if !strings.Contains(string(md), heading) {
			t.Errorf("results.md lacks %q", heading)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(svg); err != nil {
		t.Errorf("chart.svg: %v", err)
	}
	if n := strings.Count(string(svg), "<rect"); n < len(rep.Results) {
		t.Errorf("chart.svg has %d rects for %d results", n, len(rep.Results))
	}
}

// wellFormed parses b as XML to the end.
// TestFailingServer: a server that dies (here one that exits at once, having
// printed an address nobody listens on) is reported in the results, and the
// run goes on to the next measurement.
func TestFailingServer(t *testing.T) {
	sizes := runner.QuickSizes()
	sizes.ConnectSessions, sizes.ConnectConcurrency = 4, 2
	sizes.EchoSessions, sizes.EchoDuration = 2, 100*time.Millisecond
	rep, err := runner.Run(context.Background(), runner.Config{
		ServerCmd: []string{"/bin/sh", "-c", "echo 127.0.0.1:9; exit 3", "sh"},
		Impls:     []string{"raw", "sockjs"},
		Scenarios: []string{runner.ScenarioConnect, runner.ScenarioEcho},
		Sizes:     sizes,
		Quick:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 10 { // (raw websocket and long-poll + 3 sockjs transports) × 2 scenarios
		t.Fatalf("%d results, want 10", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.OK() || !strings.Contains(r.Error, "server exited during the run: exit status 3") {
			t.Errorf("%s %s: error %q, want the server's exit", r.Scenario, r.Target(), r.Error)
		}
	}
	if md := runner.Markdown(rep); !strings.Contains(md, "**failed:** server exited during the run") {
		t.Errorf("the tables do not show the failure:\n%s", md)
	}
}

func wellFormed(b []byte) error {
	d := xml.NewDecoder(strings.NewReader(string(b)))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if root != "svg" {
				return errors.New("root element is " + root)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
}

// testWriter sends the runner's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
