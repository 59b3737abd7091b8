package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

// field returns one number of every kept result under key.
func (b *bench) field(key, name string) []float64 {
	var xs []float64
	for _, raw := range b.results[key] {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		if v, ok := m[name].(float64); ok {
			xs = append(xs, v)
		}
	}
	return xs
}

func (b *bench) med(key, name string) float64 { return measure.Median(b.field(key, name)) }

func runs(xs []float64, format string) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf(format, x))
	}
	return strings.Join(s, ", ")
}

// report prints the peer table and the unit costs, as Markdown.
func (b *bench) report(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if len(b.results["ingest/ours"])+len(b.results["sse/ours"]) > 0 {
		fmt.Fprintf(bw, "\n## Peer table: medians of %d rounds (each round's figures in brackets)\n\n", b.o.rounds)
		fmt.Fprintln(bw, "| measure | ours | Centrifugo "+b.o.version+" | ours ÷ theirs |")
		fmt.Fprintln(bw, "|---|---|---|---|")
	}
	row := func(label, key, name, format string, scale float64, ratio string) {
		o, t := b.field(key+"/ours", name), b.field(key+"/centrifugo", name)
		if len(o) == 0 && len(t) == 0 {
			return
		}
		mt := measure.Median(t) * scale
		cmp := func(mo float64) string {
			if mt == 0 || mo == 0 {
				return "—"
			}
			switch ratio {
			case "more": // bigger is better: ours/theirs
				return fmt.Sprintf("%.2fx", mo/mt)
			case "less": // smaller is better: how many times theirs
				return fmt.Sprintf("%.2fx (%s)", mo/mt, map[bool]string{true: "better", false: "worse"}[mo <= mt])
			}
			return "—"
		}
		scaled := func(xs []float64) []float64 {
			out := make([]float64, len(xs))
			for i, x := range xs {
				out[i] = x * scale
			}
			return out
		}
		mo := measure.Median(o) * scale
		fmt.Fprintf(bw, "| %s | "+format+" [%s] | "+format+" [%s] | %s |\n", label,
			mo, runs(scaled(o), format), mt, runs(scaled(t), format), cmp(mo))
		// -roles: ours in the production shape, beside the same Centrifugo runs.
		if rs := b.field(key+"/roles", name); len(rs) > 0 {
			mr := measure.Median(rs) * scale
			fmt.Fprintf(bw, "| … ours as nats-server + api + poller, no relay | "+format+" [%s] | "+format+" | %s |\n",
				mr, runs(scaled(rs), format), mt, cmp(mr))
		}
	}
	row("ingest over HTTP, batches of 100 over 200 channels, 8 clients: events/s", "ingest", "events_per_s", "%.0f", 1, "more")
	row("ingest request p50, ms", "ingest", "p50_ms", "%.1f", 1, "less")
	row("ingest request p99, ms", "ingest", "p99_ms", "%.1f", 1, "less")
	row(fmt.Sprintf("publish → last of %d SSE subscribers of one channel, p50 of 8, ms", b.o.subs), "sse", "last_p50_ms", "%.0f", 1, "less")
	row("SSE: publish → each subscriber, p50, ms", "sse", "delivery_p50_ms", "%.0f", 1, "less")
	row("memory per SSE connection, KB (RSS delta / connections)", "sse", "bytes_per_conn", "%.1f", 1.0/1000, "less")
	if len(b.results["hot/ours"]) > 0 {
		b.reportHot(bw)
	}
	fmt.Fprintf(bw, "\n## Unit costs: server process CPU time ÷ count, medians\n\n")
	fmt.Fprintln(bw, "| cost | ours | Centrifugo |")
	fmt.Fprintln(bw, "|---|---|---|")
	unit := func(label, key, name, format string, scale float64) {
		o, t := b.field(key+"/ours", name), b.field(key+"/centrifugo", name)
		if len(o) == 0 {
			return
		}
		ts := "—"
		if len(t) > 0 {
			ts = fmt.Sprintf(format, measure.Median(t)*scale)
		}
		fmt.Fprintf(bw, "| %s | "+format+" | %s |\n", label, measure.Median(o)*scale, ts)
	}
	unit("CPU µs per ingested change (dev: API + embedded JetStream, file + poller following)", "ingest", "cpu_us_per_event", "%.1f", 1)
	unit("CPU µs per relayed change (relay process, coalescing off)", "relay", "cpu_us_per_change", "%.1f", 1)
	unit("CPU µs per 304 poll (If-None-Match, 32 keep-alive connections)", "poll304", "cpu_us_per_poll", "%.1f", 1)
	unit("CPU µs per SSE delivery (one change to one subscriber)", "sse", "cpu_us_per_delivery", "%.1f", 1)
	// With the move to SSE on, a hot event's clients wait mostly as
	// streams: the long-poll costs are the long-poll-only run's.
	lp := "hot"
	if len(b.results["hot-off/ours"]) > 0 {
		lp = "hot-off"
	}
	unit("CPU µs per long-poll answer on the hot event", lp, "cpu_us_per_answer", "%.1f", 1)
	unit("memory per waiting long-poll, bytes (RSS delta)", lp, "bytes_per_waiting", "%.0f", 1)
	unit("memory per SSE client, bytes (RSS delta)", "sse", "bytes_per_conn", "%.0f", 1)
	return errors.Join(bw.Flush())
}

// reportHot prints the hot event's table: with -hot-baseline, beside the
// same measure with the move to SSE off (long-poll only), from the same
// rounds.
func (b *bench) reportHot(bw io.Writer) {
	base := len(b.results["hot-off/ours"]) > 0
	fmt.Fprintf(bw, "\n## Hot event (ours): %d long-polls on one eventId, 10 changes/s for %s\n\n", b.o.hotSubs, b.o.hotFor)
	if base {
		fmt.Fprintln(bw, "| measure | moved to SSE (LIVE_POLLER_HOT_LONGPOLLS default) | rounds | long-poll only (off) | rounds |")
		fmt.Fprintln(bw, "|---|---|---|---|---|")
	} else {
		fmt.Fprintln(bw, "| measure | median | rounds |")
		fmt.Fprintln(bw, "|---|---|---|")
	}
	hot := func(label, name, format string) {
		xs := b.field("hot/ours", name)
		fmt.Fprintf(bw, "| %s | "+format+" | %s |", label, measure.Median(xs), runs(xs, format))
		if base {
			ys := b.field("hot-off/ours", name)
			fmt.Fprintf(bw, " "+format+" | %s |", measure.Median(ys), runs(ys, format))
		}
		fmt.Fprintln(bw)
	}
	hot("publish → last subscriber, p99 over changes, ms", "last_p99_ms", "%.0f")
	hot("publish → last subscriber, p50 over changes, ms", "last_p50_ms", "%.0f")
	hot("publish → each subscriber, p99, ms", "delivery_p99_ms", "%.0f")
	hot("publish ack p50 idle, ms", "ack_idle_p50_ms", "%.1f")
	hot("publish ack p50 during the storm, ms", "ack_storm_p50_ms", "%.1f")
	hot("changes stored (10/s over the storm)", "changes", "%.0f")
	hot("publishes failed (503 after the 5 s publish timeout)", "publish_failed", "%.0f")
	hot("stored changes delivered to every client", "fully_delivered", "%.0f")
	hot("clients moved to SSE on the poller's hint (Live-Transport: sse)", "switched", "%.0f")
	hot("of those, on the stream before the storm (moved while nothing changed)", "streams_before", "%.0f")
	hot("streams that ended during the run (the client long-polls again)", "stream_errors", "%.0f")
	hot("long-poll answers during the storm", "answers", "%.0f")
	hot("server CPU s during the storm", "cpu_s", "%.2f")
	hot("server CPU µs per delivery (one change to one client, either transport)", "cpu_us_per_delivery", "%.1f")
	hot("load tool CPU s during the storm", "load_cpu_s", "%.2f")
	ratio := func(key string) string {
		idle, storm := b.med(key, "ack_idle_p50_ms"), b.med(key, "ack_storm_p50_ms")
		if idle <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.1fx", storm/idle)
	}
	fmt.Fprintf(bw, "| publish ack p50, storm ÷ idle (goal: at most 2x) | %s | |", ratio("hot/ours"))
	if base {
		fmt.Fprintf(bw, " %s | |", ratio("hot-off/ours"))
	}
	fmt.Fprintln(bw)
}
