package relay

// Partitioned mode (Config.Partitions > 0): strict per-channel order with
// several replicas and a fast, ordered hand-over after a crash.
//
// Every eventId belongs to one of P partitions (FNV-1a of the eventId, mod
// P). A replica owns a partition while it holds the partition's lease, a key
// in the KV bucket liveupdates_relay_leases whose TTL (LeaseTTL) the owner renews;
// replicas announce themselves in the same bucket and each takes a fair
// share, ceil(P / replicas), so two replicas split the work and one takes
// it all when the other is gone. The owner reads the stream from the
// partition's checkpoint with an ordered consumer, skips other partitions'
// changes by subject (no decoding), sends its own through the lanes, and
// writes the checkpoint (the highest seq below which every change of the
// partition was accepted or dead-lettered) to liveupdates_relay_checkpoints.
//
// A replica that dies leaves no unacked messages behind: its leases expire
// after LeaseTTL and the next owner starts reading at checkpoint+1, in seq
// order, so no change waits an ack wait and none arrives behind a newer
// change of its channel. What the dead owner sent after its last checkpoint
// is sent again (clients drop duplicates by id): at most CheckpointInterval
// of work.
//
// Why not the alternatives: a stream subject transform with partition(N,…)
// would change the subjects every role stores and reads (and cannot be
// applied to an existing LIVE_EVENTS in place); pcgroups' elastic groups
// copy every change into a second work-queue stream and hand a partition
// over through acks and the pinned TTL; priority groups with pinned_client
// give one active replica for the whole consumer, no scaling. The cost here
// is that each owned partition reads the whole stream (P reads of each
// change in total), cheap at the rates a relay sees.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/wire"
)

// KV buckets of partitioned mode.
const (
	LeaseBucket      = "liveupdates_relay_leases"
	CheckpointBucket = "liveupdates_relay_checkpoints"
)

// partitionOf maps an eventId to its partition.
func partitionOf(eventID string, partitions int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(eventID)) // hash writes do not fail
	return int(h.Sum32() % uint32(partitions))
}

// partitionOfSubject is partitionOf for a stored subject; a subject that is
// no change's (it will be dead-lettered) belongs to partition 0.
func partitionOfSubject(subject string, partitions int) int {
	eventID, _, err := wire.ParseSubject(subject)
	if err != nil {
		return 0
	}
	return partitionOf(eventID, partitions)
}

// partState tracks one owned partition: which of its changes are still in
// flight, and so the checkpoint.
type partState struct {
	p       int
	revoked atomic.Bool // the lease is lost: drop its changes unsent

	mu          sync.Mutex
	seen        uint64   // highest seq read
	outstanding []uint64 // seqs of the partition's changes not settled, ascending
	changed     chan struct{}
}

func newPartState(p int, checkpoint uint64) *partState {
	return &partState{p: p, seen: checkpoint, changed: make(chan struct{}, 1)}
}

// read records seqs read from the stream, in order; mine are the
// partition's, the others are settled at once.
func (ps *partState) read(seq uint64, mine bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if seq > ps.seen {
		ps.seen = seq
	}
	if mine {
		ps.outstanding = append(ps.outstanding, seq)
	}
}

// settle records that a change of the partition was accepted or
// dead-lettered.
func (ps *partState) settle(seq uint64) {
	ps.mu.Lock()
	if i, ok := slices.BinarySearch(ps.outstanding, seq); ok {
		ps.outstanding = slices.Delete(ps.outstanding, i, i+1)
	}
	ps.mu.Unlock()
	select {
	case ps.changed <- struct{}{}:
	default:
	}
}

// checkpoint is the highest seq at or below which every change of the
// partition was settled.
func (ps *partState) checkpoint() uint64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.outstanding) > 0 {
		return ps.outstanding[0] - 1
	}
	return ps.seen
}

// next is the seq to read from: after everything read.
func (ps *partState) next() uint64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.seen + 1
}

func (ps *partState) inFlight() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.outstanding)
}

// owned is a partition this replica holds the lease of.
type owned struct {
	ps      *partState
	rev     uint64
	stop    context.CancelFunc // stops the reader
	stopped chan struct{}      // closed when the reader returned
}

// partitions runs partitioned mode: leases, readers and checkpoints.
type partitions struct {
	r      *Relay
	leases jetstream.KeyValue
	cps    jetstream.KeyValue
	id     string
	log    logrus.FieldLogger
	owned  map[int]*owned // only the manager goroutine touches it
	// replicas is the last count of live replicas, listed at listed.
	replicas int
	listed   time.Time
	// failedTicks counts the ticks in a row that could not announce the
	// replica or list the others; warn throttles their warnings.
	failedTicks int
	warn        retry.Throttle
	// orphans is what watch saw of partitions without an owner, for Ready.
	orphans orphans
}

// setUpPartitions creates (or binds) the two buckets.
func (r *Relay) setUpPartitions(ctx context.Context) (*partitions, error) {
	leases, err := r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "liveupdates relay: which replica owns which partition",
		TTL:         r.cfg.LeaseTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    r.streams.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", LeaseBucket, err)
	}
	cps, err := r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CheckpointBucket,
		Description: "liveupdates relay: per partition, the seq up to which Pusher has every change",
		Storage:     r.streams.Storage,
		Replicas:    r.streams.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", CheckpointBucket, err)
	}
	// Recorded so Leases can list the partitions no one owns. Replicas
	// started with different counts overwrite each other: the lease
	// keys still show what runs.
	if _, err := cps.Put(ctx, partitionsKey, []byte(strconv.Itoa(r.cfg.Partitions))); err != nil {
		return nil, fmt.Errorf("record partition count in %s: %w", CheckpointBucket, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail
	id := hex.EncodeToString(b[:])
	return &partitions{r: r, leases: leases, cps: cps, id: id, owned: map[int]*owned{},
		log: r.log.WithField("replica", id)}, nil
}

func leaseKey(p int) string { return "p" + strconv.Itoa(p) }

func memberKey(id string) string { return "m." + id }

// run keeps this replica's fair share of leases until ctx ends, then
// releases them (after a final checkpoint) so another replica takes over
// at once.
func (pt *partitions) run(ctx context.Context, wg *sync.WaitGroup) {
	t := time.NewTicker(pt.every())
	defer t.Stop()
	for {
		pt.tick(ctx, wg)
		select {
		case <-ctx.Done():
			pt.releaseAll()
			return
		case <-t.C:
		}
	}
}

func (pt *partitions) tick(ctx context.Context, wg *sync.WaitGroup) {
	// Each call has its own deadline, half the TTL: a loaded server must
	// not make one slow call starve the renewals after it.
	op := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, pt.r.cfg.LeaseTTL/2)
	}
	// Renew first: a lease that cannot be renewed in time may be taken by
	// another replica, so its changes must not be sent from here any more.
	for p, o := range pt.owned {
		octx, cancel := op()
		rev, err := pt.leases.Update(octx, leaseKey(p), []byte(pt.id), o.rev)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			pt.r.move.failed()
			pt.log.WithError(err).WithField("partition", p).Warn("lost partition lease; dropping its changes")
			pt.drop(p, o)
			continue
		}
		o.rev = rev
	}
	octx, cancel := op()
	_, err := pt.leases.Put(octx, memberKey(pt.id), []byte(pt.id))
	cancel()
	// The bucket's quorum stored the announcement, or could not: the
	// plainest sign of whether this connection's server serves the relay.
	if err == nil {
		pt.r.move.succeeded()
	} else if ctx.Err() == nil {
		pt.r.move.failed()
	}
	members := 0
	if err == nil {
		members, err = pt.members(ctx)
	}
	if err != nil {
		// NATS away: every tick fails alike, so log now and then.
		if ctx.Err() == nil {
			pt.failedTicks++
			pt.warn.Failed(pt.log, err, pt.failedTicks, pt.every(), "announce relay replica")
		}
		return
	}
	if pt.failedTicks > 0 {
		pt.failedTicks = 0
		pt.warn.Recovered(pt.log, "relay replica announced again")
	}
	n := pt.r.cfg.Partitions
	fair := (n + members - 1) / members
	if len(pt.owned) > fair {
		// One hand-over per tick, so the replicas converge without
		// thrashing.
		p := slices.Max(ownedKeys(pt.owned))
		pt.release(p, pt.owned[p], true)
	}
	// Start the search at an offset of our own, so replicas starting
	// together do not all race for partition 0.
	start := partitionOf(pt.id, n)
	for i := 0; i < n && len(pt.owned) < fair; i++ {
		p := (start + i) % n
		if _, ok := pt.owned[p]; ok {
			continue
		}
		octx, cancel := op()
		rev, err := pt.leases.Create(octx, leaseKey(p), []byte(pt.id))
		cancel()
		if err != nil {
			continue // owned by another replica (or NATS is away: next tick)
		}
		if err := pt.acquire(ctx, wg, p, rev); err != nil {
			pt.log.WithError(err).WithField("partition", p).Warn("start partition")
			octx, cancel := op()
			if err := pt.leases.Delete(octx, leaseKey(p), jetstream.LastRevision(rev)); err != nil {
				pt.log.WithError(err).WithField("partition", p).Warn("give up partition lease") // it expires
			}
			cancel()
		}
	}
	pt.r.m.partitions.Set(float64(len(pt.owned)))
}

// every is the manager's period: well within LeaseTTL so a lease is
// renewed several times before it could expire, and short enough that a
// released partition finds its next owner at once.
func (pt *partitions) every() time.Duration {
	return min(max(pt.r.cfg.LeaseTTL/4, 10*time.Millisecond), 250*time.Millisecond)
}

func ownedKeys(m map[int]*owned) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// members counts the replicas that announced themselves within LeaseTTL.
// Listing costs a consumer on the server, so the count is kept for a
// quarter of the TTL.
func (pt *partitions) members(ctx context.Context) (int, error) {
	if time.Since(pt.listed) < pt.r.cfg.LeaseTTL/4 {
		return pt.replicas, nil
	}
	lctx, cancel := context.WithTimeout(ctx, pt.r.cfg.LeaseTTL)
	defer cancel()
	kl, err := pt.leases.ListKeysFiltered(lctx, "m.*")
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", LeaseBucket, err)
	}
	n := 0
	for range kl.Keys() { // the lister stops itself at the end
		n++
	}
	pt.replicas, pt.listed = max(n, 1), time.Now()
	return pt.replicas, nil
}

// acquire starts reading partition p from its checkpoint.
func (pt *partitions) acquire(ctx context.Context, wg *sync.WaitGroup, p int, rev uint64) error {
	// The lease was just taken and must be renewed within LeaseTTL, and the
	// manager's tick waits on this read. Unbounded, a read sent to a server
	// cut off from the cluster waited out the client's 5 s default, which
	// lost the lease and held every other partition back (leader-partition
	// in clustertest: 11 s without a change reaching Pusher). Bounded like
	// the lease operations, a failed read gives the lease up and the next
	// tick tries again.
	cctx, cancel := context.WithTimeout(ctx, pt.r.cfg.LeaseTTL/2)
	cp, err := pt.checkpoint(cctx, p)
	cancel()
	if err != nil {
		return err
	}
	ps := newPartState(p, cp)
	rctx, stop := context.WithCancel(ctx)
	o := &owned{ps: ps, rev: rev, stop: stop, stopped: make(chan struct{})}
	pt.owned[p] = o
	wg.Go(func() {
		defer close(o.stopped)
		pt.r.readPartition(rctx, ps, pt.id)
	})
	wg.Go(func() { pt.keepCheckpoint(rctx, ps) })
	pt.log.WithFields(logrus.Fields{"partition": p, "seq": cp + 1}).Info("partition acquired")
	return nil
}

// checkpoint reads partition p's checkpoint, seeding it when it has none.
func (pt *partitions) checkpoint(ctx context.Context, p int) (uint64, error) {
	e, err := pt.cps.Get(ctx, leaseKey(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return pt.seedCheckpoint(ctx, p)
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint of partition %d: %w", p, err)
	}
	cp, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("checkpoint of partition %d is %q: %w", p, e.Value(), err)
	}
	return cp, nil
}

// seedCheckpoint gives partition p its first checkpoint: the ack floor of
// the durable consumer an unpartitioned relay used (everything up to it
// reached Pusher), or 0 (the whole stream) when no relay ran before. Without
// it, turning partitioned mode on for a live stream would send every change
// the stream retains to Pusher again. Create makes the replicas agree on
// one value when several seed at once.
func (pt *partitions) seedCheckpoint(ctx context.Context, p int) (uint64, error) {
	var seed uint64
	cons, err := pt.r.js.Consumer(ctx, pt.r.streams.Name, Consumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return 0, fmt.Errorf("seed checkpoint of partition %d: consumer %s: %w", p, Consumer, err)
	default:
		seed = cons.CachedInfo().AckFloor.Stream
	}
	if _, err := pt.cps.Create(ctx, leaseKey(p), []byte(strconv.FormatUint(seed, 10))); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return pt.checkpoint(ctx, p) // another replica seeded it first
		}
		return 0, fmt.Errorf("seed checkpoint of partition %d: %w", p, err)
	}
	if seed > 0 {
		pt.log.WithFields(logrus.Fields{"partition": p, "seq": seed}).Info("partition checkpoint seeded from the unpartitioned consumer's ack floor")
	}
	return seed, nil
}

// keepCheckpoint writes the partition's checkpoint whenever it moved, at
// most every CheckpointInterval, until ctx ends.
func (pt *partitions) keepCheckpoint(ctx context.Context, ps *partState) {
	t := time.NewTicker(pt.r.cfg.CheckpointInterval)
	defer t.Stop()
	var written uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ps.revoked.Load() {
			return
		}
		if cp := ps.checkpoint(); cp > written {
			wctx, cancel := context.WithTimeout(ctx, pt.r.cfg.LeaseTTL)
			_, err := pt.cps.Put(wctx, leaseKey(ps.p), []byte(strconv.FormatUint(cp, 10)))
			cancel()
			if err != nil {
				pt.r.logAck.Do(func() { pt.log.WithError(err).WithField("partition", ps.p).Warn("write checkpoint") })
				continue
			}
			written = cp
		}
	}
}

// drop forgets a partition whose lease is lost: nothing of it is sent any
// more, and nothing is written for it.
func (pt *partitions) drop(p int, o *owned) {
	o.ps.revoked.Store(true)
	o.stop()
	delete(pt.owned, p)
	pt.r.hold.dropRevoked()
}

// release hands a partition over: stop reading, let the lanes finish what
// was read (up to a bound), write the checkpoint, delete the lease.
func (pt *partitions) release(p int, o *owned, drain bool) {
	o.stop()
	<-o.stopped
	// Waiting spares the next owner duplicates, nothing more: it re-sends
	// from the checkpoint in seq order either way. The wait is short, as
	// the other leases must be renewed meanwhile.
	deadline := time.NewTimer(pt.r.cfg.LeaseTTL / 4)
	defer deadline.Stop()
wait:
	for drain && o.ps.inFlight() > 0 && pt.r.gate.Healthy() {
		select {
		case <-deadline.C:
			break wait
		case <-o.ps.changed:
		}
	}
	o.ps.revoked.Store(true)
	pt.r.hold.dropRevoked()
	delete(pt.owned, p)
	ctx, cancel := context.WithTimeout(context.Background(), pt.r.cfg.LeaseTTL)
	defer cancel()
	cp := o.ps.checkpoint()
	if _, err := pt.cps.Put(ctx, leaseKey(p), []byte(strconv.FormatUint(cp, 10))); err != nil {
		pt.log.WithError(err).WithField("partition", p).Warn("write checkpoint on release")
		return // keep the lease to its expiry: the next owner re-sends from the older checkpoint
	}
	// Delete the lease only while it is still ours: it may have expired
	// and found another owner meanwhile.
	e, err := pt.leases.Get(ctx, leaseKey(p))
	if err == nil && string(e.Value()) == pt.id {
		err = pt.leases.Delete(ctx, leaseKey(p), jetstream.LastRevision(e.Revision()))
	}
	if err != nil {
		pt.log.WithError(err).WithField("partition", p).Warn("release partition lease")
	}
	pt.log.WithFields(logrus.Fields{"partition": p, "seq": cp}).Info("partition released")
}

// releaseAll releases every partition and withdraws the replica, when Run
// ends. Lanes have stopped by then; what they left is sent by the next
// owner from the checkpoint.
func (pt *partitions) releaseAll() {
	for _, o := range pt.owned {
		o.stop() // all readers at once: each may be in a pull up to IdleWait
	}
	for p, o := range pt.owned {
		pt.release(p, o, false) // the lanes have stopped: nothing more settles
	}
	pt.r.m.partitions.Set(0)
	ctx, cancel := context.WithTimeout(context.Background(), pt.r.cfg.LeaseTTL)
	defer cancel()
	if err := pt.leases.Delete(ctx, memberKey(pt.id)); err != nil {
		pt.log.WithError(err).Warn("withdraw relay replica")
	}
}
