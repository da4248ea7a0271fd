package runner

import (
	"fmt"
	"math"
	"strings"

	"github.com/cometkit/cometkit/bench/load"
)

// summaryRow is one figure the summary follows from run to run.
type summaryRow struct {
	what      string
	scenario  string
	step      string
	transport string
	ratio     ratio
	format    func(float64) string
}

var summaryRows = []summaryRow{
	{"idle RSS KB/session at 10,000, WebSocket", ScenarioIdle, "10000", load.WebSocket, ratio{"rss_kb_per_session", "", true}, kb},
	{"idle RSS KB/session at 10,000, event stream", ScenarioIdle, "10000", load.EventStream, ratio{"rss_kb_per_session", "", true}, kb},
	{"idle RSS KB/session at 10,000, long-poll", ScenarioIdle, "10000", load.LongPoll, ratio{"rss_kb_per_session", "", true}, kb},
	{"echo p99 ms from Send, WebSocket", ScenarioEcho, "", load.WebSocket, ratio{"sent_p99_ms", "", true}, ms},
	{"echo p99 ms from Send, event stream", ScenarioEcho, "", load.EventStream, ratio{"sent_p99_ms", "", true}, ms},
	{"echo p99 ms from Send, long-poll", ScenarioEcho, "", load.LongPoll, ratio{"sent_p99_ms", "", true}, ms},
	{"echo p99 ms from due, WebSocket", ScenarioEcho, "", load.WebSocket, ratio{"p99_ms", "", true}, ms},
	{"echo p99 ms from due, event stream", ScenarioEcho, "", load.EventStream, ratio{"p99_ms", "", true}, ms},
	{"echo p99 ms from due, long-poll", ScenarioEcho, "", load.LongPoll, ratio{"p99_ms", "", true}, ms},
	{"broadcast p99 ms", ScenarioBroadcast, "", load.WebSocket, ratio{"p99_ms", "", true}, ms},
	{"broadcast p99 ms, the median broadcast's", ScenarioBroadcast, "", load.WebSocket, ratio{"round_p99_median_ms", "", true}, ms},
	{"broadcast deliveries/s", ScenarioBroadcast, "", load.WebSocket, ratio{"deliveries_per_s", "", false}, count},
	{"broadcast server CPU µs/delivery", ScenarioBroadcast, "", load.WebSocket, ratio{"server_cpu_us_per_delivery", "", true}, frac},
	{"long-poll round trips/s", ScenarioRoundTrip, "", load.LongPoll, ratio{"round_trips_per_s", "", false}, count},
	{"long-poll server CPU µs/round trip", ScenarioRoundTrip, "", load.LongPoll, ratio{"server_cpu_us_per_round_trip", "", true}, frac},
	{"event-stream messages/s", ScenarioFanOut, "", load.EventStream, ratio{"messages_per_s", "", false}, count},
	{"connects/s, WebSocket", ScenarioConnect, "", load.WebSocket, ratio{"connects_per_s", "", false}, count},
	{"connects/s, event stream", ScenarioConnect, "", load.EventStream, ratio{"connects_per_s", "", false}, count},
	{"connects/s, long-poll", ScenarioConnect, "", load.LongPoll, ratio{"connects_per_s", "", false}, count},
}

// Summary is a table of the headline figures of several full runs, one
// column per run: cometkit's figure, the best peer's with the ratio, and
// the raw floor's. On a machine whose speed swings, what holds in every
// run says more than any one run.
func Summary(reps []*Report) string {
	var b strings.Builder
	b.WriteString("| figure |")
	for _, rep := range reps {
		fmt.Fprintf(&b, " %s: cometkit / best peer (ratio) / raw |", rep.Started.UTC().Format("2006-01-02 15:04Z"))
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---|", len(reps)))
	b.WriteString("\n")
	for _, h := range summaryRows {
		fmt.Fprintf(&b, "| %s |", h.what)
		for _, rep := range reps {
			b.WriteString(" " + summaryCell(rep, h) + " |")
		}
		b.WriteString("\n")
	}
	for _, tg := range targets {
		met, measured := 0, 0
		for _, rep := range reps {
			v, ok, failed := cometkitFigure(rep, tg.scenario, tg.step, tg.transport, tg.key)
			if failed {
				measured++ // a failed run missed
				continue
			}
			if ok {
				measured++
				if tg.met(v) {
					met++
				}
			}
		}
		fmt.Fprintf(&b, "\nTarget %s: met in %d of %d runs.", tg.what, met, measured)
	}
	b.WriteString("\n")
	b.WriteString(passesSummary(reps))
	return b.String()
}

// passesSummary adds up, over the runs, the passes in which cometkit led
// every peer of the same pass, for each repeated scenario and transport.
func passesSummary(reps []*Report) string {
	var lines []string
	for _, sc := range Scenarios {
		for _, pf := range pairedFigures(sc) {
			for _, tr := range []string{load.WebSocket, load.EventStream, load.LongPoll} {
				if line := passesTotal(reps, sc, tr, pf); line != "" {
					lines = append(lines, line)
				}
			}
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return "\nPass by pass, over all the runs (cometkit's headline figure against the best peer that finished in the same pass; " +
		"a pass cometkit failed counts as lost):\n\n" +
		strings.Join(lines, "\n") + "\n"
}

// passesTotal is one line of passesSummary: the passes of scenario sc on
// transport tr that cometkit (and the floor) led on figure pf, over reps.
func passesTotal(reps []*Report, sc, tr string, pf paired) string {
	var led, paired, floorLed, floorPaired float64
	for _, rep := range reps {
		for _, r := range rep.Results {
			if r.Scenario != sc || r.Transport != tr {
				continue
			}
			switch r.Impl { // a failed run's passes count, lost
			case "cometkit":
				led += r.Figures["passes_led"+pf.suffix]
				paired += r.Figures["passes_paired"+pf.suffix]
			case "raw":
				floorLed += r.Figures["passes_led"+pf.suffix]
				floorPaired += r.Figures["passes_paired"+pf.suffix]
			}
		}
	}
	if paired == 0 {
		return ""
	}
	line := fmt.Sprintf("- %s %s, %s: led in %d of %d passes", sc, pf.name, tr, int(led), int(paired))
	if floorPaired > 0 {
		line += fmt.Sprintf(" (the raw floor: %d of %d)", int(floorLed), int(floorPaired))
	}
	return line
}

func summaryCell(rep *Report, h summaryRow) string {
	var row *Result
	var all []Result
	for _, r := range rep.Results {
		if r.Scenario == h.scenario && r.Step == h.step {
			all = append(all, r)
			if r.Impl == "cometkit" && r.Transport == h.transport {
				row = &r
			}
		}
	}
	if row == nil {
		return "—"
	}
	if !row.OK() {
		return "failed"
	}
	v, ok := row.Figures[h.ratio.key]
	if !ok {
		return "—"
	}
	best, bestImpl, raw := reference(all, *row, h.ratio)
	s := h.format(v)
	if !math.IsNaN(best) {
		s += " / " + bestImpl + " " + h.format(best) + " (" + ratioText(v, best) + ")"
	}
	if !math.IsNaN(raw) {
		s += " / " + h.format(raw)
	} else {
		s += " / —"
	}
	return s
}

// cometkitFigure is cometkit's figure key in rep, if it was measured; failed
// says the measurement failed.
func cometkitFigure(rep *Report, scenario, step, transport, key string) (v float64, ok, failed bool) {
	for _, r := range rep.Results {
		if r.Impl == "cometkit" && r.Scenario == scenario && r.Step == step && r.Transport == transport {
			if !r.OK() {
				return 0, false, true
			}
			v, ok := r.Figures[key]
			return v, ok, false
		}
	}
	return 0, false, false
}
