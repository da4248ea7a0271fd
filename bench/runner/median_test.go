package runner

import (
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
