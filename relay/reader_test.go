package relay

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/wire"
)

// TestReaderReopensOverALeftoverConsumer is the regression test for relays
// that stalled about 50 s after a NATS node was lost: a partition reader
// whose delete had failed was re-created under the same name from a newer
// seq, and JetStream refuses to move a consumer's start seq (err_code
// 10012) until the old one's inactive threshold ran out.
func TestReaderReopensOverALeftoverConsumer(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	for range 3 {
		rg.publish(change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{}`})
	}
	r, err := New(rg.partitioned(), Deps{JS: rg.js, Stream: rg.streams})
	if err != nil {
		t.Fatal(err)
	}
	rd := &reader{r: r, name: "relay-test-p0"}
	// The leftover: same name, another start seq, unknown to rd.
	if _, err := rg.js.CreateOrUpdateConsumer(t.Context(), r.streams.Name, jetstream.ConsumerConfig{
		Name: rd.name, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: 1,
		AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute, MemoryStorage: true, Replicas: 1,
	}); err != nil {
		t.Fatal(err)
	}
	if err := rd.open(t.Context(), 3); err != nil {
		t.Fatalf("open over a leftover reader: %v", err)
	}
	defer rd.close()
	info, err := rd.cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.OptStartSeq != 3 {
		t.Fatalf("reader starts at seq %d, want 3", info.Config.OptStartSeq)
	}
}
