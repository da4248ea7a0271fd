package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/cometkit/cometkit/bench/load"
)

// Summary gives each run its column: cometkit's figure, the best peer's
// with the ratio, the floor's; and counts the runs that met each target.
func TestSummary(t *testing.T) {
	run := func(at time.Time, ck, sj, so, raw float64) *Report {
		rt := func(impl string, v float64) Result {
			return Result{Scenario: ScenarioRoundTrip, Impl: impl, Transport: load.LongPoll,
				Figures: load.Figures{"round_trips_per_s": v}}
		}
		failed := rt("centrifuge", 99_999) // a failed run is never the reference
		failed.Error = "boom"
		return &Report{Started: at, Results: []Result{rt("cometkit", ck), rt("sockjs", sj), rt("socketio", so), rt("raw", raw), failed}}
	}
	t0 := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	broken := run(t0.Add(2*time.Hour), 30_000, 1, 1, 1)
	broken.Results[0].Error = "refused" // cometkit's own run failed: it counts, and missed
	got := Summary([]*Report{run(t0, 26_000, 20_000, 21_000, 30_000), run(t0.Add(time.Hour), 13_000, 15_000, 10_000, 18_000), broken})
	for _, want := range []string{
		"| 2026-12-07 05:00Z: cometkit / best peer (ratio) / raw | 2026-12-07 06:00Z:",
		"| long-poll round trips/s | 26,000 / socketio 21,000 (1.24×) / 30,000 | 13,000 / sockjs 15,000 (0.87×) / 18,000 | failed |",
		"| broadcast p99 ms | — | — | — |",
		"Target ≥ 25,000 long-poll round trips/s: met in 1 of 3 runs.",
		"Target hold 19,900 WebSocket sessions: met in 0 of 0 runs.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}
