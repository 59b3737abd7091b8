package relay

import (
	"encoding/json"
	"flag"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

var benchEvents = flag.Int("relay.events", 100_000, "changes drained per BenchmarkRelay iteration")

// publishFast stores n changes with async publishes; pick chooses each
// change's eventId and type.
func publishFast(b *testing.B, rg *rig, n int, pick func(i int) (string, string)) {
	b.Helper()
	js := rg.js
	for i := range n {
		eventID, typ := pick(i)
		m := &nats.Msg{Subject: wire.Subject(eventID, typ), Header: nats.Header{}, Data: []byte(`{"i":` + strconv.Itoa(i) + `,"votes":[1,2,3]}`)}
		m.Header.Set(wire.HeaderMsgID, "b"+strconv.Itoa(i)+"-"+strconv.FormatInt(rg.ids.Add(1), 10))
		m.Header.Set(wire.HeaderAt, wire.FormatAt(time.Now()))
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatalf("publish: %v", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		b.Fatal("async publishes not acked within 60s")
	}
}

// drain runs a relay over what is stored and returns how long it took to
// ack all n changes, and the requests it made. It polls the delivered
// counter directly: gathering the whole registry every 5 ms would take CPU
// from the relay it measures.
func drain(b *testing.B, rg *rig, cfg Config, n int) (time.Duration, int) {
	b.Helper()
	before := rg.pusher.Requests()
	start := time.Now()
	run := rg.start(cfg, nil)
	testutil.Eventually(b, 120*time.Second, func() bool {
		return promtestutil.ToFloat64(run.relay.m.delivered) >= float64(n)
	}, "relay did not drain %d changes", n)
	took := time.Since(start)
	run.stop()
	return took, rg.pusher.Requests() - before
}

// naive sends n changes one Trigger each, sequentially, the way a relay
// without batching would: the same channels, types and envelope bytes the
// relay sends for the plain drain. It returns how long that took.
func naive(b *testing.B, rg *rig, from, n int) time.Duration {
	b.Helper()
	client := rg.pusher.Client(5 * time.Second)
	datas := make([]string, n)
	for i := range n {
		env := wire.Envelope{ID: "naive-" + strconv.Itoa(from+i), EventID: "e" + strconv.Itoa((from+i)%1000),
			Type: wire.KnownTypes()[(from+i)%6], Seq: uint64(from + i + 1), At: time.Now(),
			Data: []byte(`{"i":` + strconv.Itoa(from+i) + `,"votes":[1,2,3]}`)}
		datas[i] = string(env.AppendJSON(nil))
	}
	start := time.Now()
	for i := range n {
		j := from + i
		if err := client.Trigger("event-e"+strconv.Itoa(j%1000), wire.KnownTypes()[j%6], datas[i]); err != nil {
			b.Fatalf("naive trigger: %v", err)
		}
	}
	return time.Since(start)
}

// BenchmarkRelay drains stored changes through the relay into the
// Pusher-compatible server, against a naive loop of one Trigger per change
// to the same server, and measures publish-to-Pusher latency at a steady
// 1,000 changes/s. Run with -benchtime=1x.
func BenchmarkRelay(b *testing.B) {
	n := *benchEvents
	for b.Loop() {
		rg := newRig(b, pushercompat.Options{})
		cfg := rg.config()
		cfg.IdleWait = 200 * time.Millisecond

		// Baseline: one Trigger per change, sequentially, half of it just
		// before and half just after the relay's drain, so load from other
		// work on the shared machine weighs on both alike.
		naiveN := min(n, 5000)
		naiveTook := naive(b, rg, 0, naiveN/2)
		rg.pusher.Reset()

		// The relay without coalescing: 1,000 eventIds, all six types.
		publishFast(b, rg, n, func(i int) (string, string) {
			return "e" + strconv.Itoa(i%1000), wire.KnownTypes()[i%6]
		})
		plain := cfg
		took, reqs := drain(b, rg, plain, n)
		rg.pusher.Reset()
		naiveTook += naive(b, rg, naiveN/2, naiveN-naiveN/2)
		naiveRate := float64(naiveN) / naiveTook.Seconds()
		rate := float64(n) / took.Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(naiveRate, "naive-events/s")
		b.ReportMetric(rate/naiveRate, "x-naive")
		b.ReportMetric(float64(reqs)*1000/float64(n), "req/1k-events")
		// Requests beyond ceil(n/10): partial batches other than the last.
		b.ReportMetric(float64(reqs-(n+pusherMaxBatch-1)/pusherMaxBatch), "extra-requests")
		rg.pusher.Reset()

		// Coalescing on a bursty, vote-heavy mix: bursts of 20 changes on
		// one eventId, 80% vote.updated.
		publishFast(b, rg, n, func(i int) (string, string) {
			typ := wire.TypeVoteUpdated
			if i%5 == 4 {
				typ = wire.KnownTypes()[1+(i/5)%5]
			}
			return "e" + strconv.Itoa((i/20)%500), typ
		})
		co := cfg
		co.CoalesceTypes = wire.KnownTypes()
		took, reqs = drain(b, rg, co, n)
		b.ReportMetric(float64(reqs)*1000/float64(n), "coalesced-req/1k-events")
		b.ReportMetric(float64(n)/took.Seconds(), "coalesced-events/s")
		rg.pusher.Reset()

		// Latency at a steady 1,000 changes/s for 3 s.
		run := rg.start(cfg, nil)
		const steady = 3000
		tick := time.NewTicker(time.Millisecond)
		for i := range steady {
			<-tick.C
			m := &nats.Msg{Subject: wire.Subject("s"+strconv.Itoa(i%100), wire.TypeVoteUpdated), Header: nats.Header{}, Data: []byte(`{}`)}
			m.Header.Set(wire.HeaderMsgID, "steady-"+strconv.Itoa(i))
			m.Header.Set(wire.HeaderAt, wire.FormatAt(time.Now()))
			if _, err := rg.js.PublishMsgAsync(m); err != nil {
				b.Fatalf("publish: %v", err)
			}
		}
		tick.Stop()
		testutil.Eventually(b, 30*time.Second, func() bool { return len(rg.pusher.Events()) >= steady }, "steady changes not delivered")
		var lat []time.Duration
		for _, ev := range rg.pusher.Events() {
			var e wire.Envelope
			if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, ev.At.Sub(e.At))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		run.stop()
	}
}
