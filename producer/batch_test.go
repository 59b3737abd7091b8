package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// These tests pin what PublishBatch answered while it used nats.go's
// PublishMsgAsync, now that it reads its acks itself (sendWindow).

func batchOf(n int, prefix string) []Change {
	cs := make([]Change, n)
	for i := range cs {
		cs[i] = Change{EventID: fmt.Sprintf("e%d", i%7), Type: wire.TypeVoteUpdated,
			Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), ID: fmt.Sprintf("%s-%d", prefix, i)}
	}
	return cs
}

// One batch over more than one window, alone on its stream: each change
// gets its own seq, in the order sent; the same batch again is answered
// as duplicates with the first seqs, and an id reused for other data is a
// conflict.
func TestPublishBatchGivesEachChangeItsSeqAndFlagsDuplicates(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{})
	cs := batchOf(600, "c")
	res := p.PublishBatch(t.Context(), cs)
	for i, r := range res {
		if r.Err != nil || r.Seq != uint64(i+1) || r.Duplicate || r.ID != cs[i].ID {
			t.Fatalf("PublishBatch()[%d]=%+v, want seq %d, new, id %s", i, r, i+1, cs[i].ID)
		}
	}
	envs, _ := stored(t, js)
	if len(envs) != len(cs) {
		t.Fatalf("stored %d changes, want %d", len(envs), len(cs))
	}
	for i, e := range envs {
		if e.Seq != res[i].Seq || e.ID != cs[i].ID || string(e.Data) != string(cs[i].Data) || e.EventID != cs[i].EventID {
			t.Fatalf("seq %d holds %+v, want change %d (%+v)", e.Seq, e, i, cs[i])
		}
	}
	again := batchOf(600, "c")
	again[17].Data = json.RawMessage(`"other"`)
	res2 := p.PublishBatch(t.Context(), again)
	for i, r := range res2 {
		if i == 17 {
			if !errors.Is(r.Err, ErrConflict) {
				t.Fatalf("PublishBatch() again [17] with other data=%+v, want ErrConflict", r)
			}
			continue
		}
		if r.Err != nil || r.Seq != res[i].Seq || !r.Duplicate {
			t.Fatalf("PublishBatch() again [%d]=%+v, want the duplicate of seq %d", i, r, res[i].Seq)
		}
	}
	if n := len(testutil.ReadAll(t, js, wire.StreamName)); n != len(cs) {
		t.Fatalf("stored %d changes after the retry, want %d", n, len(cs))
	}
}

func TestPublishBatchWithoutAStreamIsUnavailableWithinTheDeadline(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	p := NewPublisher(srv.JS(t), Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	cs := batchOf(3, "n")
	for i, r := range p.PublishBatch(ctx, cs) {
		if !errors.Is(r.Err, ErrUnavailable) || !errors.Is(r.Err, jetstream.ErrNoStreamResponse) || r.ID != cs[i].ID {
			t.Fatalf("PublishBatch()[%d]=%+v, want ErrUnavailable wrapping no stream response, with its id", i, r)
		}
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("PublishBatch() returned after %v, far past its 2s deadline", d)
	}
}

// silentServer runs a server without the stream whose only subscriber to
// the change subjects takes every message and answers none: a stream
// leader that cannot commit.
func silentServer(t *testing.T) *testutil.JetStream {
	t.Helper()
	srv := testutil.RunJetStream(t)
	if _, err := srv.Conn(t).Subscribe(wire.SubjectPrefix+">", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// The ack wait (AttemptTimeout) ends while most of the batch is not sent
// yet: the changes awaiting an ack and the rest are transient, all are
// retried with their ids, and each is stored once when a stream answers.
func TestPublishBatchRetriesEveryChangeNotAcknowledgedInTime(t *testing.T) {
	t.Parallel()
	srv := silentServer(t)
	js := srv.JS(t)
	reg := newMetrics(t, prometheus.NewRegistry())
	p := NewPublisher(js, Options{AttemptTimeout: 300 * time.Millisecond, MaxInFlight: 4, Metrics: reg})
	cs := batchOf(10, "t")
	done := make(chan []BatchResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- p.PublishBatch(ctx, cs)
	}()
	testutil.Eventually(t, 20*time.Second, func() bool {
		return promtest.ToFloat64(reg.retries) >= float64(len(cs))
	}, "the batch was not retried whole")
	ensureStream(t, js)
	res := <-done
	envs, _ := stored(t, js)
	if len(envs) != len(cs) {
		t.Fatalf("stored %d changes, want %d", len(envs), len(cs))
	}
	bySeq := map[uint64]wire.Envelope{}
	for _, e := range envs {
		bySeq[e.Seq] = e
	}
	for i, r := range res {
		e, ok := bySeq[r.Seq]
		if r.Err != nil || !ok || e.ID != cs[i].ID || string(e.Data) != string(cs[i].Data) {
			t.Fatalf("PublishBatch()[%d]=%+v, stored %+v", i, r, e)
		}
	}
}

// The caller's context ends while acks are awaited: every change is
// answered at once as unavailable (deadline exceeded) with its id, not
// after the ack wait, and publishing the batch again with those ids
// stores each once.
func TestPublishBatchAnswersAtTheDeadlineWhileAcksAreAwaited(t *testing.T) {
	t.Parallel()
	srv := silentServer(t)
	js := srv.JS(t)
	p := NewPublisher(js, Options{AttemptTimeout: 20 * time.Second})
	cs := batchOf(5, "d")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	res := p.PublishBatch(ctx, cs)
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("PublishBatch() returned after %v, want soon after its 1s deadline", d)
	}
	for i, r := range res {
		if !errors.Is(r.Err, ErrUnavailable) || !errors.Is(r.Err, context.DeadlineExceeded) || r.ID != cs[i].ID {
			t.Fatalf("PublishBatch()[%d]=%+v, want ErrUnavailable wrapping the deadline, with its id", i, r)
		}
	}
	ensureStream(t, js)
	for i, r := range p.PublishBatch(t.Context(), cs) {
		if r.Err != nil || r.Seq != uint64(i+1) {
			t.Fatalf("PublishBatch() again [%d]=%+v, want seq %d", i, r, i+1)
		}
	}
}
