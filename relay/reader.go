// Reading a partition: the owner of a partition reads the stream from its
// checkpoint with a consumer of its own and hands the partition's changes
// to the lanes.

package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/retry"
)

// reader is the server-side consumer a partition's owner reads with: not
// durable (the checkpoint in KV is the partition's state), no acks, one
// replica in memory. Losing it costs nothing: the owner makes another from
// what it has read.
type reader struct {
	r    *Relay
	name string
	cons jetstream.Consumer
	last uint64 // consumer seq of the last change read: a gap means a lost delivery
}

// open (re)creates the consumer to deliver from seq from on.
func (rd *reader) open(ctx context.Context, from uint64) error {
	rd.close()
	cctx, cancel := context.WithTimeout(ctx, rd.r.cfg.LeaseTTL)
	defer cancel()
	// A reader of this name may outlive a failed delete (a NATS node lost
	// mid-close, or this replica restarted within the inactive threshold),
	// and a consumer's start seq cannot be updated in place (err_code
	// 10012): delete it by name first, whatever rd knows of it.
	if err := rd.r.js.DeleteConsumer(cctx, rd.r.streams.Name, rd.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete old reader %s: %w", rd.name, err)
	}
	cons, err := rd.r.js.CreateOrUpdateConsumer(cctx, rd.r.streams.Name, jetstream.ConsumerConfig{
		Name:              rd.name,
		Description:       "liveupdates relay: one partition's reader",
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(from, 1),
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, // a dead owner's reader goes away
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return fmt.Errorf("create reader %s from seq %d: %w", rd.name, from, err)
	}
	rd.cons, rd.last = cons, 0
	return nil
}

// close deletes the consumer, best effort: the inactive threshold removes
// it anyway.
func (rd *reader) close() {
	if rd.cons == nil {
		return
	}
	rd.cons = nil
	ctx, cancel := context.WithTimeout(context.Background(), rd.r.cfg.LeaseTTL)
	defer cancel()
	if err := rd.r.js.DeleteConsumer(ctx, rd.r.streams.Name, rd.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		rd.r.logAck.Do(func() { rd.r.log.WithError(err).WithField("consumer", rd.name).Warn("delete partition reader") })
	}
}

// readPartition reads the stream for partition ps until ctx ends, and
// hands the partition's changes to the lanes. Without acks a change the
// client dropped would never come back, so a gap in the consumer's
// delivery count restarts the reader after the last change read.
func (r *Relay) readPartition(ctx context.Context, ps *partState, replica string) {
	rd := &reader{r: r, name: "relay-" + replica + "-p" + strconv.Itoa(ps.p)}
	defer rd.close()
	n := int64(r.cfg.BatchSize)
	b := retry.New(r.cfg.BackoffBase, 5*time.Second)
	log := r.log.WithField("partition", ps.p)
	for {
		if r.gate.WaitHealthy(ctx) != nil {
			return
		}
		var err error
		if rd.cons == nil {
			err = rd.open(ctx, ps.next())
		}
		if err == nil {
			if r.hold.sem.Acquire(ctx, n) != nil {
				return
			}
			err = r.readBatch(rd, ps, n)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			b.Reset()
			continue
		}
		r.move.failed()
		rd.close()
		d := b.Next()
		// One throttle for every partition: an outage of NATS fails them
		// all at once.
		r.warnRead.Failed(log, err, b.Failures(), d, "read partition")
		if retry.Sleep(ctx, d) != nil {
			return
		}
	}
}

// errGap reports a delivery the client lost.
var errGap = errors.New("gap in the reader's deliveries")

// readBatch pulls once (n semaphore units held) and dispatches the
// partition's changes.
func (r *Relay) readBatch(rd *reader, ps *partState, n int64) error {
	// Ends on the server's expiry, never on a context: see fetch.
	batch, err := rd.cons.Fetch(r.cfg.BatchSize, jetstream.FetchMaxWait(r.cfg.IdleWait))
	var msgs []jetstream.Msg
	if err == nil {
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		err = batch.Error()
	}
	mine := msgs[:0]
	for _, m := range msgs {
		meta, merr := m.Metadata()
		if merr == nil && meta.Sequence.Consumer != rd.last+1 {
			merr = fmt.Errorf("%w: consumer seq %d after %d", errGap, meta.Sequence.Consumer, rd.last)
		}
		if merr != nil {
			err = merr // the rest is read again from after the last one read
			break
		}
		rd.last = meta.Sequence.Consumer
		p := partitionOfSubject(m.Subject(), r.cfg.Partitions)
		ps.read(meta.Sequence.Stream, p == ps.p)
		if p == ps.p {
			mine = append(mine, m)
		}
	}
	if len(msgs) > 0 {
		r.move.succeeded()
	}
	r.hold.sem.Release(n - int64(len(mine)))
	r.dispatchTo(mine, ps)
	r.pulled()
	if err != nil {
		return fmt.Errorf("read partition %d: %w", ps.p, err)
	}
	return nil
}
