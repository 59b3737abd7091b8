package relay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// A relay whose NATS server stops serving it (here: the server lost its
// streams; in the cluster suite: the node was cut off from its peers) moves
// its connection to another server of its pool and relays from there, in
// both modes. Without the move it fetched (or renewed leases) against the
// same server forever and nothing reached Pusher.
func TestRelayLeavesAServerThatCannotServe(t *testing.T) {
	t.Parallel()
	for _, partitions := range []int{0, 4} {
		t.Run(fmt.Sprintf("partitions=%d", partitions), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, pushercompat.Options{}) // the healthy server
			stuck := testutil.RunJetStream(t)
			cfg := r.config()
			cfg.Partitions = partitions
			cfg.LeaseTTL = time.Second
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if partitions > 0 {
				// The healthy server has the buckets, as the nodes of a
				// cluster share them.
				rl, err := New(cfg, Deps{JS: r.js, Stream: r.streams})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := rl.setUpPartitions(ctx); err != nil {
					t.Fatal(err)
				}
			}
			nc, err := nats.Connect(stuck.URL()+","+r.nats.URL(), nats.DontRandomize(),
				nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			t.Cleanup(nc.Close)
			if got := nc.ConnectedUrl(); got != stuck.URL() {
				t.Fatalf("connected to %s, want %s first", got, stuck.URL())
			}
			run := r.start(cfg, mustJS(t, nc))
			if partitions > 0 {
				r.waitOwned(run, float64(partitions))
			} else {
				sjs := stuck.JS(t)
				testutil.EventuallyErr(t, 20*time.Second, func() error {
					_, err := sjs.Consumer(ctx, wire.StreamName, Consumer)
					return err
				})
			}
			// The stuck server loses every stream: fetches, lease renewals
			// and announcements fail there from now on.
			sjs := stuck.JS(t)
			for name := range sjs.StreamNames(ctx).Name() {
				if err := sjs.DeleteStream(ctx, name); err != nil {
					t.Fatalf("delete stream %s: %v", name, err)
				}
			}
			_, ids := r.publish(change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `1`})
			r.waitIDs(30*time.Second, ids)
			if got := nc.ConnectedUrl(); got != r.nats.URL() {
				t.Fatalf("relay connected to %s, want the healthy %s", got, r.nats.URL())
			}
		})
	}
}
