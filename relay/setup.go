// Setting up and running: the streams, the durable consumer (or the
// partitions), and the goroutines of one Run.

package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/stream"
)

// Run ensures LIVE_EVENTS, LIVE_DLQ and the durable consumer, then forwards
// changes until ctx is done. On cancellation it lets requests in flight
// finish, releases (Naks) every change it still holds, and returns nil. It
// returns an error only when the streams or the consumer cannot be set up.
func (r *Relay) Run(ctx context.Context) error {
	var (
		st   jetstream.Stream
		cons jetstream.Consumer
		pt   *partitions
	)
	err := r.retrySetup(ctx, func(ctx context.Context) error {
		var err error
		var changes []stream.Change
		if st, changes, err = stream.Ensure(ctx, r.js, r.streams); err != nil {
			return err
		}
		stream.LogChanges(r.log, r.streams.WithDefaults().Name, changes)
		if _, changes, err = stream.Ensure(ctx, r.js, r.streams.DLQ()); err != nil {
			return err
		}
		stream.LogChanges(r.log, r.streams.DLQ().Name, changes)
		if r.cfg.Partitions > 0 {
			pt, err = r.setUpPartitions(ctx)
			return err
		}
		cons, err = r.ensureConsumer(ctx)
		return err
	})
	if ctx.Err() != nil {
		return nil // cancelled while setting up: nothing held yet
	}
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if pt != nil {
		return r.runPartitioned(ctx, pt)
	}
	adv := make(chan *nats.Msg, 64)
	sub, err := r.js.Conn().ChanSubscribe(advisorySubject(r.streams.Name), adv)
	if err != nil {
		return fmt.Errorf("relay: subscribe to max-deliveries advisories: %w", err)
	}
	r.log.WithFields(logrus.Fields{"stream": r.streams.Name, "consumer": Consumer, "lanes": len(r.lanes)}).Info("relay started")
	r.progressed()

	var wg sync.WaitGroup
	wg.Go(func() { r.fetchLoop(ctx, cons) })
	for _, l := range r.lanes {
		wg.Go(func() { r.runLane(ctx, l) })
	}
	wg.Go(func() { r.runDeadLetters(ctx) })
	wg.Go(func() { r.keepAlive(ctx) })
	wg.Go(func() { r.sampleLag(ctx) })
	wg.Go(func() { r.handleAdvisories(ctx, st, adv) })
	wg.Wait()
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		r.log.WithError(err).Warn("unsubscribe advisories")
	}
	r.releaseAll(ctx)
	r.log.Info("relay stopped")
	return nil
}

// retrySetup runs setup until it succeeds, ctx ends, or it fails for a
// reason retrying cannot fix (the stream conflicts with the configuration,
// or the configuration is invalid).
// A cluster that is still electing its leaders (a fresh or recovering
// three-node cluster takes seconds) answers with timeouts meanwhile: a relay
// that gave up then would leave its changes unsent until restarted.
func (r *Relay) retrySetup(ctx context.Context, setup func(context.Context) error) error {
	return retry.Do(ctx, retry.New(100*time.Millisecond, 5*time.Second), r.log, "relay setup failed, retrying",
		func(ctx context.Context) error {
			err := setup(ctx)
			if errors.Is(err, stream.ErrConflict) || errors.Is(err, stream.ErrInvalid) {
				return retry.Permanent(err)
			}
			return err
		})
}

// runPartitioned is Run in partitioned mode, after the streams and the
// buckets were set up.
func (r *Relay) runPartitioned(ctx context.Context, pt *partitions) error {
	r.mu.Lock()
	r.parts = pt
	r.mu.Unlock()
	r.log.WithFields(logrus.Fields{"stream": r.streams.Name, "partitions": r.cfg.Partitions, "replica": pt.id, "lanes": len(r.lanes)}).Info("relay started")
	r.progressed()
	var wg, readers sync.WaitGroup
	for _, l := range r.lanes {
		wg.Go(func() { r.runLane(ctx, l) })
	}
	wg.Go(func() { r.runDeadLetters(ctx) })
	wg.Go(func() { pt.run(ctx, &readers) })
	wg.Go(func() { pt.watch(ctx) })
	wg.Wait()
	readers.Wait()
	r.releaseAll(ctx)
	r.log.Info("relay stopped")
	return nil
}

func advisorySubject(streamName string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + streamName + "." + Consumer
}

func (r *Relay) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := r.js.CreateOrUpdateConsumer(ctx, r.streams.Name, r.cfg.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", Consumer, r.streams.Name, err)
	}
	r.mu.Lock()
	r.cons = cons
	r.mu.Unlock()
	return cons, nil
}

// consumerConfig is the durable consumer every replica shares.
func (c Config) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       Consumer,
		Description:   "liveupdates relay: forwards changes to Pusher",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		MaxWaiting:    512,
	}
}
