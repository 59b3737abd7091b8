package main

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/wire"
)

// runTail prints the envelopes of one eventId, one JSON line each, as they
// are stored. It reads through an ordered consumer: no state on the server,
// nothing to ack, and it never changes what the relay or pollers see.
func runTail(ctx context.Context, env *settings) error {
	eventID, typ := env.Flag("event"), env.Flag("type")
	var errs []error
	if eventID == "" {
		errs = append(errs, errors.New("--event is required"))
	} else if err := wire.ValidateEventID(eventID); err != nil {
		errs = append(errs, fmt.Errorf("--event: %w", err))
	}
	if typ != "" {
		if err := wire.ValidateType(typ); err != nil {
			errs = append(errs, fmt.Errorf("--type: %w", err))
		}
	}
	flags := env.flagReader()
	limit := 0 // follow until interrupted
	flags.Int("--limit", &limit, 0, math.MaxInt32)
	if err := errors.Join(append(errs, flags.Err())...); err != nil {
		return fmt.Errorf("tail:\n%w", err)
	}
	// tail follows: it outlives a NATS restart, as a role does.
	c, log, err := dialTool(env, "tail", keepTrying)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	filter := wire.EventSubjectFilter(eventID)
	if typ != "" {
		filter = wire.Subject(eventID, typ)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if env.Bool("from-start") {
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := c.js.OrderedConsumer(ctx, wire.StreamName, cfg)
	if err != nil {
		return fmt.Errorf("tail %s: %w", filter, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("tail %s: %w", filter, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	printed := 0
	var buf []byte
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tail %s: %w", filter, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("tail %s: %w", filter, err)
		}
		env2, _, err := wire.DecodeMessage(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
		if err != nil {
			log.WithError(err).WithField("seq", meta.Sequence.Stream).Warn("skipping invalid stored message")
			continue
		}
		buf = append(env2.AppendJSON(buf[:0]), '\n')
		if _, err := env.stdout.Write(buf); err != nil {
			return fmt.Errorf("tail: write: %w", err)
		}
		printed++
		if limit > 0 && printed >= limit {
			return nil
		}
	}
}
