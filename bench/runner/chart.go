package runner

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/cometkit/cometkit/bench/load"
)

// panel is one bar chart of the SVG: one figure of one scenario.
type panel struct {
	title       string
	scenario    string
	step        string
	key         string
	unit        string
	lowerBetter bool
	format      func(float64) string
	// target is DESIGN.md's target for a transport (NaN: none).
	target func(transport string) float64
}

func noTarget(string) float64 { return math.NaN() }

func panels(rep *Report) []panel {
	ps := []panel{
		{scenario: ScenarioIdle, key: "rss_kb_per_session", unit: "KB",
			lowerBetter: true, format: kb, target: idleTarget},
		{scenario: ScenarioIdle, key: "rss_kb_per_session", unit: "KB", lowerBetter: true, format: kb, target: idleTarget},
		{title: "Echo at a fixed rate: p99 from Send", scenario: ScenarioEcho, key: "sent_p99_ms", unit: "ms", lowerBetter: true, format: ms, target: noTarget},
		{title: fmt.Sprintf("Broadcast to %s WebSockets: p99 delivery", thousands(int64(rep.Sizes.BroadcastSessions))), scenario: ScenarioBroadcast, key: "p99_ms", unit: "ms", lowerBetter: true,
			format: ms, target: func(string) float64 { return 150 }},
		{title: fmt.Sprintf("Broadcast to %s WebSockets: deliveries/s", thousands(int64(rep.Sizes.BroadcastSessions))), scenario: ScenarioBroadcast, key: "deliveries_per_s", unit: "/s",
			format: count, target: func(string) float64 { return 70_000 }},
		{title: "Long-poll round trips/s", scenario: ScenarioRoundTrip, key: "round_trips_per_s", unit: "/s", format: count,
			target: func(string) float64 { return 25_000 }},
		{title: "Event-stream messages/s", scenario: ScenarioFanOut, key: "messages_per_s", unit: "/s", format: count, target: noTarget},
		{title: "Connects/s", scenario: ScenarioConnect, key: "connects_per_s", unit: "/s", format: count, target: noTarget},
	}
	// The idle panels follow the steps measured (10,000 and max unless told otherwise).
	var steps []string
	for _, r := range rep.Results {
		if r.Scenario == ScenarioIdle && !contains(steps, r.Step) {
			steps = append(steps, r.Step)
		}
	}
	for i := 0; i < 2; i++ {
		if i >= len(steps) {
			ps[i].step = "none"
			continue
		}
		ps[i].step = steps[i]
		n := steps[i]
		if n == "max" {
			n = thousands(int64(rep.Setup.MaxSessions))
		} else if v, err := strconv.Atoi(n); err == nil {
			n = thousands(int64(v))
		}
		ps[i].title = "Idle: RSS per session, " + n + " sessions"
	}
	return ps
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func idleTarget(transport string) float64 {
	if transport == load.WebSocket {
		return 8
	}
	return 12
}

// Chart geometry.
const (
	chartW     = 1200
	colW       = 580
	gutter     = 20
	labelW     = 170
	valueW     = 90
	barH       = 16
	barGap     = 6
	panelHead  = 44
	panelFoot  = 14
	headerH    = 70
	legendH    = 26
	fontFamily = "DejaVu Sans, Verdana, Arial, sans-serif"
)

var implColors = map[string]string{
	"cometkit":   "#d9480f",
	"sockjs":     "#4263eb",
	"centrifuge": "#1098ad",
	"socketio":   "#7048e8",
	"raw":        "#495057",
}

// Chart draws the report as an SVG: one panel per figure, a bar per
// server and transport, cometkit in orange, peers in blues, the raw floor
// in grey, DESIGN.md's target as a dashed red line, failures marked.
func Chart(rep *Report) string {
	ps := panels(rep)
	type laid struct {
		p    panel
		rows []Result
		h    int
	}
	var ls []laid
	for _, p := range ps {
		var rs []Result
		for _, t := range load.Targets {
			for _, r := range rep.Results {
				if r.Scenario == p.scenario && r.Step == p.step && r.Target() == t {
					rs = append(rs, r)
				}
			}
		}
		if len(rs) == 0 {
			continue
		}
		ls = append(ls, laid{p: p, rows: rs, h: panelHead + len(rs)*(barH+barGap) + panelFoot})
	}
	// Two columns; each row of panels as tall as its taller panel.
	var rowH []int
	for i := 0; i < len(ls); i += 2 {
		h := ls[i].h
		if i+1 < len(ls) && ls[i+1].h > h {
			h = ls[i+1].h
		}
		rowH = append(rowH, h)
	}
	total := headerH + legendH
	for _, h := range rowH {
		total += h + gutter
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`+"\n",
		chartW, total, chartW, total, fontFamily)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartW, total)
	sub := fmt.Sprintf("%s, %d cores, %s, %s — servers %s; load generator %s", rep.Machine.CPU, rep.Machine.Cores,
		rep.Machine.Kernel, rep.Machine.GoVersion, rep.Setup.ServerPinning, rep.Setup.LoadPinning)
	title := "cometkit against its peers"
	if rep.Quick {
		title += " (quick mode: a smoke test, not figures)"
	}
	fmt.Fprintf(&b, `<text x="%d" y="30" font-size="20" font-weight="bold" fill="#212529">%s</text>`+"\n", gutter, esc(title))
	fmt.Fprintf(&b, `<text x="%d" y="52" font-size="12" fill="#495057">%s</text>`+"\n", gutter, esc(sub))
	// Legend.
	x := gutter
	for _, impl := range []string{"cometkit", "sockjs", "centrifuge", "socketio", "raw"} {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`, x, headerH, implColors[impl])
		name := impl
		if impl == "raw" {
			name = "raw floor (no session layer)"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#212529">%s</text>`+"\n", x+16, headerH+11, esc(name))
		x += 30 + 8*len(name)
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#c92a2a" stroke-dasharray="4,3"/>`, x, headerH+6, x+20, headerH+6)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#212529">DESIGN.md target</text>`+"\n", x+24, headerH+11)

	y := headerH + legendH
	for i := 0; i < len(ls); i += 2 {
		for j := 0; j < 2 && i+j < len(ls); j++ {
			drawPanel(&b, ls[i+j].p, ls[i+j].rows, gutter+j*(colW+gutter), y)
		}
		y += rowH[i/2] + gutter
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func drawPanel(b *strings.Builder, p panel, rows []Result, x0, y0 int) {
	better := "higher is better"
	if p.lowerBetter {
		better = "lower is better"
	}
	fmt.Fprintf(b, `<g transform="translate(%d,%d)">`+"\n", x0, y0)
	fmt.Fprintf(b, `<text x="0" y="16" font-size="14" font-weight="bold" fill="#212529">%s</text>`+"\n", esc(p.title))
	fmt.Fprintf(b, `<text x="0" y="32" font-size="11" fill="#868e96">%s, %s</text>`+"\n", esc(p.unit), better)
	// The scale: the largest figure or target, but a far outlier (over 4×
	// the median) is cut short and marked, so that it does not flatten the rest.
	var vals []float64
	maxT := 0.0
	for _, r := range rows {
		if v, ok := r.Figures[p.key]; ok && v > 0 && !math.IsInf(v, 0) {
			vals = append(vals, v)
		}
		if t := p.target(r.Transport); !math.IsNaN(t) && t > maxT {
			maxT = t
		}
	}
	sort.Float64s(vals)
	maxV := maxT
	if len(vals) > 0 {
		maxV = math.Max(maxV, vals[len(vals)-1])
		if med := vals[len(vals)/2]; len(vals) >= 3 && vals[len(vals)-1] > 4*med {
			maxV = math.Max(maxT, 4*med)
			if vals[len(vals)-1] <= maxV {
				maxV = vals[len(vals)-1]
			}
		}
	}
	if maxV <= 0 {
		maxV = 1
	}
	plotW := float64(colW - labelW - valueW)
	for i, r := range rows {
		y := panelHead + i*(barH+barGap)
		fmt.Fprintf(b, `<text x="%d" y="%d" font-size="12" text-anchor="end" fill="#212529">%s</text>`,
			labelW-8, y+barH-4, esc(r.Impl+" "+r.Native))
		tline := "" // drawn over the bar, under its label
		if t := p.target(r.Transport); !math.IsNaN(t) {
			tx := float64(labelW) + plotW*t/maxV
			tline = fmt.Sprintf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c92a2a" stroke-width="1.5" stroke-dasharray="4,3"/>`,
				tx, y-2, tx, y+barH+2)
		}
		v, ok := r.Figures[p.key]
		switch {
		case ok:
			w := plotW * v / maxV
			clipped := w > plotW
			if clipped {
				w = plotW
			}
			if w < 1 {
				w = 1
			}
			opacity := "1"
			if !r.OK() {
				opacity = "0.45"
			}
			fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="%s"><title>%s</title></rect>`,
				labelW, y, w, barH, implColors[r.Impl], opacity, esc(r.Impl+" "+r.Native+": "+p.format(v)+" "+p.unit))
			b.WriteString(tline)
			label := p.format(v)
			if clipped {
				fmt.Fprintf(b, `<path d="M%.1f %d l6 %d l-6 %d" fill="#ffffff" stroke="#ffffff" stroke-width="2"/>`,
					float64(labelW)+w-8, y, barH/2, barH/2)
				label = "» " + label
			}
			if !r.OK() {
				label += " ⚠ failed"
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="11" fill="#212529" stroke="#ffffff" stroke-width="3" paint-order="stroke">%s</text>`,
				float64(labelW)+w+4, y+barH-4, esc(label))
		default:
			b.WriteString(tline)
			fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#c92a2a" stroke-dasharray="3,2"/>`,
				labelW, y, 60, barH)
			msg := "failed"
			if r.OK() {
				msg = "no figure"
			}
			fmt.Fprintf(b, `<text x="%d" y="%d" font-size="11" fill="#c92a2a">%s<title>%s</title></text>`,
				labelW+66, y+barH-4, msg, esc(r.Error))
		}
		b.WriteString("\n")
	}
	b.WriteString("</g>\n")
}

func esc(s string) string { return html.EscapeString(s) }
