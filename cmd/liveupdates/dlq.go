package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/textproto"
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

// headerLiveID is the header that carries a change's id when Nats-Msg-Id
// is a scoped dedup id (wire.HeaderID on the ingest branch).
const headerLiveID = "Live-Id"

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
	d.ID = h.Get(headerLiveID)
	if d.ID == "" {
		d.ID = d.DedupID
	}
	return d
}

// dlqTool is a connection for the dead-letter commands.
type dlqTool struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	dlq jetstream.Stream
}

func openDLQ(ctx context.Context, env *settings, name string) (*dlqTool, error) {
	log, err := newLogger(env.Getenv, env.stderr, "text")
	if err != nil {
		return nil, err
	}
	// An operator tool fails fast: it does not wait for NATS to come back.
	nc, err := connectNATS(env.Getenv, name, log.WithField("component", name), nats.RetryOnFailedConnect(false), nats.MaxReconnects(0))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	st, err := js.Stream(ctx, wire.DLQStreamName)
	if err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%s does not exist yet: the relay creates it when it starts, and nothing was dead-lettered before", wire.DLQStreamName)
		}
		return nil, fmt.Errorf("stream %s: %w", wire.DLQStreamName, err)
	}
	return &dlqTool{nc: nc, js: js, dlq: st}, nil
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

// selection is which dead letters a command acts on: one seq, one eventId,
// or all of them; exactly one must be chosen, so a command never acts on
// everything by accident.
type selection struct {
	seq    uint64
	filter string
}

func selectLetters(env *settings, cmd string) (selection, error) {
	seqFlag, eventID, all := env.Flag("seq"), env.Flag("event"), env.Bool("all")
	chosen := 0
	var sel selection
	var errs []error
	if seqFlag != "" {
		chosen++
		n, err := strconv.ParseUint(seqFlag, 10, 64)
		if err != nil || n == 0 {
			errs = append(errs, fmt.Errorf("--seq=%q: want a seq of %s", seqFlag, wire.DLQStreamName))
		}
		sel.seq = n
	}
	if eventID != "" {
		chosen++
		if err := wire.ValidateEventID(eventID); err != nil {
			errs = append(errs, fmt.Errorf("--event: %w", err))
		}
		sel.filter = wire.DLQSubjectPrefix + eventID + ".>"
	}
	if all {
		chosen++
		sel.filter = wire.DLQStreamSubjects
	}
	if chosen != 1 {
		errs = append(errs, errors.New("choose which dead letters: one of --seq, --event or --all"))
	}
	if err := errors.Join(errs...); err != nil {
		return selection{}, fmt.Errorf("%s:\n%w", cmd, err)
	}
	return sel, nil
}

// letters returns the selected dead letters.
func (d *dlqTool) letters(ctx context.Context, sel selection) ([]deadLetter, error) {
	if sel.seq != 0 {
		l, err := d.get(ctx, sel.seq)
		if err != nil {
			return nil, err
		}
		return []deadLetter{l}, nil
	}
	var out []deadLetter
	err := d.each(ctx, sel.filter, func(l deadLetter) (bool, error) {
		out = append(out, l)
		return true, nil
	})
	return out, err
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
	limit, err := strconv.Atoi(env.Flag("limit"))
	if err != nil || limit < 0 {
		errs = append(errs, fmt.Errorf("--limit=%q: want a count, 0 for all", env.Flag("limit")))
	}
	if err := errors.Join(errs...); err != nil {
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
	seq, err := strconv.ParseUint(env.Flag("seq"), 10, 64)
	if err != nil || seq == 0 {
		return fmt.Errorf("dlq show: --seq=%q: want the seq of a dead letter (see dlq list)", env.Flag("seq"))
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

// replayResult is what dlq replay prints for each letter.
type replayResult struct {
	DLQSeq uint64 `json:"dlqSeq"`
	ID     string `json:"dedupId"`       // the Nats-Msg-Id it was published with
	Seq    uint64 `json:"seq,omitempty"` // where the change is now in LIVE_EVENTS
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Results of a replay.
const (
	replayStored         = "replayed"           // stored again under a new seq
	replayAlreadyStored  = "already_replayed"   // an earlier replay stored it (dedup)
	replayOriginalInDup  = "original_in_window" // the original is still within the duplicate window
	replayNotReplayable  = "not_replayable"     // no eventId and type to publish to
	replayPublishFailure = "failed"
)

// openSelected opens LIVE_DLQ and reads the dead letters cmd's flags
// select; the caller closes the tool.
func openSelected(ctx context.Context, env *settings, cmd string) (*dlqTool, []deadLetter, error) {
	sel, err := selectLetters(env, cmd)
	if err != nil {
		return nil, nil, err
	}
	d, err := openDLQ(ctx, env, "dlq")
	if err != nil {
		return nil, nil, err
	}
	letters, err := d.letters(ctx, sel)
	if err != nil {
		d.close()
		return nil, nil, err
	}
	return d, letters, nil
}

// runDLQReplay publishes the selected dead letters to LIVE_EVENTS again,
// with their original id as Nats-Msg-Id: replaying twice (or a replay racing
// another) stores one copy, since JetStream drops the second as a duplicate
// within the stream's duplicate window. The same dedup means a letter whose
// original change was stored less than LIVE_STREAM_DUPLICATES ago cannot be
// replayed yet: that is reported, and the letter kept. A replayed letter is
// deleted from LIVE_DLQ once its change is stored, unless --keep.
func runDLQReplay(ctx context.Context, env *settings) error {
	d, letters, err := openSelected(ctx, env, "dlq replay")
	if err != nil {
		return err
	}
	defer d.close()
	enc := json.NewEncoder(env.stdout)
	failed := 0
	for _, l := range letters {
		res := d.replay(ctx, l, env.Bool("keep"))
		if res.Result == replayPublishFailure || res.Result == replayNotReplayable {
			failed++
		}
		if err := enc.Encode(res); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("dlq replay: %d of %d dead letters not replayed (see their detail)", failed, len(letters))
	}
	return nil
}

func (d *dlqTool) replay(ctx context.Context, l deadLetter, keep bool) replayResult {
	res := replayResult{DLQSeq: l.DLQSeq, ID: l.DedupID}
	if err := wire.ValidateEventID(l.EventID); err != nil {
		res.Result, res.Detail = replayNotReplayable, "no valid eventId in subject "+l.subject
		return res
	}
	if err := wire.ValidateType(l.Type); err != nil {
		res.Result, res.Detail = replayNotReplayable, "no valid type in subject "+l.subject
		return res
	}
	if res.ID == "" {
		// The original had no id: one derived from its seq still makes a
		// second replay a duplicate.
		res.ID = "replay-seq-" + strconv.FormatUint(l.Seq, 10)
	}
	msg := &nats.Msg{Subject: wire.Subject(l.EventID, l.Type), Header: nats.Header{}, Data: l.data}
	for k, v := range l.header {
		// NATS control headers (Nats-Expected-*, the dead letter's own
		// Nats-Msg-Id) and the dead-letter annotations stay behind.
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if strings.HasPrefix(ck, "Nats-") || strings.HasPrefix(ck, "Live-Dlq-") {
			continue
		}
		msg.Header[k] = append([]string(nil), v...)
	}
	msg.Header.Set(wire.HeaderMsgID, res.ID)
	ack, err := d.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(wire.StreamName))
	if err != nil {
		res.Result, res.Detail = replayPublishFailure, err.Error()
		return res
	}
	res.Seq = ack.Sequence
	switch {
	case !ack.Duplicate:
		res.Result = replayStored
	case l.Seq != 0 && ack.Sequence == l.Seq:
		res.Result = replayOriginalInDup
		res.Detail = "the original change is still within the stream's duplicate window (LIVE_STREAM_DUPLICATES), so JetStream took this for it; replay again once the window has passed"
		return res // keep the letter: nothing was stored
	default:
		res.Result = replayAlreadyStored
	}
	if !keep {
		if err := d.dlq.DeleteMsg(ctx, l.DLQSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			res.Detail = fmt.Sprintf("replayed, but the dead letter was not deleted: %v", err)
		}
	}
	return res
}

// runDLQPurge deletes the selected dead letters after the operator confirms
// on stdin (or with --yes).
func runDLQPurge(ctx context.Context, env *settings) error {
	d, letters, err := openSelected(ctx, env, "dlq purge")
	if err != nil {
		return err
	}
	defer d.close()
	if len(letters) == 0 {
		fmt.Fprintln(env.stdout, "no dead letters to delete")
		return nil
	}
	if !env.Bool("yes") {
		fmt.Fprintf(env.stderr, "delete %d dead letter(s) from %s for good? type yes to confirm: ", len(letters), wire.DLQStreamName)
		if !confirmed(env.stdin) {
			return errors.New("dlq purge: not confirmed; nothing deleted")
		}
	}
	deleted := 0
	for _, l := range letters {
		err := d.dlq.DeleteMsg(ctx, l.DLQSeq)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("dlq purge: deleted %d of %d, then seq %d: %w", deleted, len(letters), l.DLQSeq, err)
		}
		deleted++
	}
	fmt.Fprintf(env.stdout, "deleted %d dead letter(s)\n", deleted)
	return nil
}

// confirmed reads one line and accepts only "yes" (or "y").
func confirmed(r io.Reader) bool {
	if r == nil {
		return false
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "yes", "y":
		return true
	}
	return false
}
