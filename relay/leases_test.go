package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// TestPartitionedRelaySamplesItsLag is issue 9's lag gap: in partitioned
// mode liveupdates_relay_consumer_pending_messages shows the changes Pusher
// does not have yet (during an outage), and drops to 0 once it has them.
func TestPartitionedRelaySamplesItsLag(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	cfg := rg.partitioned()
	cfg.LeaseTTL = 3 * time.Second // no hand-over is measured here: spare a loaded machine lost leases
	run := rg.start(cfg, nil)
	rg.waitOwned(run, 8)
	pending := func() float64 { return testutil.MetricSum(t, run.reg, "liveupdates_relay_consumer_pending_messages") }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pusher requests %d", rg.pusher.Requests())
			for _, e := range run.logs.AllEntries() {
				s, _ := e.String()
				t.Log(s)
			}
		}
	})

	rg.pusher.FailFor(time.Minute, pushercompat.Fault{Status: 503})
	var cs []change
	for i := range 30 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i%10), typ: wire.TypeVoteUpdated, data: `{"i":` + strconv.Itoa(i) + `}`})
	}
	_, ids := rg.publish(cs...)
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		if got := pending(); got != 30 {
			return fmt.Errorf("pending=%v during the outage, want the 30 changes Pusher lacks", got)
		}
		return nil
	})
	rg.pusher.FailFor(0, pushercompat.Fault{})
	rg.waitIDs(30*time.Second, ids)
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		if got := pending(); got != 0 {
			return fmt.Errorf("pending=%v after Pusher got everything, want 0", got)
		}
		return nil
	})
}

// TestPartitionedRelayIsNotReadyWhileAPartitionHasNoOwner is issue 9's
// readiness gap: a partition no replica can take (here its checkpoint is
// unreadable, so starting it fails on every try) makes Ready fail with
// ErrPartitionOrphaned after twice the lease TTL, and Ready recovers once
// the partition has an owner again.
func TestPartitionedRelayIsNotReadyWhileAPartitionHasNoOwner(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	ctx := t.Context()
	cps, err := rg.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: CheckpointBucket, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("create %s: %v", CheckpointBucket, err)
	}
	if _, err := cps.Put(ctx, leaseKey(5), []byte("not a seq")); err != nil {
		t.Fatalf("put checkpoint: %v", err)
	}
	cfg := rg.partitioned()
	cfg.LeaseTTL = 3 * time.Second // no hand-over is measured here: spare a loaded machine lost leases
	run := rg.start(cfg, nil)
	rg.waitOwned(run, 7) // all but the one it cannot start
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		if err := run.relay.Ready(ctx); !errors.Is(err, ErrPartitionOrphaned) {
			return fmt.Errorf("Ready()=%v, want ErrPartitionOrphaned", err)
		}
		return nil
	})
	if _, err := cps.Put(ctx, leaseKey(5), []byte("0")); err != nil {
		t.Fatalf("put checkpoint: %v", err)
	}
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		if err := run.relay.Ready(ctx); err != nil {
			return fmt.Errorf("Ready()=%v after the partition found its owner, want nil", err)
		}
		return nil
	})
}

// TestLeasesShowsOwnersAgesAndCheckpoints is what `liveupdates status`
// shows of partitioned mode: every partition, its owner among the running
// replicas, a lease renewed within the TTL, and checkpoints past what was
// sent; no buckets reads as ErrNotPartitioned.
func TestLeasesShowsOwnersAgesAndCheckpoints(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	if _, err := Leases(t.Context(), rg.js); !errors.Is(err, ErrNotPartitioned) {
		t.Fatalf("Leases() before partitioned mode=%v, want ErrNotPartitioned", err)
	}
	cfg := rg.partitioned()
	cfg.LeaseTTL = 3 * time.Second // no hand-over is measured here: spare a loaded machine lost leases
	a, b := rg.start(cfg, nil), rg.start(cfg, nil)
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		owned := testutil.MetricSum(t, a.reg, "liveupdates_relay_partitions_owned") + testutil.MetricSum(t, b.reg, "liveupdates_relay_partitions_owned")
		if owned != 8 {
			return fmt.Errorf("replicas own %v partitions, want 8", owned)
		}
		return nil
	})
	var cs []change
	for i := range 40 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i), typ: wire.TypeVoteUpdated, data: `{}`})
	}
	seqs, ids := rg.publish(cs...)
	rg.waitIDs(30*time.Second, ids)
	last := seqs[len(seqs)-1]
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		ls, err := Leases(ctx, rg.js)
		if err != nil {
			return fmt.Errorf("Leases()=%v", err)
		}
		if len(ls) != 8 {
			return fmt.Errorf("Leases() listed %d partitions, want 8", len(ls))
		}
		owners := map[string]int{}
		for i, l := range ls {
			if l.Partition != i || l.Owner == "" || l.Age > cfg.LeaseTTL {
				return fmt.Errorf("lease %d: %+v, want partition %d owned, renewed within %v", i, l, i, cfg.LeaseTTL)
			}
			if l.Checkpoint != last || l.Behind != 0 {
				return fmt.Errorf("lease %d: %+v, want checkpoint %d (every partition read everything) and nothing behind", i, l, last)
			}
			owners[l.Owner]++
		}
		if len(owners) != 2 {
			return fmt.Errorf("owners %v, want the two replicas", owners)
		}
		return nil
	})
}

func TestBehindCountsWhatTheStreamStillHolds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		state      jetstream.StreamState
		checkpoint uint64
		want       uint64
	}{
		{"empty stream", jetstream.StreamState{}, 0, 0},
		{"all after the checkpoint", jetstream.StreamState{FirstSeq: 1, LastSeq: 10}, 0, 10},
		{"some after the checkpoint", jetstream.StreamState{FirstSeq: 1, LastSeq: 10}, 7, 3},
		{"checkpoint at the end", jetstream.StreamState{FirstSeq: 1, LastSeq: 10}, 10, 0},
		{"changes before the first seq are gone", jetstream.StreamState{FirstSeq: 6, LastSeq: 10}, 2, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := behind(tt.state, tt.checkpoint); got != tt.want {
				t.Fatalf("behind(%+v, %d)=%d, want %d", tt.state, tt.checkpoint, got, tt.want)
			}
		})
	}
}
