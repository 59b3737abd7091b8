package relay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// tenChanges are the normal changes published behind a poisonous one.
func tenChanges() []change {
	var cs []change
	for i := range 10 {
		cs = append(cs, change{eventID: "x" + strconv.Itoa(i%3), typ: wire.TypeVoteUpdated, data: `{"i":` + strconv.Itoa(i) + `}`})
	}
	return cs
}

// TestRelaySurvivesARawMessageWithNatsExpectedStream is issue 8 item 1 as
// reported: a body that is not JSON, published with Nats-Expected-Stream:
// LIVE_EVENTS, used to make every dead letter attempt fail (LIVE_DLQ answers
// err_code 10060) inside the only fetch loop, so nothing after it moved.
func TestRelaySurvivesARawMessageWithNatsExpectedStream(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	raw := &nats.Msg{Subject: "live.events.x1.vote.updated", Header: nats.Header{}, Data: []byte("not json at all")}
	raw.Header.Set("Nats-Expected-Stream", wire.StreamName)
	rawSeq := rg.publishRaw(raw)
	_, ids := rg.publish(tenChanges()...)
	run := rg.start(rg.config(), nil)
	rg.waitIDs(30*time.Second, ids)
	rg.waitSettled(20 * time.Second)
	if err := run.relay.Ready(t.Context()); err != nil {
		t.Fatalf("Ready()=%v after delivering everything, want nil", err)
	}
	dl := rg.dlq()
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d := dl[0]
	if got := d.Header.Get("Nats-Expected-Stream"); got != "" {
		t.Errorf("dead letter kept Nats-Expected-Stream=%q, want the control header stripped", got)
	}
	if got := d.Header.Get(wire.HeaderDLQOrigPrefix + "Nats-Expected-Stream"); got != wire.StreamName {
		t.Errorf("dead letter %sNats-Expected-Stream=%q, want %q", wire.HeaderDLQOrigPrefix, got, wire.StreamName)
	}
	if got := d.Header.Get(wire.HeaderDLQSeq); got != strconv.FormatUint(rawSeq, 10) {
		t.Errorf("dead letter seq header %q, want %d", got, rawSeq)
	}
	if n := testutil.MetricSum(t, run.reg, "liveupdates_relay_dead_lettered_total", "reason", reasonInvalid); n != 1 {
		t.Errorf("dead_lettered_total{reason=invalid}=%v, want 1", n)
	}
}

// TestRelayTerminatesAChangeTheDeadLetterStreamRefuses: a JetStream 4xx
// answer to a dead letter (here: the letter, with its headers, is over
// LIVE_DLQ's max message size) is final: the change is terminated and
// counted, not retried forever.
func TestRelayTerminatesAChangeTheDeadLetterStreamRefuses(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.streams.MaxMsgSize = 512
	if _, _, err := stream.Ensure(t.Context(), rg.js, rg.streams); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	// Fits LIVE_EVENTS; with the dead-letter headers it does not fit LIVE_DLQ.
	rg.publishRaw(&nats.Msg{Subject: "live.events.x1.vote.updated", Data: []byte(strings.Repeat("z", 450))})
	_, ids := rg.publish(tenChanges()...)
	run := rg.start(rg.config(), nil)
	rg.waitIDs(30*time.Second, ids)
	rg.waitSettled(20 * time.Second)
	if n := testutil.MetricSum(t, run.reg, "liveupdates_relay_dead_letters_refused_total"); n != 1 {
		t.Errorf("dead_letters_refused_total=%v, want 1", n)
	}
	if n := len(rg.dlq()); n != 0 {
		t.Errorf("%d dead letters, want none (LIVE_DLQ refused it)", n)
	}
	if err := run.relay.Ready(t.Context()); err != nil {
		t.Fatalf("Ready()=%v, want nil", err)
	}
}

// TestRelayReadinessFailsWhileStalled: while a held change cannot be
// dead-lettered (LIVE_DLQ is gone) the changes behind it still reach
// Pusher, and readiness fails once nothing has moved for StallAfter; it
// recovers when the dead letter is stored.
func TestRelayReadinessFailsWhileStalled(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	cfg := rg.config()
	cfg.StallAfter = 300 * time.Millisecond
	run := rg.start(cfg, nil)
	testutil.EventuallyErr(t, 20*time.Second, func() error { return run.relay.Ready(t.Context()) })
	if err := rg.js.DeleteStream(t.Context(), wire.DLQStreamName); err != nil {
		t.Fatalf("delete %s: %v", wire.DLQStreamName, err)
	}
	rg.publishRaw(&nats.Msg{Subject: "live.events.x1.vote.updated", Data: []byte("not json")})
	_, ids := rg.publish(tenChanges()...)
	rg.waitIDs(30*time.Second, ids)
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		if err := run.relay.Ready(t.Context()); !errors.Is(err, ErrStalled) {
			return fmt.Errorf("Ready()=%v, want ErrStalled", err)
		}
		return nil
	})
	if _, _, err := stream.Ensure(t.Context(), rg.js, rg.streams.DLQ()); err != nil {
		t.Fatalf("ensure %s: %v", wire.DLQStreamName, err)
	}
	rg.waitSettled(15 * time.Second)
	testutil.EventuallyErr(t, 20*time.Second, func() error { return run.relay.Ready(t.Context()) })
	if n := len(rg.dlq()); n != 1 {
		t.Fatalf("%d dead letters, want 1", n)
	}
}
