package runner

import (
	"strings"
	"testing"

	"github.com/cometkit/cometkit/bench/load"
)

// passRuns makes runs[i][p] of scenario sc, target i's run in pass p, from
// its headline figures: figures[i][p], where a negative one is a failed run.
func passRuns(sc string, targets []load.Target, figures [][]float64) [][]Result {
	key := headlines[sc].key
	runs := make([][]Result, len(targets))
	for i, t := range targets {
		for _, v := range figures[i] {
			r := Result{Scenario: sc, Impl: t.Impl, Transport: t.Transport, Figures: load.Figures{key: v}}
			if v < 0 {
				r.Error = "boom"
			}
			runs[i] = append(runs[i], r)
		}
	}
	return runs
}

// cometkit is compared with the best peer of each pass, on its own
// transport: the raw floor is no peer, a failed peer run is no reference,
// and a pass with no peer left is not paired. The raw floor is compared
// the same way, as the scenario's resolution.
func TestPairPasses(t *testing.T) {
	targets := []load.Target{
		{Impl: "cometkit", Transport: load.LongPoll}, {Impl: "sockjs", Transport: load.LongPoll},
		{Impl: "socketio", Transport: load.LongPoll}, {Impl: "raw", Transport: load.LongPoll},
		{Impl: "cometkit", Transport: load.WebSocket}, {Impl: "centrifuge", Transport: load.WebSocket},
	}
	runs := passRuns(ScenarioRoundTrip, targets, [][]float64{
		{100, 90, 80, 50},   // cometkit long-poll
		{90, 95, 10, -1},    // sockjs: pass 4 failed
		{80, -1, 85, -1},    // socketio: passes 2 and 4 failed
		{999, 50, 999, 999}, // raw
		{10, 10, 10, 10},    // cometkit websocket
		{5, 5, 5, 5},        // centrifuge
	})
	out := make([][]Result, len(targets))
	for i := range targets {
		out[i] = median(ScenarioRoundTrip, runs[i])
	}
	pairPasses(ScenarioRoundTrip, targets, runs, out)
	f := out[0][0].Figures
	// Passes: 100 vs 90 (led), 90 vs 95 (not: socketio's failed), 80
	// vs 85 (not), no peer finished (unpaired).
	if f["passes_paired"] != 3 || f["passes_led"] != 1 {
		t.Fatalf("long-poll: led %v of %v paired passes; want 1 of 3", f["passes_led"], f["passes_paired"])
	}
	if want := 90.0 / 95; f["pass_ratio"] != want { // ratios 1.11, 0.947, 0.941
		t.Fatalf("median pass ratio %v, want %v", f["pass_ratio"], want)
	}
	if w := out[4][0].Figures; w["passes_led"] != 4 || w["passes_paired"] != 4 || w["pass_ratio"] != 2 {
		t.Fatalf("websocket: %v", w)
	}
	if _, ok := out[1][0].Figures["passes_led"]; ok {
		t.Fatal("a peer's row got cometkit's pass figures")
	}
	// The floor: 999 vs 90 (led), 50 vs 95 (not), 999 vs 85 (led), unpaired.
	if r := out[3][0].Figures; r["passes_led"] != 2 || r["passes_paired"] != 3 {
		t.Fatalf("raw floor: led %v of %v paired passes; want 2 of 3", r["passes_led"], r["passes_paired"])
	}

	rep := &Report{Results: []Result{out[0][0], out[4][0], out[3][0]}}
	got := Summary([]*Report{rep, rep})
	for _, want := range []string{
		"- roundtrip round trips/s, websocket: led in 8 of 8 passes",
		"- roundtrip round trips/s, longpoll: led in 2 of 6 passes (the raw floor: 4 of 6)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	line := passesLine(rep.Results, ScenarioRoundTrip)
	if !strings.Contains(line, "longpoll: led in 1 of 3 passes, median pass ratio 0.95×") ||
		!strings.Contains(line, "The raw floor, measured the same way (how finely this scenario tells servers apart here): longpoll: led in 2 of 3 passes") {
		t.Errorf("table note: %q", line)
	}
	if strings.Contains(got, "websocket: led in 8 of 8 passes (the raw floor") {
		t.Errorf("a transport without a floor run got a floor count:\n%s", got)
	}
}

// The broadcast is paired twice: on its headline, the p99 over every
// delivery, and on the median broadcast's own p99, which one stalled
// broadcast does not set; each gets its own figures, note and summary line.
func TestPairPassesBroadcastTwice(t *testing.T) {
	targets := []load.Target{
		{Impl: "cometkit", Transport: load.WebSocket}, {Impl: "sockjs", Transport: load.WebSocket},
		{Impl: "raw", Transport: load.WebSocket},
	}
	// pooled p99, median broadcast's p99, per pass
	figs := [][][2]float64{
		{{180, 110}, {120, 105}, {175, 108}}, // cometkit: led pooled in pass 2 only, median in all
		{{150, 130}, {140, 125}, {160, 120}}, // sockjs
		{{170, 100}, {110, 104}, {150, 150}}, // raw
	}
	runs := make([][]Result, len(targets))
	for i, tg := range targets {
		for _, v := range figs[i] {
			runs[i] = append(runs[i], Result{Scenario: ScenarioBroadcast, Impl: tg.Impl, Transport: tg.Transport,
				Figures: load.Figures{"p99_ms": v[0], "round_p99_median_ms": v[1]}})
		}
	}
	out := make([][]Result, len(targets))
	for i := range targets {
		out[i] = median(ScenarioBroadcast, runs[i])
	}
	pairPasses(ScenarioBroadcast, targets, runs, out)
	ck, raw := out[0][0].Figures, out[2][0].Figures
	if ck["passes_led"] != 1 || ck["passes_paired"] != 3 {
		t.Errorf("pooled p99: cometkit led %v of %v passes; want 1 of 3", ck["passes_led"], ck["passes_paired"])
	}
	if ck["passes_led_round_p99_median"] != 3 || ck["passes_paired_round_p99_median"] != 3 {
		t.Errorf("median broadcast's p99: cometkit led %v of %v passes; want 3 of 3",
			ck["passes_led_round_p99_median"], ck["passes_paired_round_p99_median"])
	}
	if raw["passes_led"] != 2 || raw["passes_led_round_p99_median"] != 2 {
		t.Errorf("raw floor led %v (pooled) and %v (median broadcast) passes; want 2 and 2",
			raw["passes_led"], raw["passes_led_round_p99_median"])
	}
	rep := &Report{Results: []Result{out[0][0], out[1][0], out[2][0]}}
	note := passesLine(rep.Results, ScenarioBroadcast)
	for _, want := range []string{
		"cometkit's p99 against the best peer that finished in the same pass (a pass cometkit failed counts as lost): websocket: led in 1 of 3 passes",
		"cometkit's median broadcast's p99 against the best peer that finished in the same pass (a pass cometkit failed counts as lost): websocket: led in 3 of 3 passes",
	} {
		if !strings.Contains(note, want) {
			t.Errorf("table note lacks %q:\n%s", want, note)
		}
	}
	sum := Summary([]*Report{rep})
	for _, want := range []string{
		"- broadcast p99, websocket: led in 1 of 3 passes (the raw floor: 2 of 3)",
		"- broadcast median broadcast's p99, websocket: led in 3 of 3 passes (the raw floor: 2 of 3)",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

// Over three passes each target runs early in one pass and late in
// another: its places lie at least half a pass apart. (With one step a
// pass, cometkit's three targets, first in the list, were always within
// the first three places or the last two.)
func TestPassOrderSpreads(t *testing.T) {
	for _, n := range []int{3, 4, 5, 9, 11} {
		const passes = 3
		first, last := make([]int, n), make([]int, n)
		for i := range first {
			first[i], last[i] = n, -1
		}
		starts := map[int]bool{}
		for pass := 0; pass < passes; pass++ {
			seen := map[int]bool{}
			for k := 0; k < n; k++ {
				i := passOrder(k, pass, passes, n)
				if seen[i] {
					t.Fatalf("%d targets: pass %d runs target %d twice", n, pass, i)
				}
				seen[i] = true
				first[i], last[i] = min(first[i], k), max(last[i], k)
			}
			starts[passOrder(0, pass, passes, n)] = true
		}
		if len(starts) != passes {
			t.Errorf("%d targets: %d passes start with only %d different targets", n, passes, len(starts))
		}
		for i := range first {
			if last[i]-first[i] < n/2 {
				t.Errorf("%d targets: target %d runs only in places %d to %d", n, i, first[i], last[i])
			}
		}
	}
}

// A pass in which cometkit failed while a peer finished is paired and lost,
// even when the failure is the run reported; an even count of ratios has
// the mean of its middle two as median.
func TestPairPassesCountsFailures(t *testing.T) {
	targets := []load.Target{{Impl: "cometkit", Transport: load.EventStream}, {Impl: "sockjs", Transport: load.EventStream}}
	runs := passRuns(ScenarioFanOut, targets, [][]float64{{30, -1, 10}, {10, 10, 20}})
	out := [][]Result{median(ScenarioFanOut, runs[0]), median(ScenarioFanOut, runs[1])}
	if out[0][0].OK() {
		t.Fatal("the failed run should be the one reported")
	}
	pairPasses(ScenarioFanOut, targets, runs, out)
	f := out[0][0].Figures
	if f["passes_paired"] != 3 || f["passes_led"] != 1 {
		t.Fatalf("led %v of %v; want 1 of 3 (the failed pass lost)", f["passes_led"], f["passes_paired"])
	}
	if want := (3.0 + 0.5) / 2; f["pass_ratio"] != want {
		t.Fatalf("median of ratios 3 and 0.5: %v, want %v", f["pass_ratio"], want)
	}
	got := Summary([]*Report{{Results: out[0]}})
	if !strings.Contains(got, "- fanout messages/s, eventstream: led in 1 of 3 passes") {
		t.Errorf("a failed run's passes are left out of the summary:\n%s", got)
	}
}
