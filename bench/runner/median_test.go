package runner

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/cometkit/cometkit/bench/load"
)

func TestMedianRun(t *testing.T) {
	run := func(p99 float64, errText string) Result {
		return Result{Scenario: ScenarioBroadcast, Impl: "cometkit", Transport: load.WebSocket,
			Figures: load.Figures{"p99_ms": p99}, Error: errText}
	}
	got := median(ScenarioBroadcast, []Result{run(9, ""), run(3, ""), run(5, "")})
	if len(got) != 1 || got[0].Figures["p99_ms"] != 5 || got[0].Figures["p99_ms_lo"] != 3 ||
		got[0].Figures["p99_ms_hi"] != 9 || got[0].Figures["runs"] != 3 {
		t.Fatalf("median of 9, 3, 5: %+v", got)
	}
	got = median(ScenarioBroadcast, []Result{run(1, ""), run(2, "refused"), run(3, "")})
	if len(got) != 1 || got[0].Error != "refused" {
		t.Fatalf("a failed run must be what is reported: %+v", got)
	}
	idle := []Result{{Scenario: ScenarioIdle, Step: "100"}, {Scenario: ScenarioIdle, Step: "max"}}
	if got := median(ScenarioIdle, idle); len(got) != 2 {
		t.Fatalf("idle is not repeated, its steps stay: %+v", got)
	}
}

// A measurement holds the load generator's collector off, after one
// collection, and gives it back as it was.
func TestHoldCollections(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 40))
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	restore := holdCollections()
	var held runtime.MemStats
	runtime.ReadMemStats(&held)
	if held.NumGC == before.NumGC {
		t.Error("no collection before the measurement")
	}
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GC percent %d during the measurement, want -1 (off)", p)
	}
	if l := debug.SetMemoryLimit(-1); l != loadHeapLimit {
		t.Errorf("memory limit %d during the measurement, want %d", l, loadHeapLimit)
	}
	restore()
	if p := debug.SetGCPercent(-1); p != 150 {
		t.Errorf("GC percent %d after, want 150 back", p)
	}
	debug.SetGCPercent(150)
	if l := debug.SetMemoryLimit(-1); l != 1<<40 {
		t.Errorf("memory limit %d after, want %d back", l, 1<<40)
	}
}
