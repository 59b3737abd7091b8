package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/stream"
)

// newLogger builds the process logger: JSON for the deployed roles, text for
// dev and the operator tools, unless LIVE_LOG_FORMAT says otherwise.
func newLogger(getenv func(string) string, out io.Writer, defaultFormat string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(out)
	r := env.NewReader(getenv)
	format := defaultFormat
	r.String("LIVE_LOG_FORMAT", &format)
	switch format {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	default:
		r.Fail("LIVE_LOG_FORMAT", format, "json or text")
	}
	if v, ok := r.Lookup("LIVE_LOG_LEVEL"); ok {
		if lvl, err := logrus.ParseLevel(v); err != nil {
			r.Fail("LIVE_LOG_LEVEL", v, "debug, info, warn or error")
		} else {
			log.SetLevel(lvl)
		}
	}
	return log, r.Err()
}

// httpAddr is LIVE_HTTP_ADDR or :8080.
func httpAddr(getenv func(string) string) string {
	addr := ":8080"
	env.NewReader(getenv).String("LIVE_HTTP_ADDR", &addr)
	return addr
}

// ensureStream creates or checks LIVE_EVENTS, retrying while NATS is not
// there yet (a role may start before the cluster). A conflicting stream is
// not retried: it needs an operator.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg stream.Config, log logrus.FieldLogger) error {
	name := cfg.WithDefaults().Name
	err := retry.Do(ctx, retry.New(100*time.Millisecond, 5*time.Second), log, "stream not ready, retrying", func(ctx context.Context) error {
		_, changes, err := stream.Ensure(ctx, js, cfg)
		if errors.Is(err, stream.ErrConflict) {
			return retry.Permanent(err)
		}
		for _, c := range changes {
			log.WithFields(logrus.Fields{"stream": name, "field": c.Field, "old": c.Old, "new": c.New}).
				Warn("stream limit updated to match configuration")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", name, err)
	}
	return nil
}
