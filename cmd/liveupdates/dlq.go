package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/wire"
)

// The dead-letter tools read LIVE_DLQ by direct get (no consumer, nothing
// changes for the relay) and, for replay and purge, act one letter at a time
// so an interrupted run leaves every letter either handled or still there.
// They need a NATS user that may do so: the operator's (deploy/nats.yaml).

// deadLetter is one message of LIVE_DLQ as the tools print it.
type deadLetter struct {
	DLQSeq   uint64    `json:"dlqSeq"`
	Seq      uint64    `json:"seq,omitempty"` // the change's seq in LIVE_EVENTS
	EventID  string    `json:"eventId"`
	Type     string    `json:"type"`
	ID       string    `json:"id,omitempty"`      // the change's id, as clients see it
	DedupID  string    `json:"dedupId,omitempty"` // its original Nats-Msg-Id, which a replay reuses
	Status   int       `json:"status"`            // Pusher's answer, 0 when none
	Attempts int       `json:"attempts"`
	Reason   string    `json:"reason"`
	StoredAt time.Time `json:"storedAt"`

	Headers map[string][]string `json:"headers,omitempty"` // show only
	Data    json.RawMessage     `json:"data,omitempty"`    // show only

	subject string
	header  nats.Header
	data    []byte
}

func newDeadLetter(m *jetstream.RawStreamMsg) deadLetter {
	h := m.Header
	d := deadLetter{DLQSeq: m.Sequence, StoredAt: m.Time.UTC(), subject: m.Subject, header: h, data: m.Data}
	d.EventID, d.Type, _ = strings.Cut(strings.TrimPrefix(m.Subject, wire.DLQSubjectPrefix), ".")
	d.Seq, _ = strconv.ParseUint(h.Get(wire.HeaderDLQSeq), 10, 64)
	d.Status, _ = strconv.Atoi(h.Get(wire.HeaderDLQStatus))
	d.Attempts, _ = strconv.Atoi(h.Get(wire.HeaderDLQAttempts))
	d.Reason = h.Get(wire.HeaderDLQReason)
	if id := h.Get(wire.HeaderDLQID); !strings.HasPrefix(id, "seq-") {
		d.DedupID = id
	}
	// The ingest API scopes Nats-Msg-Id per API key and eventId and keeps
	// the change's own id in Live-Id; without it the two are the same.
	d.ID = h.Get(wire.HeaderID)
	if d.ID == "" {
		d.ID = d.DedupID
	}
	return d
}

// dlqTool is a connection for the dead-letter commands.
type dlqTool struct {
	natsConn
	dlq jetstream.Stream
}

func openDLQ(ctx context.Context, env *settings, name string) (*dlqTool, error) {
	c, _, err := dialTool(env, name, failFast)
	if err != nil {
		return nil, err
	}
	st, err := c.js.Stream(ctx, wire.DLQStreamName)
	if err != nil {
		c.nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%s does not exist yet: the relay creates it when it starts, and nothing was dead-lettered before", wire.DLQStreamName)
		}
		return nil, fmt.Errorf("stream %s: %w", wire.DLQStreamName, err)
	}
	return &dlqTool{natsConn: c, dlq: st}, nil
}

func (d *dlqTool) close() { d.nc.Close() }

// each calls fn for every dead letter matching filter, in seq order, until fn
// returns false or an error.
func (d *dlqTool) each(ctx context.Context, filter string, fn func(deadLetter) (bool, error)) error {
	for seq := uint64(1); ; {
		m, err := d.dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s from seq %d: %w", wire.DLQStreamName, seq, err)
		}
		more, err := fn(newDeadLetter(m))
		if err != nil || !more {
			return err
		}
		seq = m.Sequence + 1
	}
}

func (d *dlqTool) get(ctx context.Context, seq uint64) (deadLetter, error) {
	m, err := d.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return deadLetter{}, fmt.Errorf("no dead letter with seq %d in %s (see dlq list)", seq, wire.DLQStreamName)
	}
	if err != nil {
		return deadLetter{}, fmt.Errorf("read %s seq %d: %w", wire.DLQStreamName, seq, err)
	}
	return newDeadLetter(m), nil
}

// seqFlag reads --seq, a seq of LIVE_DLQ (0 when not given).
func seqFlag(env *settings) (uint64, error) {
	var seq uint64
	r := env.flagReader()
	r.Uint64("--seq", &seq, 1, math.MaxUint64)
	return seq, r.Err()
}

// runDLQList prints the dead letters, oldest first, one JSON line each.
func runDLQList(ctx context.Context, env *settings) error {
	filter := wire.DLQStreamSubjects
	var errs []error
	if e := env.Flag("event"); e != "" {
		if err := wire.ValidateEventID(e); err != nil {
			errs = append(errs, fmt.Errorf("--event: %w", err))
		}
		filter = wire.DLQSubjectPrefix + e + ".>"
	}
	flags := env.flagReader()
	limit := 0 // all
	flags.Int("--limit", &limit, 0, math.MaxInt32)
	if err := errors.Join(append(errs, flags.Err())...); err != nil {
		return fmt.Errorf("dlq list:\n%w", err)
	}
	d, err := openDLQ(ctx, env, "dlq")
	if err != nil {
		return err
	}
	defer d.close()
	enc := json.NewEncoder(env.stdout)
	n := 0
	return d.each(ctx, filter, func(l deadLetter) (bool, error) {
		if err := enc.Encode(l); err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		n++
		return limit == 0 || n < limit, nil
	})
}

// runDLQShow prints one dead letter with every header and its data.
func runDLQShow(ctx context.Context, env *settings) error {
	seq, err := seqFlag(env)
	if err == nil && seq == 0 {
		err = errors.New("--seq is required: the seq of a dead letter (see dlq list)")
	}
	if err != nil {
		return fmt.Errorf("dlq show: %w", err)
	}
	d, err := openDLQ(ctx, env, "dlq")
	if err != nil {
		return err
	}
	defer d.close()
	l, err := d.get(ctx, seq)
	if err != nil {
		return err
	}
	l.Headers = l.header
	if json.Valid(l.data) {
		l.Data = l.data
	} else {
		// Not JSON (why it was dead-lettered, maybe): show it as a string.
		l.Data, _ = json.Marshal(string(l.data))
	}
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(l); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
