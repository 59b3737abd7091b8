package relay

import (
	"flag"
	"strconv"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

var replicaEvents = flag.Int("relay.replica-events", 8000, "changes drained per replica count in BenchmarkPartitionedReplicas")

// drainWith starts replicas partitioned relays, waits until they share the
// partitions evenly, then stores n changes and returns how long they took
// to reach Pusher (every change settled).
func drainWith(b *testing.B, replicas, lanes, n int) time.Duration {
	b.Helper()
	rg := newRig(b, pushercompat.Options{})
	// Each Pusher request takes 40 ms: the replicas' lanes, not the CPU,
	// bound the rate.
	rg.pusher.SetLatency(40 * time.Millisecond)
	cfg := rg.partitioned()
	cfg.LeaseTTL = 2 * time.Second
	cfg.MaxInFlight = lanes
	var runs []*running
	for range replicas {
		runs = append(runs, rg.start(cfg, nil))
	}
	fair := float64(cfg.Partitions / replicas)
	testutil.Eventually(b, 60*time.Second, func() bool {
		for _, r := range runs {
			if testutil.MetricSum(b, r.reg, "liveupdates_relay_partitions_owned") != fair {
				return false
			}
		}
		return true
	}, "%d replicas did not share %d partitions evenly", replicas, cfg.Partitions)
	start := time.Now()
	for from := 0; from < n; from += 1000 { // in slices: a busy server stalls a deep async queue
		publishFast(b, rg, min(1000, n-from), func(i int) (string, string) {
			return "e" + strconv.Itoa((from+i)%1000), wire.TypeVoteUpdated
		})
	}
	testutil.Eventually(b, 120*time.Second, func() bool {
		total := 0.0
		for _, r := range runs {
			total += promtestutil.ToFloat64(r.relay.m.delivered)
		}
		return total >= float64(n)
	}, "%d replicas did not deliver %d changes", replicas, n)
	took := time.Since(start)
	for _, r := range runs {
		r.stop()
	}
	return took
}

// BenchmarkPartitionedReplicas measures what a second replica adds in
// partitioned mode when Pusher is slow (40 ms per request): the events/s
// of one replica and of two over the same backlog, and their ratio
// (issue 9 item 1 wants at least 1.6), for a replica sending one, two and
// four (the default) requests at a time (LIVE_RELAY_MAX_IN_FLIGHT). Run
// with -benchtime=1x.
func BenchmarkPartitionedReplicas(b *testing.B) {
	n := *replicaEvents
	for _, lanes := range []int{1, 2, 4} {
		b.Run("in-flight-"+strconv.Itoa(lanes), func(b *testing.B) {
			for b.Loop() {
				one := float64(n) / drainWith(b, 1, lanes, n).Seconds()
				two := float64(n) / drainWith(b, 2, lanes, n).Seconds()
				b.ReportMetric(one, "events/s-1-replica")
				b.ReportMetric(two, "events/s-2-replicas")
				b.ReportMetric(two/one, "x-2-replicas")
			}
		})
	}
}
