package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/stream"
)

const defaultNATSURL = "nats://127.0.0.1:4222"

// newLogger builds the process logger: JSON for the deployed roles, text for
// dev and the operator tools, unless LIVE_LOG_FORMAT says otherwise.
func newLogger(getenv func(string) string, out io.Writer, defaultFormat string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(out)
	var errs []error
	format := getenv("LIVE_LOG_FORMAT")
	if format == "" {
		format = defaultFormat
	}
	switch format {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	default:
		errs = append(errs, fmt.Errorf("LIVE_LOG_FORMAT=%q: want json or text", format))
	}
	if v := getenv("LIVE_LOG_LEVEL"); v != "" {
		lvl, err := logrus.ParseLevel(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("LIVE_LOG_LEVEL=%q: want debug, info, warn or error", v))
		} else {
			log.SetLevel(lvl)
		}
	}
	return log, errors.Join(errs...)
}

// httpAddr is LIVE_HTTP_ADDR or :8080.
func httpAddr(getenv func(string) string) string {
	if v := getenv("LIVE_HTTP_ADDR"); v != "" {
		return v
	}
	return ":8080"
}

// connectNATS connects with reconnects forever: a role outlives a NATS
// restart or a node loss, and reports not ready meanwhile.
func connectNATS(getenv func(string) string, name string, log logrus.FieldLogger, extra ...nats.Option) (*nats.Conn, error) {
	url := getenv("LIVE_NATS_URL")
	if url == "" {
		url = defaultNATSURL
	}
	opts := []nats.Option{
		nats.Name("liveupdates-" + name),
		// Replies to this role come under its own prefix, which only its
		// NATS user may subscribe to (ops.NATSRoles).
		nats.CustomInboxPrefix(ops.InboxPrefix(name)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.WithError(err).Warn("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.WithField("server", nc.ConnectedUrlRedacted()).Info("nats reconnected")
		}),
	}
	auth, err := natsAuth(getenv)
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// natsAuth turns the NATS credentials settings into connect options. Each
// role runs as its own NATS user (deploy/nats.yaml): a credentials file, a
// user and password, or an nkey seed; at most one of the three.
func natsAuth(getenv func(string) string) ([]nats.Option, error) {
	creds, user, password, seed := getenv("LIVE_NATS_CREDS"), getenv("LIVE_NATS_USER"), getenv("LIVE_NATS_PASSWORD"), getenv("LIVE_NATS_NKEY_SEED")
	var opts []nats.Option
	var errs []error
	given := 0
	if creds != "" {
		given++
		opts = append(opts, nats.UserCredentials(creds))
	}
	if user != "" || password != "" {
		given++
		if user == "" || password == "" {
			errs = append(errs, errors.New("LIVE_NATS_USER and LIVE_NATS_PASSWORD: set both or neither"))
		}
		opts = append(opts, nats.UserInfo(user, password))
	}
	if seed != "" {
		given++
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
		if err != nil {
			// The seed is a secret: never echo it.
			errs = append(errs, fmt.Errorf("LIVE_NATS_NKEY_SEED: not a user nkey seed: %w", err))
		} else {
			pub, err := kp.PublicKey()
			if err != nil {
				errs = append(errs, fmt.Errorf("LIVE_NATS_NKEY_SEED: public key: %w", err))
			}
			opts = append(opts, nats.Nkey(pub, kp.Sign))
		}
	}
	if given > 1 {
		errs = append(errs, errors.New("LIVE_NATS_CREDS, LIVE_NATS_USER/LIVE_NATS_PASSWORD and LIVE_NATS_NKEY_SEED: set one way to authenticate, not several"))
	}
	return opts, errors.Join(errs...)
}

// redactURL hides a password in a NATS URL before it is logged.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	return u[:scheme+3] + "redacted@" + u[at+1:]
}

// ensureStream creates or checks LIVE_EVENTS, retrying while NATS is not
// there yet (a role may start before the cluster). A conflicting stream is
// not retried: it needs an operator.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg stream.Config, log logrus.FieldLogger) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, changes, err := stream.Ensure(ctx, js, cfg)
		if err == nil {
			for _, c := range changes {
				log.WithFields(logrus.Fields{"stream": cfg.WithDefaults().Name, "field": c.Field, "old": c.Old, "new": c.New}).
					Warn("stream limit updated to match configuration")
			}
			return nil
		}
		if errors.Is(err, stream.ErrConflict) {
			return err
		}
		log.WithError(err).WithField("attempt", attempt).Warn("stream not ready, retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure stream: %w", context.Cause(ctx))
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// natsReady is the readiness check of a NATS dependency: connected, and
// JetStream answering for the stream.
func natsReady(nc *nats.Conn, js jetstream.JetStream, streamName string) ops.ReadyCheck {
	return func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats not connected (%s)", nc.Status())
		}
		if _, err := js.Stream(ctx, streamName); err != nil {
			return fmt.Errorf("jetstream stream %s: %w", streamName, err)
		}
		return nil
	}
}
