package main

// What the dead-letter commands that change LIVE_DLQ share: the selection
// of letters they act on, replay and purge.

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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/wire"
)

// selection is which dead letters a command acts on: one seq, one eventId,
// or all of them; exactly one must be chosen, so a command never acts on
// everything by accident.
type selection struct {
	seq    uint64
	filter string
}

func selectLetters(env *settings, cmd string) (selection, error) {
	eventID, all := env.Flag("event"), env.Bool("all")
	chosen := 0
	var sel selection
	var errs []error
	if _, ok := env.flagReader().Lookup("--seq"); ok {
		chosen++
		var err error
		sel.seq, err = seqFlag(env)
		errs = append(errs, err)
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
