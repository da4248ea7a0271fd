package runner

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cometkit/cometkit/bench/load"
)

// peers are the implementations a "best peer" is chosen from.
var peers = []string{"sockjs", "centrifuge", "socketio"}

// column is one figure in a table.
type column struct {
	key    string
	head   string
	format func(float64) string
}

// ratio is a figure compared with the best peer and the raw floor.
type ratio struct {
	key         string
	name        string
	lowerBetter bool
}

// better says whether figure a beats figure b.
func (rt ratio) better(a, b float64) bool {
	if rt.lowerBetter {
		return a < b
	}
	return a > b
}

// tableSpec is how one scenario (and step) is shown.
type tableSpec struct {
	scenario string
	step     string // idle only
	title    string
	intro    string
	cols     []column
	ratios   []ratio
}

func kb(v float64) string    { return strconv.FormatFloat(v, 'f', 1, 64) }
func ms(v float64) string    { return strconv.FormatFloat(v, 'f', msDigits(v), 64) }
func count(v float64) string { return thousands(int64(math.Round(v))) }
func frac(v float64) string  { return strconv.FormatFloat(v, 'f', 2, 64) }

func msDigits(v float64) int {
	if v < 10 {
		return 2
	}
	return 1
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// specs are the tables, in order; idle gets one per step present.
func specs(rep *Report) []tableSpec {
	var out []tableSpec
	steps := []string{}
	for _, r := range rep.Results {
		if r.Scenario == ScenarioIdle && !slices.Contains(steps, r.Step) {
			steps = append(steps, r.Step)
		}
	}
	for _, st := range steps {
		title := "Idle sessions held: " + st
		if st == "max" {
			title = fmt.Sprintf("Idle sessions held: as many as the file limit allows (%s)", thousands(int64(rep.Setup.MaxSessions)))
		} else if n, err := strconv.Atoi(st); err == nil {
			title = "Idle sessions held: " + thousands(int64(n))
		}
		out = append(out, tableSpec{scenario: ScenarioIdle, step: st, title: title,
			intro: "The server's growth over its own empty state, divided by the sessions held, after `runtime.GC` and " +
				"`debug.FreeOSMemory` (RSS from /proc/self/status). Every client keeps its session alive meanwhile. Lower is better; " +
				"DESIGN.md's targets: WebSocket ≤ 8 KB, event stream and long-poll ≤ 12 KB RSS per session.",
			cols: []column{{"sessions", "sessions", count}, {"rss_kb_per_session", "RSS KB/session", kb},
				{"heap_kb_per_session", "heap KB/session", kb}, {"stack_kb_per_session", "stacks KB/session", kb},
				{"goroutines_per_session", "goroutines/session", frac}, {"rss_mb_total", "RSS MB total", kb}},
			ratios: []ratio{{"rss_kb_per_session", "RSS", true}}})
	}
	out = append(out,
		tableSpec{scenario: ScenarioEcho, title: "Echo round trip at a fixed offered rate (open loop)",
			intro: fmt.Sprintf("%s sessions; %s messages/s of %d bytes offered in total, round-robin, for %s; each echo timed twice: "+
				"from the client's Send (the server's part, and the network's) and from the time the schedule meant it to go "+
				"(adding the load generator's own lateness, and any queueing behind a server that stopped reading); "+
				"the figures from the due time are the same run's. %s Lower is better.",
				thousands(int64(rep.Sizes.EchoSessions)), count(rep.Sizes.EchoRate), load.MessageSize, rep.Sizes.EchoDuration,
				passesNote(rep.Sizes.Passes, "p99 from Send")),
			cols: []column{{"sent_p50_ms", "p50 from Send ms", ms}, {"sent_p99_ms", "p99 from Send ms", ms},
				{"sent_p99_ms_lo", "p99 from Send lowest run", ms}, {"sent_p99_ms_hi", "p99 from Send highest run", ms},
				{"p50_ms", "p50 from due ms", ms}, {"p99_ms", "p99 from due ms", ms}, {"max_ms", "max from due ms", ms},
				{"achieved_per_s", "sent/s", count}, {"received", "echoes", count}},
			ratios: []ratio{{"sent_p99_ms", "p99 from Send", true}, {"p99_ms", "p99 from due", true}}},
		tableSpec{scenario: ScenarioBroadcast, title: "Broadcast of a 64-byte message (WebSocket)",
			intro: fmt.Sprintf("%s sessions; %d broadcasts, one after the other has fully arrived; delivery timed from the "+
				"server's send time stamped in the message; deliveries/s per broadcast (sessions ÷ time to the last delivery), "+
				"averaged. cometkit: one `Hub.Publish` to a topic all sessions joined; centrifuge: `Node.Publish` to a channel all "+
				"are subscribed to; socket.io: the namespace's `Emit`; sockjs: a loop of `Send`; raw: one compiled frame written "+
				"to every connection. Server and client CPU µs per delivery: each process's CPU time over the broadcasts "+
				"(connecting excluded) over the deliveries; the server's is what one core can do, the client's says whether "+
				"the load generator kept up. p99 is over every delivery of every broadcast; the median and worst broadcast's p99 "+
				"are each broadcast's own (one broadcast held up by the host is a tenth of the deliveries, and sets the pooled "+
				"p99 alone). DESIGN.md: p99 ≤ 150 ms, ≥ 70,000 deliveries/s. %s",
				thousands(int64(rep.Sizes.BroadcastSessions)), rep.Sizes.BroadcastRounds, passesNote(rep.Sizes.Passes, "p99")),
			cols: []column{{"sessions", "sessions", count}, {"p50_ms", "p50 ms", ms}, {"p99_ms", "p99 ms", ms},
				{"p99_ms_lo", "p99 lowest run", ms}, {"p99_ms_hi", "p99 highest run", ms},
				{"round_p99_median_ms", "median broadcast's p99 ms", ms}, {"round_p99_max_ms", "worst broadcast's p99 ms", ms},
				{"max_ms", "max ms", ms}, {"deliveries_per_s", "deliveries/s", count}, {"server_send_ms", "server send ms", ms},
				{"server_cpu_us_per_delivery", "server CPU µs/delivery", frac}, {"client_cpu_us_per_delivery", "client CPU µs/delivery", frac}},
			ratios: []ratio{{"p99_ms", "p99", true}, {"round_p99_median_ms", "median broadcast's p99", true},
				{"deliveries_per_s", "deliveries/s", false}}},
		tableSpec{scenario: ScenarioRoundTrip, title: "Long-poll round trips per second (closed loop)",
			intro: fmt.Sprintf("%d sessions, each sending a %d-byte message and waiting for its echo before the next, for %s: "+
				"two HTTP requests per round trip (the send, and the held poll it answers). Server and client CPU µs per round trip: "+
				"each process's CPU time over the loop over the round trips; the server's says what one core can do whoever "+
				"else is busy, the client's whether the load generator kept up. Higher is better; DESIGN.md: ≥ 25,000/s. %s",
				rep.Sizes.RoundTripSessions, load.MessageSize, rep.Sizes.RoundTripDuration, passesNote(rep.Sizes.Passes, "round trips/s")),
			cols: []column{{"sessions", "sessions", count}, {"round_trips_per_s", "round trips/s", count},
				{"round_trips_per_s_lo", "lowest run", count}, {"round_trips_per_s_hi", "highest run", count},
				{"server_cpu_us_per_round_trip", "server CPU µs/round trip", frac}, {"client_cpu_us_per_round_trip", "client CPU µs/round trip", frac}},
			ratios: []ratio{{"round_trips_per_s", "round trips/s", false}}},
		tableSpec{scenario: ScenarioFanOut, title: "Event-stream messages per second (server to clients)",
			intro: fmt.Sprintf("%s sessions on event streams; the server sends bursts of %d %d-byte messages to every session "+
				"(cometkit through its hub, sockjs by a loop of `Send`), the next burst once all arrived, for %s. Clients "+
				"acknowledge as their browser client does. Higher is better. %s",
				thousands(int64(rep.Sizes.FanOutSessions)), rep.Sizes.FanOutPerRound, load.MessageSize, rep.Sizes.FanOutDuration,
				passesNote(rep.Sizes.Passes, "messages/s")),
			cols: []column{{"sessions", "sessions", count}, {"messages_per_s", "messages/s", count},
				{"messages_per_s_lo", "lowest run", count}, {"messages_per_s_hi", "highest run", count}},
			ratios: []ratio{{"messages_per_s", "messages/s", false}}},
		tableSpec{scenario: ScenarioConnect, title: "Connects per second",
			intro: fmt.Sprintf("%s new sessions, %d at a time, each counted when the server's welcome message arrives: "+
				"negotiation (cometkit's negotiate, sockjs's /info, socket.io's handshake, centrifuge's connect command) and "+
				"transport set-up included. Sessions stay open until all are in. Higher is better. %s",
				thousands(int64(rep.Sizes.ConnectSessions)), rep.Sizes.ConnectConcurrency, passesNote(rep.Sizes.Passes, "connects/s")),
			cols: []column{{"sessions", "sessions", count}, {"connects_per_s", "connects/s", count},
				{"connects_per_s_lo", "lowest run", count}, {"connects_per_s_hi", "highest run", count},
				{"connect_p50_ms", "p50 ms", ms}, {"connect_p99_ms", "p99 ms", ms}},
			ratios: []ratio{{"connects_per_s", "connects/s", false}}},
	)
	return out
}

// rows are spec's results, in Targets order.
func rows(rep *Report, sp tableSpec) []Result {
	var out []Result
	for _, t := range load.Targets {
		for _, r := range rep.Results {
			if r.Scenario == sp.scenario && r.Step == sp.step && r.Target() == t {
				out = append(out, r)
			}
		}
	}
	return out
}

// reference finds the best peer's value and the raw floor's for a row.
func reference(all []Result, row Result, rt ratio) (best float64, bestImpl string, raw float64) {
	best, raw = math.NaN(), math.NaN()
	for _, r := range all {
		v, ok := r.Figures[rt.key]
		if !r.OK() || !ok || r.Transport != row.Transport {
			continue
		}
		if r.Impl == "raw" {
			raw = v
		}
		if slices.Contains(peers, r.Impl) && (math.IsNaN(best) || rt.better(v, best)) {
			best, bestImpl = v, r.Impl
		}
	}
	return best, bestImpl, raw
}

func ratioText(v, ref float64) string {
	if math.IsNaN(ref) || ref == 0 || math.IsNaN(v) {
		return "—"
	}
	return strconv.FormatFloat(v/ref, 'f', 2, 64) + "×"
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Markdown renders the report's tables.
func Markdown(rep *Report) string {
	var b strings.Builder
	b.WriteString("# cometkit against its peers\n\n")
	b.WriteString("Written by `go run ./bench/cmd/bench` (`make bench-peers`; how it works: README.md beside this file); raw figures in results.json, chart in chart.svg.\n\n")
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s, %s; run %s, took %s%s.\n", rep.Machine.CPU, rep.Machine.Cores,
		rep.Machine.Kernel, rep.Machine.GoVersion, rep.Machine.Date, (time.Duration(rep.Seconds) * time.Second).String(),
		map[bool]string{true: " (quick mode: small sizes, a smoke test, not figures)", false: ""}[rep.Quick])
	fmt.Fprintf(&b, "- Servers: one process per measurement, started fresh, %s. Load generator: %s. Loopback only.\n",
		rep.Setup.ServerPinning, rep.Setup.LoadPinning)
	fmt.Fprintf(&b, "- Open-file limit %s per process, so at most %s sessions at once.\n",
		thousands(rep.Setup.FileLimit), thousands(int64(rep.Setup.MaxSessions)))
	if len(rep.Versions) > 0 {
		fmt.Fprintf(&b, "- Modules: %s.\n", strings.Join(rep.Versions, ", "))
	}
	b.WriteString("- Ratios: the row's figure divided by the best peer's (sockjs, centrifuge, socket.io) on the same transport, " +
		"and by the raw floor's on the same transport (WebSocket and long-poll rows: no session layer). A failed measurement is never a reference.\n\n")
	writeTargets(&b, rep)
	for _, sp := range specs(rep) {
		rs := rows(rep, sp)
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", sp.title, sp.intro)
		withRaw := slices.ContainsFunc(rs, func(r Result) bool { return r.Impl == "raw" })
		b.WriteString("| server | transport |")
		for _, c := range sp.cols {
			b.WriteString(" " + c.head + " |")
		}
		for _, rt := range sp.ratios {
			fmt.Fprintf(&b, " %s vs best peer |", rt.name)
			if withRaw {
				fmt.Fprintf(&b, " %s vs raw |", rt.name)
			}
		}
		b.WriteString(" status |\n|---|---|")
		for range sp.cols {
			b.WriteString("---:|")
		}
		for range sp.ratios {
			b.WriteString("---:|")
			if withRaw {
				b.WriteString("---:|")
			}
		}
		b.WriteString("---|\n")
		for _, r := range rs {
			fmt.Fprintf(&b, "| %s | %s |", r.Impl, r.Native)
			for _, c := range sp.cols {
				if v, ok := r.Figures[c.key]; ok {
					b.WriteString(" " + c.format(v) + " |")
				} else {
					b.WriteString(" — |")
				}
			}
			for _, rt := range sp.ratios {
				v, ok := r.Figures[rt.key]
				if !ok {
					v = math.NaN()
				}
				best, who, raw := reference(rs, r, rt)
				bt := ratioText(v, best)
				if bt != "—" {
					bt += " (" + who + ")"
				}
				fmt.Fprintf(&b, " %s |", bt)
				if withRaw {
					fmt.Fprintf(&b, " %s |", ratioText(v, raw))
				}
			}
			status := "ok"
			if !r.OK() {
				status = "**failed:** " + cell(r.Error)
			}
			b.WriteString(" " + status + " |\n")
		}
		b.WriteString("\n")
		if sp.step == "" {
			b.WriteString(passesLine(rs, sp.scenario)) // "" unless the scenario is repeated
		}
	}
	return b.String()
}

// target is one of DESIGN.md's performance targets.
type target struct {
	what        string
	scenario    string
	step        string
	transport   string
	key         string
	limit       float64
	lowerBetter bool
	format      func(float64) string
}

var targets = []target{
	{"hold 19,900 WebSocket sessions", ScenarioIdle, "max", load.WebSocket, "sessions", 19_900, false, count},
	{"idle WebSocket session ≤ 8 KB RSS", ScenarioIdle, "10000", load.WebSocket, "rss_kb_per_session", 8, true, kb},
	{"idle event-stream session ≤ 12 KB RSS", ScenarioIdle, "10000", load.EventStream, "rss_kb_per_session", 12, true, kb},
	{"idle long-poll session ≤ 12 KB RSS", ScenarioIdle, "10000", load.LongPoll, "rss_kb_per_session", 12, true, kb},
	{"broadcast to 10,000 WebSocket sessions: p99 ≤ 150 ms", ScenarioBroadcast, "", load.WebSocket, "p99_ms", 150, true, ms},
	{"broadcast to 10,000 WebSocket sessions: p99 ≤ 150 ms, the median broadcast's own", ScenarioBroadcast, "", load.WebSocket, "round_p99_median_ms", 150, true, ms},
	{"broadcast to 10,000 WebSocket sessions: ≥ 70,000 deliveries/s", ScenarioBroadcast, "", load.WebSocket, "deliveries_per_s", 70_000, false, count},
	{"≥ 25,000 long-poll round trips/s", ScenarioRoundTrip, "", load.LongPoll, "round_trips_per_s", 25_000, false, count},
}

// met says whether v meets the target.
func (tg target) met(v float64) bool {
	if tg.lowerBetter {
		return v <= tg.limit
	}
	return v >= tg.limit
}

func writeTargets(b *strings.Builder, rep *Report) {
	if rep.Quick {
		return
	}
	var lines []string
	for _, tg := range targets {
		for _, r := range rep.Results {
			if r.Impl != "cometkit" || r.Scenario != tg.scenario || r.Step != tg.step || r.Transport != tg.transport {
				continue
			}
			v, ok := r.Figures[tg.key]
			verdict := "not measured"
			if ok {
				verdict = map[bool]string{true: "met", false: "**missed**"}[tg.met(v)]
				if !r.OK() {
					verdict += " (run failed)"
				}
			}
			val := "—"
			if ok {
				val = tg.format(v)
			}
			lines = append(lines, fmt.Sprintf("| %s | %s | %s |", tg.what, val, verdict))
		}
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("## cometkit against DESIGN.md's targets\n\n| target | cometkit | |\n|---|---:|---|\n")
	b.WriteString(strings.Join(lines, "\n") + "\n\n")
}

// Write puts results.json, results.md and chart.svg in dir.
func Write(rep *Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	files := map[string][]byte{
		"results.json": append(js, '\n'),
		"results.md":   []byte(Markdown(rep)),
		"chart.svg":    []byte(Chart(rep)),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// progressLine is one measurement in a line.
func progressLine(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %-10s %-11s", r.Scenario, r.Impl, r.Native)
	if r.Step != "" {
		fmt.Fprintf(&b, " %-5s", r.Step)
	}
	keys := make([]string, 0, len(r.Figures))
	for k := range r.Figures {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%.4g", k, r.Figures[k])
	}
	fmt.Fprintf(&b, " (%.1fs)", r.Seconds)
	if !r.OK() {
		b.WriteString(" FAILED: " + r.Error)
	}
	return b.String()
}

// passesNote says how a repeated scenario's row was chosen.
func passesNote(passes int, figure string) string {
	if passes <= 1 {
		return "One run per server."
	}
	return fmt.Sprintf("%d runs per server, in %d passes over all the servers (each run on a server started afresh, the "+
		"servers' order rotated from pass to pass, so that each server runs early in one pass and late in another); the table shows the run whose %s is the median (one run on a shared "+
		"core can swing 2-3x), and the lowest and highest %s of the runs.", passes, passes, figure, figure)
}
