package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/ops"
)

const defaultNATSURL = "nats://127.0.0.1:4222"

// reconnect is how a connection lives through a NATS outage.
type reconnect bool

const (
	// keepTrying is for the roles and for tail: they outlive a NATS
	// restart or a node loss (a role reports not ready meanwhile), and may
	// start before NATS does.
	keepTrying reconnect = true
	// failFast is for the one-shot operator tools: an error at once beats
	// a command that hangs waiting for NATS to come back.
	failFast reconnect = false
)

// natsConn is a NATS connection with its JetStream handle.
type natsConn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// dialNATS is the one way the commands connect to NATS: to LIVE_NATS_URL,
// as the NATS user of LIVE_NATS_* (natsAuth), named liveupdates-<name>, with
// replies under name's own inbox prefix, which only that role's NATS user
// may subscribe to (ops.NATSRoles). extra options come last, so they win
// (dev's in-process server and per-role users).
func dialNATS(getenv func(string) string, name string, log logrus.FieldLogger, policy reconnect, extra ...nats.Option) (natsConn, error) {
	r := env.NewReader(getenv)
	url := defaultNATSURL
	r.String("LIVE_NATS_URL", &url)
	auth := natsAuth(r)
	if err := r.Err(); err != nil {
		return natsConn{}, err
	}
	opts := []nats.Option{
		nats.Name("liveupdates-" + name),
		nats.CustomInboxPrefix(ops.InboxPrefix(name)),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed on purpose (drained at shutdown): nothing to warn of
			}
			log.WithError(err).Warn("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.WithField("server", nc.ConnectedUrlRedacted()).Info("nats reconnected")
		}),
	}
	if policy == keepTrying {
		opts = append(opts,
			nats.MaxReconnects(-1),
			nats.ReconnectWait(250*time.Millisecond),
			nats.ReconnectJitter(100*time.Millisecond, time.Second),
			nats.RetryOnFailedConnect(true))
	} else {
		opts = append(opts, nats.RetryOnFailedConnect(false), nats.MaxReconnects(0))
	}
	opts = append(opts, auth...)
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return natsConn{}, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return natsConn{}, fmt.Errorf("jetstream: %w", err)
	}
	return natsConn{nc: nc, js: js}, nil
}

// dialTool connects an operator command (status, tail, dlq, publish) with
// its text logger; the caller closes the connection.
func dialTool(e *settings, name string, policy reconnect) (natsConn, logrus.FieldLogger, error) {
	logger, err := newLogger(e.Getenv, e.stderr, "text")
	if err != nil {
		return natsConn{}, nil, err
	}
	log := logger.WithField("component", name)
	c, err := dialNATS(e.Getenv, name, log, policy)
	return c, log, err
}

// natsAuth turns the NATS credentials settings into connect options,
// reporting problems on r. Each role runs as its own NATS user
// (deploy/nats.yaml): a credentials file, a user and password, or an nkey
// seed; at most one of the three.
func natsAuth(r *env.Reader) []nats.Option {
	var opts []nats.Option
	given := 0
	if creds, ok := r.Lookup("LIVE_NATS_CREDS"); ok {
		given++
		opts = append(opts, nats.UserCredentials(creds))
	}
	user, hasUser := r.Lookup("LIVE_NATS_USER")
	var password []byte
	r.Secret("LIVE_NATS_PASSWORD", &password, 0)
	if hasPassword := len(password) > 0; hasUser || hasPassword {
		given++
		if !hasUser || !hasPassword {
			r.Add(errors.New("LIVE_NATS_USER and LIVE_NATS_PASSWORD: set both or neither"))
		}
		opts = append(opts, nats.UserInfo(user, string(password)))
	}
	if seed, ok := r.Lookup("LIVE_NATS_NKEY_SEED"); ok {
		given++
		kp, err := nkeys.FromSeed([]byte(seed))
		if err != nil {
			// The seed is a secret: never echo it (so no r.Fail).
			r.Add(fmt.Errorf("LIVE_NATS_NKEY_SEED: not a user nkey seed: %w", err))
		} else if pub, err := kp.PublicKey(); err != nil {
			r.Add(fmt.Errorf("LIVE_NATS_NKEY_SEED: public key: %w", err))
		} else {
			opts = append(opts, nats.Nkey(pub, kp.Sign))
		}
	}
	if given > 1 {
		r.Add(errors.New("LIVE_NATS_CREDS, LIVE_NATS_USER/LIVE_NATS_PASSWORD and LIVE_NATS_NKEY_SEED: set one way to authenticate, not several"))
	}
	return opts
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

// natsReady is the readiness check of a NATS dependency: connected, and
// JetStream answering for the stream.
func natsReady(c natsConn, streamName string) ops.ReadyCheck {
	return func(ctx context.Context) error {
		if !c.nc.IsConnected() {
			return fmt.Errorf("nats not connected (%s)", c.nc.Status())
		}
		if _, err := c.js.Stream(ctx, streamName); err != nil {
			return fmt.Errorf("jetstream stream %s: %w", streamName, err)
		}
		return nil
	}
}
