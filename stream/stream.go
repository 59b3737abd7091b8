// Package stream provisions the JetStream streams liveupdates relies on:
// LIVE_EVENTS, where every change is stored, and LIVE_DLQ, where the relay
// puts what Pusher refused. Every role calls Ensure at start, so the streams
// exist whichever role starts first, and a stream that drifted from the
// configuration is either brought back (limits) or reported (anything that
// cannot change in place).
package stream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/wire"
)

// Config is the shape of LIVE_EVENTS (and, with DLQ values, LIVE_DLQ).
type Config struct {
	// Name of the stream. Zero means wire.StreamName.
	Name string
	// Subjects the stream captures. Zero means wire.StreamSubjects.
	Subjects []string
	// Storage: jetstream.FileStorage (the zero value) or MemoryStorage.
	Storage jetstream.StorageType
	// MaxAge drops changes older than this. Zero means 24h; the poller can
	// resume a client's cursor only as far back as this.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size. Zero means 1 GiB; -1 is unlimited.
	MaxBytes int64
	// MaxMsgSize bounds one stored change. Zero means 1 MiB (NATS's default
	// max_payload).
	MaxMsgSize int32
	// Replicas: 1 in dev, 3 in a cluster. Zero means 1.
	Replicas int
	// Duplicates is the dedup window for Nats-Msg-Id. Zero means 2m; it must
	// cover the longest time a publisher may retry the same change.
	Duplicates time.Duration
}

// ErrConflict is wrapped by Ensure when an existing stream differs from the
// configuration in a way that cannot be updated in place (storage type,
// subjects, retention). It is never resolved silently.
var ErrConflict = errors.New("existing stream conflicts with configuration")

// LoadConfig reads LIVE_STREAM_* variables; every problem is reported at once.
//
//	LIVE_STREAM_STORAGE     file (default) or memory
//	LIVE_STREAM_MAX_AGE     duration, default 24h
//	LIVE_STREAM_MAX_BYTES   bytes (suffixes KiB MiB GiB), default 1GiB, -1 unlimited
//	LIVE_STREAM_REPLICAS    1..5, default 1
//	LIVE_STREAM_DUPLICATES  duration, default 2m
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{}.WithDefaults()
	r := env.NewReader(getenv)
	if v, ok := r.Lookup("LIVE_STREAM_STORAGE"); ok {
		switch strings.ToLower(v) {
		case "file":
			c.Storage = jetstream.FileStorage
		case "memory":
			c.Storage = jetstream.MemoryStorage
		default:
			r.Fail("LIVE_STREAM_STORAGE", v, "file or memory")
		}
	}
	r.Duration("LIVE_STREAM_MAX_AGE", &c.MaxAge, time.Second, 100*365*24*time.Hour)
	if v, ok := r.Lookup("LIVE_STREAM_MAX_BYTES"); ok && v != "-1" {
		r.Bytes("LIVE_STREAM_MAX_BYTES", &c.MaxBytes, 1<<10, math.MaxInt64)
	} else if ok {
		c.MaxBytes = -1
	}
	r.Int("LIVE_STREAM_REPLICAS", &c.Replicas, 1, 5)
	r.Duration("LIVE_STREAM_DUPLICATES", &c.Duplicates, time.Second, 7*24*time.Hour)
	r.Add(c.Validate())
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ErrInvalid is wrapped by Validate, and so by Ensure, for a configuration
// JetStream would refuse or misread; retrying does not fix it.
var ErrInvalid = errors.New("invalid stream configuration")

// Validate reports every problem of the configuration Ensure would ask for
// (zero fields read as their defaults), each naming its variable.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage {
		errs = append(errs, fmt.Errorf("LIVE_STREAM_STORAGE (Storage) %v: want file or memory", c.Storage))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("LIVE_STREAM_MAX_AGE (MaxAge) %v: want a positive duration", c.MaxAge))
	}
	if c.MaxBytes < -1 {
		errs = append(errs, fmt.Errorf("LIVE_STREAM_MAX_BYTES (MaxBytes) %d: want a positive size or -1 (unlimited)", c.MaxBytes))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("LIVE_STREAM_REPLICAS (Replicas) %d: want 1 to 5", c.Replicas))
	}
	// JetStream refuses a dedup window longer than the stream keeps
	// changes, at create time: say so at start with the variables' names.
	if c.Duplicates < 0 || c.Duplicates > c.MaxAge {
		errs = append(errs, fmt.Errorf("LIVE_STREAM_DUPLICATES (Duplicates) %v: want a positive duration no longer than LIVE_STREAM_MAX_AGE (MaxAge) %v", c.Duplicates, c.MaxAge))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// WithDefaults fills zero fields with their documented defaults.
func (c Config) WithDefaults() Config {
	if c.Name == "" {
		c.Name = wire.StreamName
	}
	if len(c.Subjects) == 0 {
		c.Subjects = []string{wire.StreamSubjects}
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = 1 << 20
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	return c
}

// DLQ returns the configuration of the dead-letter stream that goes with c:
// same storage and replicas, kept longer (7 days) so an operator can look.
func (c Config) DLQ() Config {
	c = c.WithDefaults()
	return Config{
		Name:       wire.DLQStreamName,
		Subjects:   []string{wire.DLQStreamSubjects},
		Storage:    c.Storage,
		MaxAge:     7 * 24 * time.Hour,
		MaxBytes:   c.MaxBytes,
		MaxMsgSize: c.MaxMsgSize,
		Replicas:   c.Replicas,
		Duplicates: c.Duplicates,
	}
}

// JetStreamConfig is the stream configuration Ensure asks for.
func (c Config) JetStreamConfig() jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "liveupdates: changes to planned events, forwarded to Pusher and pollers",
		Subjects:    c.Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.Storage,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		MaxMsgs:     -1,
		MaxMsgSize:  c.MaxMsgSize,
		Discard:     jetstream.DiscardOld,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
		// Direct get lets every replica answer the poller's by-seq reads,
		// not only the leader.
		AllowDirect: true,
	}
}

// Manager is the part of jetstream.JetStream that Ensure needs.
type Manager interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
	UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
}

// Change describes one field Ensure brought back to the configuration.
type Change struct {
	Field    string
	Old, New string
}

// LogChanges logs each limit Ensure changed on stream name, the same way for
// every role: an operator sees which process brought the stream back to its
// configuration.
func LogChanges(log logrus.FieldLogger, name string, changes []Change) {
	for _, c := range changes {
		log.WithFields(logrus.Fields{"stream": name, "field": c.Field, "old": c.Old, "new": c.New}).
			Warn("stream limit updated to match configuration")
	}
}

// Ensure creates the stream, or checks an existing one against c. Limits
// (max age, max bytes, max message size, duplicate window, replicas) are
// updated in place and returned as changes, so the caller can log them; a
// difference in storage, retention or subjects wraps ErrConflict and changes
// nothing; a configuration Validate refuses wraps ErrInvalid. Ensure is
// idempotent: a second call with the same c changes nothing.
func Ensure(ctx context.Context, js Manager, c Config) (jetstream.Stream, []Change, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", c.WithDefaults().Name, err)
	}
	want := c.JetStreamConfig()
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another role created it between our lookup and create.
			return Ensure(ctx, js, c)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return s, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	var conflicts []string
	if have.Storage != want.Storage {
		conflicts = append(conflicts, fmt.Sprintf("storage is %s, configuration wants %s (storage cannot change in place; recreate or migrate the stream)", have.Storage, want.Storage))
	}
	if have.Retention != want.Retention {
		conflicts = append(conflicts, fmt.Sprintf("retention is %s, want %s", have.Retention, want.Retention))
	}
	if !slices.Equal(sorted(have.Subjects), sorted(want.Subjects)) {
		conflicts = append(conflicts, fmt.Sprintf("subjects are %v, want %v", have.Subjects, want.Subjects))
	}
	if len(conflicts) > 0 {
		return nil, nil, fmt.Errorf("stream %s: %w: %s", want.Name, ErrConflict, strings.Join(conflicts, "; "))
	}
	var changes []Change
	note := func(field string, old, new any) {
		changes = append(changes, Change{Field: field, Old: fmt.Sprint(old), New: fmt.Sprint(new)})
	}
	upd := have
	if have.MaxAge != want.MaxAge {
		note("max_age", have.MaxAge, want.MaxAge)
		upd.MaxAge = want.MaxAge
	}
	if have.MaxBytes != want.MaxBytes {
		note("max_bytes", have.MaxBytes, want.MaxBytes)
		upd.MaxBytes = want.MaxBytes
	}
	if have.MaxMsgSize != want.MaxMsgSize {
		note("max_msg_size", have.MaxMsgSize, want.MaxMsgSize)
		upd.MaxMsgSize = want.MaxMsgSize
	}
	if have.Duplicates != want.Duplicates {
		note("duplicate_window", have.Duplicates, want.Duplicates)
		upd.Duplicates = want.Duplicates
	}
	if have.Replicas != want.Replicas {
		note("replicas", have.Replicas, want.Replicas)
		upd.Replicas = want.Replicas
	}
	if !have.AllowDirect {
		note("allow_direct", false, true)
		upd.AllowDirect = true
	}
	if len(changes) == 0 {
		return s, nil, nil
	}
	s, err = js.UpdateStream(ctx, upd)
	if err != nil {
		return nil, nil, fmt.Errorf("update stream %s limits: %w", want.Name, err)
	}
	return s, changes, nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
