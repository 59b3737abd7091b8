package relay

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// partitioned is a test configuration of partitioned mode.
func (r *rig) partitioned() Config {
	cfg := r.config()
	cfg.Partitions = 8
	cfg.LeaseTTL = time.Second
	cfg.CheckpointInterval = 50 * time.Millisecond
	return cfg
}

// firstArrivals checks that each channel's changes first reached Pusher in
// seq order, and returns how many arrivals were duplicates.
func firstArrivals(t *testing.T, rg *rig) (dups int) {
	t.Helper()
	last := map[string]uint64{}
	seen := map[uint64]bool{}
	for _, ev := range rg.delivered() {
		if seen[ev.env.Seq] {
			dups++
			continue
		}
		seen[ev.env.Seq] = true
		if ev.env.Seq <= last[ev.Channel] {
			t.Fatalf("channel %s first got seq %d after %d", ev.Channel, ev.env.Seq, last[ev.Channel])
		}
		last[ev.Channel] = ev.env.Seq
	}
	return dups
}

func TestPartitionOfIsStableAndSpreads(t *testing.T) {
	t.Parallel()
	counts := make([]int, 8)
	for i := range 8000 {
		id := "event-" + strconv.Itoa(i)
		p := partitionOf(id, 8)
		if p != partitionOf(id, 8) || p != partitionOfSubject(wire.Subject(id, wire.TypeVoteUpdated), 8) {
			t.Fatalf("partition of %s is not stable", id)
		}
		counts[p]++
	}
	for p, n := range counts {
		if n < 800 || n > 1200 {
			t.Fatalf("partition %d got %d of 8000 eventIds, want about 1000 (%v)", p, n, counts)
		}
	}
}

// TestPartitionStateCheckpointIsTheSettledFloor: the checkpoint never
// passes a change of the partition still in flight.
func TestPartitionStateCheckpointIsTheSettledFloor(t *testing.T) {
	t.Parallel()
	ps := newPartState(0, 10)
	ps.read(11, true)
	ps.read(12, false)
	ps.read(13, true)
	ps.read(14, false)
	if cp := ps.checkpoint(); cp != 10 {
		t.Fatalf("checkpoint()=%d with 11 in flight, want 10", cp)
	}
	ps.settle(13)
	if cp := ps.checkpoint(); cp != 10 {
		t.Fatalf("checkpoint()=%d with 11 in flight, want 10", cp)
	}
	ps.settle(11)
	if cp := ps.checkpoint(); cp != 14 {
		t.Fatalf("checkpoint()=%d with nothing in flight, want 14", cp)
	}
}

// TestTwoPartitionedReplicasKeepOrderThroughACrash is issue 9 item 1: two
// replicas split the partitions; one crashes (its context ends and its
// connection closes: nothing released, nothing acked) while changes flow;
// the other takes its partitions over from their checkpoints. No change is
// lost and no channel first gets a change after a newer one.
func TestTwoPartitionedReplicasKeepOrderThroughACrash(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.pusher.SetLatency(2 * time.Millisecond)
	cfg := rg.partitioned()
	nc := rg.nats.Conn(t)
	doomed := rg.start(cfg, mustJS(t, nc))
	survivor := rg.start(cfg, nil)
	owned := func(r *running) float64 {
		return testutil.MetricSum(t, r.reg, "liveupdates_relay_partitions_owned")
	}
	testutil.EventuallyErr(t, 15*time.Second, func() error {
		if a, b := owned(doomed), owned(survivor); a != 4 || b != 4 {
			return fmt.Errorf("replicas own %v and %v partitions, want 4 each", a, b)
		}
		return nil
	})

	// Publish 40 rounds on 10 channels; crash one replica after round 10,
	// while changes flow.
	var ids []string
	crash := make(chan struct{})
	published := make(chan error, 1)
	go func() {
		published <- func() error {
			for round := range 40 {
				if round == 10 {
					close(crash)
				}
				var cs []change
				for ch := range 10 {
					cs = append(cs, change{eventID: "e" + strconv.Itoa(ch), typ: wire.TypeVoteUpdated, data: `{"r":` + strconv.Itoa(round) + `}`})
				}
				_, got, err := rg.publishErr(cs...)
				ids = append(ids, got...)
				if err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	select {
	case <-crash:
	case err := <-published: // failed before the crash
		t.Fatal(err)
	}
	nc.Close()    // the process is gone: nothing acked, released or written
	doomed.stop() // and so are its goroutines
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	rg.waitIDs(30*time.Second, ids)
	testutil.EventuallyErr(t, 15*time.Second, func() error {
		if n := owned(survivor); n != 8 {
			return fmt.Errorf("survivor owns %v partitions, want all 8", n)
		}
		return nil
	})
	dups := firstArrivals(t, rg)
	t.Logf("%d changes, %d duplicate arrivals", len(ids), dups)
	if err := survivor.relay.Ready(t.Context()); err != nil {
		t.Fatalf("Ready()=%v, want nil", err)
	}
	testutil.CollectAndLint(t, survivor.reg, "liveupdates_relay_")
}

// TestPartitionedReplicaStoppedHandsOverAtOnce: a replica that stops
// cleanly releases its partitions, and the other sends what follows from
// the checkpoints without waiting for a lease to expire.
func TestPartitionedReplicaStoppedHandsOverAtOnce(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	cfg := rg.partitioned()
	cfg.LeaseTTL = time.Minute // only a release hands over within the test
	first := rg.start(cfg, nil)
	testutil.Eventually(t, 20*time.Second, func() bool {
		return testutil.MetricSum(t, first.reg, "liveupdates_relay_partitions_owned") == 8
	}, "first replica never owned every partition")
	var cs []change
	for i := range 50 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i%10), typ: wire.TypeVoteUpdated, data: `{"i":` + strconv.Itoa(i) + `}`})
	}
	_, ids := rg.publish(cs[:25]...)
	rg.waitIDs(30*time.Second, ids)
	first.stop()
	second := rg.start(cfg, nil)
	_, more := rg.publish(cs[25:]...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, run := range []*running{first, second} {
				for _, e := range run.logs.AllEntries() {
					s, _ := e.String()
					t.Log(s)
				}
			}
		}
	})
	rg.waitIDs(30*time.Second, more)
	if dups := firstArrivals(t, rg); dups != 0 {
		t.Fatalf("%d duplicates after a clean hand-over, want none", dups)
	}
	if n := testutil.MetricSum(t, second.reg, "liveupdates_relay_partitions_owned"); n != 8 {
		t.Fatalf("second replica owns %v partitions, want 8", n)
	}
}

// TestPartitionedModeStartsAfterWhatTheDurableConsumerSent: turning
// partitioned mode on for a stream an unpartitioned relay already served
// must not send what that relay sent (everything up to its ack floor) to
// Pusher again.
func TestPartitionedModeStartsAfterWhatTheDurableConsumerSent(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	var before []change
	for i := range 6 {
		before = append(before, change{eventID: "e" + strconv.Itoa(i%3), typ: wire.TypeVoteUpdated, data: `{"i":` + strconv.Itoa(i) + `}`})
	}
	_, sentIDs := rg.publish(before...)
	old := rg.start(rg.config(), nil)
	rg.waitIDs(30*time.Second, sentIDs)
	rg.waitSettled(30 * time.Second)
	old.stop()
	n := len(rg.delivered())

	_, ids := rg.publish(change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{"after":1}`})
	rg.start(rg.partitioned(), nil)
	rg.waitIDs(30*time.Second, ids)
	got := rg.delivered()
	if len(got) != n+1 {
		t.Fatalf("partitioned relay sent %d changes after the durable consumer's %d, want only the 1 new one", len(got)-n, n)
	}
}
