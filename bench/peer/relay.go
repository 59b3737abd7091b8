package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

// relay measures CPU per relayed change: `liveupdates api` stores a backlog
// on a standalone nats-server, then a separate `liveupdates relay` process
// forwards it to a sink that answers like Pusher's HTTP API; its CPU time
// over the drain, divided by the changes, is the figure (the nats-server
// side is not in it). Not dev: dev runs a relay of its own (to its own
// Pusher-compatible server), which would drain the backlog first.
func (b *bench) relay(ctx context.Context, round int) error {
	ns, err := b.startNATS(ctx)
	if err != nil {
		return err
	}
	defer ns.stop()
	api, err := b.startAPI(ctx, ns.natsURL)
	if err != nil {
		return err
	}
	_, err = b.runLoad(ctx, "-mode", "seed", "-base", api.base, "-api-key", apiKey, "-count", strconv.Itoa(b.o.relayChanges))
	api.stop()
	if err != nil {
		return err
	}
	// drained closes when the sink has every change.
	var got atomic.Int64
	drained := make(chan struct{})
	var once sync.Once
	sink := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Batch []json.RawMessage `json:"batch"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if got.Add(int64(len(body.Batch))) >= int64(b.o.relayChanges) {
			once.Do(func() { close(drained) })
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = sink.Serve(l) }()
	defer sink.Close()
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	relay := &proc{cmd: exec.Command(b.ours, "relay")}
	relay.cmd.Env = append(os.Environ(),
		"LIVE_NATS_URL="+ns.natsURL,
		"LIVE_HTTP_ADDR="+httpAddr,
		"LIVE_LOG_LEVEL=warn",
		"LIVE_RELAY_COALESCE=off", // one change in, one Pusher event out
		"PUSHER_APP_ID=1", "PUSHER_KEY=key", "PUSHER_SECRET=secret",
		"PUSHER_HOST="+l.Addr().String(), "PUSHER_SECURE=false",
	)
	b.logf("round %d: relay drains %d changes", round+1, b.o.relayChanges)
	t0 := time.Now()
	if err := relay.begin("relay"); err != nil {
		return err
	}
	defer relay.stop()
	select {
	case <-drained:
	case <-relay.exited:
		return fmt.Errorf("relay exited (%v):\n%s", relay.err, tail(relay.logs.String(), 2000))
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("relay forwarded %d of %d changes in 2 minutes:\n%s", got.Load(), b.o.relayChanges, tail(relay.logs.String(), 2000))
	}
	el := time.Since(t0)
	cpu, err := measure.ProcCPU(relay.pid())
	if err != nil {
		return err
	}
	res, _ := json.Marshal(map[string]any{
		"changes": got.Load(), "seconds": el.Seconds(), "cpu_s": cpu.Seconds(),
		"cpu_us_per_change": cpu.Seconds() * 1e6 / float64(got.Load()),
	})
	b.logf("  %s", res)
	b.keep("relay/ours", res)
	return nil
}
