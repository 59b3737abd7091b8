package relay

// What partitioned mode shows from outside: who owns which partition and
// for how long (Leases, for `liveupdates status`), how far the partitions
// are behind the stream (the pending gauge), and whether a partition has
// been left without an owner (Ready).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/nostressplanner/liveupdates/wire"
)

// partitionsKey is the checkpoint bucket's record of the partition count
// the replicas run with, so Leases can list partitions no one owns.
const partitionsKey = "partitions"

// ErrNotPartitioned is returned by Leases when the stream has no partition
// buckets: no relay ever ran in partitioned mode.
var ErrNotPartitioned = errors.New("relay partitions are not set up (LIVE_RELAY_PARTITIONS is 0)")

// ErrPartitionOrphaned is wrapped by Ready in partitioned mode while a
// partition has had no owner among the live replicas for longer than twice
// LeaseTTL: its changes are sent by no one. A dead owner's partition is
// taken over within about one LeaseTTL, so this is not a hand-over but
// replicas unable to take leases (NATS trouble, too few replicas running,
// each failing to start the partition).
var ErrPartitionOrphaned = errors.New("relay partition has no owner")

// Lease is one partition's state in partitioned mode.
type Lease struct {
	// Partition is the partition's number, from 0.
	Partition int
	// Owner is the id of the replica holding the lease; empty when the
	// partition has no owner (its lease expired or was released).
	Owner string
	// Age is how long ago the owner last renewed the lease (renewals come
	// every LeaseTTL/4 at most); zero without an owner.
	Age time.Duration
	// Checkpoint is the seq up to which Pusher has every change of the
	// partition; zero before the partition was first owned.
	Checkpoint uint64
	// Behind is the number of changes stored in the stream after the
	// checkpoint, of every partition (each partition reads the whole
	// stream): an upper bound on what the partition still has to send.
	Behind uint64
}

// Leases reads every partition's lease and checkpoint, ordered by
// partition. It returns an error wrapping ErrNotPartitioned when no relay
// ever ran in partitioned mode.
func Leases(ctx context.Context, js jetstream.JetStream) ([]Lease, error) {
	for _, b := range []string{LeaseBucket, CheckpointBucket} {
		if _, err := js.KeyValue(ctx, b); errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("relay leases: %w", ErrNotPartitioned)
		} else if err != nil {
			return nil, fmt.Errorf("relay leases: bucket %s: %w", b, err)
		}
	}
	ls, err := readLeases(ctx, js, wire.StreamName, 0)
	if err != nil {
		return nil, fmt.Errorf("relay leases: %w", err)
	}
	return ls, nil
}

// readLeases is Leases once the buckets are known to exist; n is the
// partition count when the caller knows it (0: as recorded, or as far as
// the keys go).
func readLeases(ctx context.Context, js jetstream.JetStream, streamName string, n int) ([]Lease, error) {
	owners, err := snapshot(ctx, js, LeaseBucket)
	if err != nil {
		return nil, err
	}
	checkpoints, err := snapshot(ctx, js, CheckpointBucket)
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", streamName, err)
	}
	state := st.CachedInfo().State
	if n <= 0 {
		if e, ok := checkpoints[partitionsKey]; ok {
			n, _ = strconv.Atoi(string(e.value))
		}
		for _, m := range []map[string]entry{owners, checkpoints} {
			for k := range m {
				if p, ok := partitionOfKey(k); ok {
					n = max(n, p+1)
				}
			}
		}
	}
	now := time.Now()
	out := make([]Lease, n)
	for p := range out {
		l := Lease{Partition: p}
		if e, ok := owners[leaseKey(p)]; ok {
			l.Owner, l.Age = string(e.value), max(now.Sub(e.written), 0)
		}
		if e, ok := checkpoints[leaseKey(p)]; ok {
			l.Checkpoint, _ = strconv.ParseUint(string(e.value), 10, 64)
		}
		l.Behind = behind(state, l.Checkpoint)
		out[p] = l
	}
	return out, nil
}

// behind is the number of changes the stream holds after checkpoint.
func behind(state jetstream.StreamState, checkpoint uint64) uint64 {
	// Changes before the stream's first seq are gone (max age, max bytes):
	// nothing to send there.
	floor := max(checkpoint, state.FirstSeq-min(state.FirstSeq, 1))
	if state.LastSeq <= floor {
		return 0
	}
	return state.LastSeq - floor
}

// partitionOfKey reads a partition number from a lease or checkpoint key.
func partitionOfKey(k string) (int, bool) {
	rest, ok := strings.CutPrefix(k, "p")
	if !ok {
		return 0, false
	}
	p, err := strconv.Atoi(rest)
	return p, err == nil && p >= 0
}

// entry is a key's value in a snapshot, and when it was written.
type entry struct {
	value   []byte
	written time.Time
}

// snapshot reads every live key of a bucket in one batched direct get (the
// newest message of each key), without the consumer a watcher or a key
// listing would cost the server on every look.
func snapshot(ctx context.Context, js jetstream.JetStream, bucket string) (map[string]entry, error) {
	prefix := "$KV." + bucket + "."
	msgs, err := jetstreamext.GetLastMsgsFor(ctx, js, "KV_"+bucket, []string{prefix + ">"})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bucket, err)
	}
	out := map[string]entry{}
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break // an empty bucket
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", bucket, err)
		}
		switch m.Header.Get("KV-Operation") {
		case "DEL", "PURGE":
			continue // deleted: released
		}
		out[strings.TrimPrefix(m.Subject, prefix)] = entry{value: m.Data, written: m.Time}
	}
	return out, nil
}

// orphans remembers, per partition, since when this replica has seen it
// without an owner.
type orphans struct {
	mu    sync.Mutex
	since map[int]time.Time
	err   error // the last look's failure, if it failed
}

// look records which partitions have no lease now.
func (o *orphans) look(ls []Lease, err error, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = err
	if err != nil {
		return
	}
	if o.since == nil {
		o.since = map[int]time.Time{}
	}
	for _, l := range ls {
		if l.Owner != "" {
			delete(o.since, l.Partition)
		} else if _, ok := o.since[l.Partition]; !ok {
			o.since[l.Partition] = now
		}
	}
}

// check reports the longest-orphaned partition that has had no owner for
// longer than limit, or the last look's failure.
func (o *orphans) check(limit time.Duration, now time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return fmt.Errorf("relay partition leases: %w", o.err)
	}
	var worst []int
	for p, t := range o.since {
		if now.Sub(t) > limit {
			worst = append(worst, p)
		}
	}
	if len(worst) == 0 {
		return nil
	}
	slices.SortFunc(worst, func(a, b int) int { return o.since[a].Compare(o.since[b]) })
	p := worst[0]
	return fmt.Errorf("%w: partition %d for %v (%d partitions without an owner past %v)",
		ErrPartitionOrphaned, p, now.Sub(o.since[p]).Round(time.Millisecond), len(worst), limit)
}

// watch looks at the leases and the stream every LeaseTTL/2 until ctx
// ends: for Ready, which partitions have no owner; every LagInterval, the
// pending gauge, as the changes stored after the lowest checkpoint (the
// slowest partition's backlog, and 0 once every partition has everything),
// since a partition has no durable consumer whose pending count could say.
func (pt *partitions) watch(ctx context.Context) {
	t := time.NewTicker(max(pt.r.cfg.LeaseTTL/2, 10*time.Millisecond))
	defer t.Stop()
	var sampled time.Time
	for {
		lctx, cancel := context.WithTimeout(ctx, pt.r.cfg.LeaseTTL)
		ls, err := readLeases(lctx, pt.r.js, pt.r.streams.Name, pt.r.cfg.Partitions)
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		pt.orphans.look(ls, err, now)
		if err == nil && now.Sub(sampled) >= pt.r.cfg.LagInterval {
			sampled = now
			var lag uint64
			for _, l := range ls {
				lag = max(lag, l.Behind)
			}
			pt.r.m.pending.Set(float64(lag))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
