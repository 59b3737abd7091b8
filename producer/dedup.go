package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/wire"
)

// This file tells a retry from a conflict: JetStream answers "duplicate" for
// any message whose dedup id it holds, whatever its content.

// checkDuplicate reads back the change JetStream already stored under m's
// dedup id (seq) and reports ErrConflict when it is not the same change: a
// different type or data under the same id is a client bug, never a retry,
// and answering it as a duplicate would drop the new change silently. A
// change stored without a body hash is compared by subject and data.
// When the stored change cannot be read (gone from the stream, or JetStream
// busy until deadline or ctx ends) it reports ErrUnavailable: nothing says
// the change is the stored one, and a 2xx would drop it silently if it is
// not; the caller retries with the same id.
func (p *Publisher) checkDuplicate(ctx context.Context, m *nats.Msg, seq uint64, deadline time.Time) error {
	hash := m.Header.Get(wire.HeaderBodyHash)
	if hash == "" {
		return nil
	}
	// Read like a publish is sent: a busy leader (a timeout, no responders
	// during an election) is retried until the call's deadline, so a
	// loaded cluster does not turn a plain retry into a 503.
	var got *nats.Msg
	var err error
	for b := p.newBackoff(); ; {
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, p.opts.AttemptTimeout)
		got, err = p.leaderGet(actx, seq)
		cancel()
		if err != nil && isTransient(err) {
			p.failed(sent)
		}
		if err == nil || !isTransient(err) || !b.Wait(ctx, deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%w: id %s was stored before (seq %d), but reading it back to compare failed: %w",
			ErrUnavailable, m.Header.Get(wire.HeaderID), seq, err)
	}
	same := got.Header.Get(wire.HeaderBodyHash) == hash
	if got.Header.Get(wire.HeaderBodyHash) == "" {
		same = got.Subject == m.Subject && bytes.Equal(got.Data, m.Data)
	}
	if same {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConflict, &wire.InputError{Code: wire.CodeIdempotencyConflict, Err: ErrConflict,
		Msg: fmt.Sprintf("id %s was stored before (seq %d) with another type or data, so this change was not stored; give a new change a new id",
			m.Header.Get(wire.HeaderID), seq)})
}

// leaderGet reads the message at seq of wire.StreamName from the stream
// leader with the JetStream API. Not a direct get (jetstream's GetMsg on a
// stream that allows direct reads): any replica may answer one, and a
// lagging follower's "not found" would pass for the stored change.
func (p *Publisher) leaderGet(ctx context.Context, seq uint64) (*nats.Msg, error) {
	req, err := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	if err != nil {
		return nil, fmt.Errorf("encode msg get of seq %d: %w", seq, err)
	}
	msg, err := p.conn.RequestWithContext(ctx, p.msgGetSubject, req)
	if err != nil {
		return nil, fmt.Errorf("msg get seq %d of %s: %w", seq, wire.StreamName, err)
	}
	var resp struct {
		Message *struct {
			Subject string `json:"subject"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("msg get seq %d of %s: decode the answer: %w", seq, wire.StreamName, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("msg get seq %d of %s: %w", seq, wire.StreamName, resp.Error)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("msg get seq %d of %s: no message and no error in the answer", seq, wire.StreamName)
	}
	got := &nats.Msg{Subject: resp.Message.Subject, Data: resp.Message.Data}
	if len(resp.Message.Header) > 0 {
		if got.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("msg get seq %d of %s: decode headers: %w", seq, wire.StreamName, err)
		}
	}
	return got, nil
}
