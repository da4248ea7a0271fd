package runner

import (
	"fmt"
	"math"
	"strings"

	"github.com/cometkit/cometkit/bench/load"
)

// Pairing by pass. Every server of a pass runs back to back, under a
// minute apart, while this machine's speed drifts over minutes (the raw long-poll
// floor alone made 14,000 to 23,000 round trips/s within one hour). A
// server whose median run fell in a fast minute can beat one whose median
// fell in a slow one by a margin neither has. Within one pass the servers
// share the machine's state, so cometkit is compared with its peers pass
// by pass too:
//
//   - passes_paired: the passes in which at least one peer on cometkit's
//     transport finished (a pass in which cometkit failed counts, as lost);
//   - passes_led: those in which cometkit finished and its headline figure
//     beat that of every peer that finished;
//   - pass_ratio: the median, over the paired passes cometkit finished, of
//     its figure divided by the pass's best peer's.
//
// The raw floor gets the same figures: it does strictly less than any
// session layer, so how often it leads the peers pass by pass says how
// finely the scenario can tell servers apart on this machine (where the
// floor leads only half the passes, so can no session layer).

// paired is a figure compared pass by pass: each scenario's headline,
// and for the broadcast also the median broadcast's p99, which one stall
// of the host does not set (its pooled p99 is set by the slowest of ten
// broadcasts). Its pass figures are named passes_paired, passes_led and
// pass_ratio, then suffix.
type paired struct {
	key, name   string
	lowerBetter bool
	suffix      string
}

// pairedFigures are the figures of scenario sc compared pass by pass
// (none if it is not repeated), the headline first.
func pairedFigures(sc string) []paired {
	h, repeated := headlines[sc]
	if !repeated {
		return nil
	}
	out := []paired{{key: h.key, name: h.name, lowerBetter: h.lowerBetter}}
	if sc == ScenarioBroadcast {
		out = append(out, paired{key: "round_p99_median_ms", name: "median broadcast's p99", lowerBetter: true, suffix: "_round_p99_median"})
	}
	return out
}

// pairPasses adds the pass-by-pass figures to cometkit's and the raw
// floor's result for each transport of scenario sc. runs[i][p] is target
// i's run in pass p; out holds the reported (median) results of each
// target, in the same order; each of the two single results gets the
// figures.
func pairPasses(sc string, targets []load.Target, runs [][]Result, out [][]Result) {
	for _, pf := range pairedFigures(sc) {
		pairPassesOn(pf, targets, runs, out)
	}
}

func pairPassesOn(pf paired, targets []load.Target, runs [][]Result, out [][]Result) {
	rt := ratio{pf.key, pf.name, pf.lowerBetter}
	for i, t := range targets {
		if (t.Impl != "cometkit" && t.Impl != "raw") || len(out[i]) != 1 {
			continue
		}
		var led, paired int
		var ratios []float64
		for p := range runs[i] {
			var pass []Result // every target's run of pass p
			for j := range targets {
				if len(runs[j]) == len(runs[i]) {
					pass = append(pass, runs[j][p])
				}
			}
			best, _, _ := reference(pass, runs[i][p], rt)
			if math.IsNaN(best) || best == 0 {
				continue
			}
			paired++
			v, finished := runs[i][p].Figures[pf.key]
			if !finished || !runs[i][p].OK() {
				continue // lost
			}
			if rt.better(v, best) {
				led++
			}
			ratios = append(ratios, v/best)
		}
		if paired == 0 {
			continue
		}
		if out[i][0].Figures == nil {
			out[i][0].Figures = load.Figures{}
		}
		f := out[i][0].Figures
		f["passes_paired"+pf.suffix] = float64(paired)
		f["passes_led"+pf.suffix] = float64(led)
		if len(ratios) > 0 {
			f["pass_ratio"+pf.suffix] = load.Median(ratios)
		}
	}
}

// passesLine says, below a repeated scenario's table, how cometkit fared
// pass by pass on each transport, a sentence per paired figure ("" when
// no pass was paired).
func passesLine(rs []Result, sc string) string {
	var out string
	for _, pf := range pairedFigures(sc) {
		out += passesSentence(rs, pf)
	}
	return out
}

func passesSentence(rs []Result, pf paired) string {
	var parts, floor []string
	for _, r := range rs {
		paired, ok := r.Figures["passes_paired"+pf.suffix]
		if !ok {
			continue
		}
		ratio := "—"
		if v, ok := r.Figures["pass_ratio"+pf.suffix]; ok {
			ratio = ratioText(v, 1)
		}
		line := fmt.Sprintf("%s: led in %d of %d passes, median pass ratio %s",
			r.Transport, int(r.Figures["passes_led"+pf.suffix]), int(paired), ratio)
		switch r.Impl {
		case "cometkit":
			parts = append(parts, line)
		case "raw":
			floor = append(floor, line)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	s := "Pass by pass (the servers of one pass run back to back, under a minute apart, on one state of the machine), cometkit's " +
		pf.name + " against the best peer that finished in the same pass (a pass cometkit failed counts as lost): " +
		strings.Join(parts, "; ") + "."
	if len(floor) > 0 {
		s += " The raw floor, measured the same way (how finely this scenario tells servers apart here): " + strings.Join(floor, "; ") + "."
	}
	return s + "\n\n"
}
