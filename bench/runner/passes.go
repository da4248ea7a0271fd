package runner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cometkit/cometkit/bench/load"
)

// Pairing by pass. Every server of a pass runs back to back, seconds
// apart, while this machine's speed drifts over minutes (the raw long-poll
// floor alone made 14,000 to 23,000 round trips/s within one hour). A
// server whose median run fell in a fast minute can beat one whose median
// fell in a slow one by a margin neither has. Within one pass the servers
// share the machine's state, so cometkit is compared with its peers pass
// by pass too:
//
//   - passes_paired: the passes in which cometkit and at least one peer
//     on its transport both finished;
//   - passes_led: those in which cometkit's headline figure beat every
//     peer's of the same pass;
//   - pass_ratio: the median, over the paired passes, of cometkit's
//     figure divided by the pass's best peer's.

// pairPasses adds the pass-by-pass figures to cometkit's result for each
// transport of scenario sc. runs[i][p] is target i's run in pass p; out
// holds the reported (median) results of each target, in the same order;
// cometkit's single result gets the figures.
func pairPasses(sc string, targets []load.Target, runs [][]Result, out [][]Result) {
	h, repeated := headlines[sc]
	if !repeated {
		return
	}
	for i, t := range targets {
		if t.Impl != "cometkit" || len(out[i]) != 1 || !out[i][0].OK() {
			continue
		}
		var led, paired int
		var ratios []float64
		for p := range runs[i] {
			v, ok := headline(runs[i][p], h.key)
			if !ok {
				continue
			}
			best := math.NaN()
			for j, u := range targets {
				if u.Transport != t.Transport || !slices.Contains(peers, u.Impl) || len(runs[j]) != len(runs[i]) {
					continue
				}
				w, ok := headline(runs[j][p], h.key)
				if ok && (math.IsNaN(best) || (h.lowerBetter && w < best) || (!h.lowerBetter && w > best)) {
					best = w
				}
			}
			if math.IsNaN(best) || best == 0 {
				continue
			}
			paired++
			if (h.lowerBetter && v < best) || (!h.lowerBetter && v > best) {
				led++
			}
			ratios = append(ratios, v/best)
		}
		if paired == 0 {
			continue
		}
		slices.SortFunc(ratios, cmp.Compare[float64])
		f := out[i][0].Figures
		f["passes_paired"] = float64(paired)
		f["passes_led"] = float64(led)
		f["pass_ratio"] = ratios[len(ratios)/2]
	}
}

// headline is a finished run's figure key.
func headline(r Result, key string) (float64, bool) {
	if !r.OK() {
		return 0, false
	}
	v, ok := r.Figures[key]
	return v, ok
}

// passesLine says, below a repeated scenario's table, how cometkit fared
// pass by pass on each transport ("" when no pass was paired).
func passesLine(rs []Result, figure string) string {
	var parts []string
	for _, r := range rs {
		paired, ok := r.Figures["passes_paired"]
		if r.Impl != "cometkit" || !ok {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: led in %d of %d passes, median pass ratio %s",
			r.Transport, int(r.Figures["passes_led"]), int(paired), ratioText(r.Figures["pass_ratio"], 1)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "Pass by pass (the servers of one pass run back to back, on one state of the machine), cometkit's " + figure +
		" against the best peer of the same pass: " + strings.Join(parts, "; ") + ".\n\n"
}
