package poller

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

func TestPublishedChangesArePolledInOrder(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":1}`)
	testutil.PublishChange(t, js, "e2", "phase.changed", `{}`)
	s3 := testutil.PublishChange(t, js, "e1", "blocks.updated", `{"n":2}`)
	h := startPoller(t, srv, Config{})
	s4 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":3}`)
	h.waitApplied(s4)

	all := decodeUpdates(t, h.get("/v1/events/e1/updates"))
	if got, want := seqs(all.Events), []uint64{s1, s3, s4}; !slices.Equal(got, want) {
		t.Fatalf("events without since=%v, want %v", got, want)
	}
	if all.Cursor != strconv.FormatUint(s4, 10) {
		t.Fatalf("cursor=%q, want %d", all.Cursor, s4)
	}
	e := all.Events[1]
	if e.EventID != "e1" || e.Type != "blocks.updated" || string(e.Data) != `{"n":2}` || e.ID == "" || e.At.IsZero() {
		t.Fatalf("envelope=%+v, want e1 blocks.updated with data and id", e)
	}
	after := decodeUpdates(t, h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", s1)))
	if got, want := seqs(after.Events), []uint64{s3, s4}; !slices.Equal(got, want) || after.Reset {
		t.Fatalf("events since %d=%v reset=%v, want %v", s1, got, after.Reset, want)
	}
	none := decodeUpdates(t, h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", s4)))
	if len(none.Events) != 0 || none.Cursor != strconv.FormatUint(s4, 10) {
		t.Fatalf("since newest=%+v, want no events and cursor %d", none, s4)
	}
	unseen := decodeUpdates(t, h.get("/v1/events/never-seen/updates?since=0"))
	if unseen.Reset || len(unseen.Events) != 0 || unseen.Cursor != strconv.FormatUint(s4, 10) {
		t.Fatalf("never-seen eventId=%+v, want nothing new with cursor %d", unseen, s4)
	}
	testutil.CollectAndLint(t, h.reg, "liveupdates_poller_")
}

func TestMatchingETagGets304UntilTheEventChanges(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{})
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(s1)
	first := h.get("/v1/events/e1/updates?since=0")
	etag := first.header.Get("ETag")
	if etag != fmt.Sprintf("%q", strconv.FormatUint(s1, 10)) {
		t.Fatalf("ETag=%q, want the newest seq %d", etag, s1)
	}
	if cc := first.header.Get("Cache-Control"); !strings.Contains(cc, "private") || !strings.Contains(cc, "no-cache") {
		t.Fatalf("Cache-Control=%q, want private, no-cache", cc)
	}
	other := testutil.PublishChange(t, js, "e2", "vote.updated", `{}`)
	h.waitApplied(other)
	r := h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", s1), "If-None-Match", etag)
	if r.status != http.StatusNotModified || len(r.body) != 0 || r.header.Get("ETag") != etag {
		t.Fatalf("conditional poll=%d %q etag %q, want 304 with no body and the same ETag", r.status, r.body, r.header.Get("ETag"))
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_answers_total", "route", "updates", "outcome", "not_modified"); got != 1 {
		t.Fatalf("not_modified count=%v, want 1", got)
	}
	s3 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"x":1}`)
	h.waitApplied(s3)
	u := decodeUpdates(t, h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", s1), "If-None-Match", etag))
	if got := seqs(u.Events); !slices.Equal(got, []uint64{s3}) {
		t.Fatalf("after a change events=%v, want [%d]", got, s3)
	}
}

func TestCursorOlderThanTheRingIsAnsweredFromTheStream(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{RingSize: 2})
	var s []uint64
	for i := range 4 {
		s = append(s, testutil.PublishChange(t, js, "e1", "vote.updated", fmt.Sprintf(`{"i":%d}`, i)))
	}
	h.waitApplied(s[3])
	// s[1] was dropped from the ring: it comes from the stream, joined
	// with the ring's s[2] and s[3], and the usual cursor.
	r := decodeUpdates(t, h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", s[0])))
	if r.Reset || r.Cursor != strconv.FormatUint(s[3], 10) || !slices.Equal(seqs(r.Events), s[1:]) {
		t.Fatalf("since %d with ring %v=%+v, want events %v with cursor %d", s[0], s[2:], r, s[1:], s[3])
	}
	if r.Events[0].Type != "vote.updated" || string(r.Events[0].Data) != `{"i":1}` {
		t.Fatalf("change from the stream=%+v, want the stored one", r.Events[0])
	}
	// The client saw s[1], the newest dropped change: the ring vouches for the rest.
	ok := decodeUpdates(t, h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", s[1])))
	if ok.Reset || !slices.Equal(seqs(ok.Events), s[2:]) {
		t.Fatalf("since %d=%+v, want events %v", s[1], ok, s[2:])
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_answers_total", "route", "updates", "outcome", "deep_resume"); got != 1 {
		t.Fatalf("deep_resume count=%v, want 1", got)
	}
}

func TestLongPollIsWokenByAPublish(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{})
	cursor := h.p.idx.appliedSeq()
	got := getAsync(t.Context(), fmt.Sprintf("%s/v1/events/e1/updates?since=%d&wait=20", h.url, cursor))
	testutil.Eventually(t, 30*time.Second, func() bool {
		return testutil.MetricSum(t, h.reg, "liveupdates_poller_long_polls_waiting") == 1
	}, "long-poll waiting")
	testutil.PublishChange(t, js, "other", "vote.updated", `{}`) // must not wake e1's waiter
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{"woke":true}`)
	var r reply
	select {
	case a := <-got:
		r = a.done(t)
	case <-time.After(30 * time.Second):
		t.Fatal("long-poll not woken within 10s of a publish")
	}
	u := decodeUpdates(t, r)
	if !slices.Equal(seqs(u.Events), []uint64{s}) {
		t.Fatalf("woken long-poll events=%v, want [%d]", seqs(u.Events), s)
	}
	if n := testutil.MetricSum(t, h.reg, "liveupdates_poller_long_polls_waiting"); n != 0 {
		t.Fatalf("waiting after answer=%v, want 0", n)
	}
}

func TestLongPollTimesOutWithNothingNew(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	h := startPoller(t, srv, Config{})
	start := time.Now()
	u := decodeUpdates(t, h.get("/v1/events/e1/updates?since=0&wait=1"))
	if len(u.Events) != 0 || u.Reset {
		t.Fatalf("timed-out long-poll=%+v, want nothing new", u)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("long-poll answered after %v, want it held for wait=1s", el)
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_answers_total", "route", "updates", "outcome", "long_poll_timeout"); got != 1 {
		t.Fatalf("timeout count=%v, want 1", got)
	}
}

func TestDrainEndsLongPollsWithANormalAnswer(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	h := startPoller(t, srv, Config{})
	got := getAsync(t.Context(), h.url+"/v1/events/e1/updates?since=0&wait=30")
	testutil.Eventually(t, 30*time.Second, func() bool {
		return testutil.MetricSum(t, h.reg, "liveupdates_poller_long_polls_waiting") == 1
	}, "long-poll waiting")
	h.p.Drain()
	select {
	case a := <-got:
		if u := decodeUpdates(t, a.done(t)); u.Reset || len(u.Events) != 0 {
			t.Fatalf("drained long-poll=%+v, want a normal empty answer", u)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Drain did not end the long-poll")
	}
}

func TestCursorAheadOfTheReplicaWaitsForIt(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{BehindWait: time.Minute})
	ahead := h.p.idx.appliedSeq() + 1
	got := getAsync(t.Context(), fmt.Sprintf("%s/v1/events/e1/updates?since=%d", h.url, ahead))
	// The request must not be answered before the replica reaches the
	// cursor; the publish lets it.
	select {
	case a := <-got:
		t.Fatalf("answered %d %s (%v) before the replica reached the cursor", a.status, a.body, a.err)
	case <-time.After(100 * time.Millisecond):
	}
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	u := decodeUpdates(t, (<-got).done(t))
	if u.Reset || len(u.Events) != 0 || u.Cursor != strconv.FormatUint(s, 10) {
		t.Fatalf("caught-up answer=%+v, want nothing new (the client saw %d) with cursor %d", u, s, s)
	}
}

func TestCursorFromTheFutureIsResetOnceCaughtUp(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{BehindWait: 50 * time.Millisecond})
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(s)
	u := decodeUpdates(t, h.get("/v1/events/e1/updates?since=999999"))
	if !u.Reset || u.Cursor != strconv.FormatUint(s, 10) {
		t.Fatalf("cursor from the future=%+v, want reset to %d", u, s)
	}
}

func TestTwoPollersGiveIdenticalAnswers(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	var last uint64
	for i := range 20 {
		last = testutil.PublishChange(t, js, fmt.Sprintf("e%d", i%3), "vote.updated", fmt.Sprintf(`{"i":%d}`, i))
	}
	a := startPoller(t, srv, Config{})
	b := startPoller(t, srv, Config{})
	for _, h := range []*harness{a, b} {
		h.waitApplied(last)
	}
	for _, q := range []string{"", "?since=0", "?since=5", "?since=" + strconv.FormatUint(last, 10)} {
		ra, rb := a.get("/v1/events/e1/updates"+q), b.get("/v1/events/e1/updates"+q)
		if ra.status != rb.status || string(ra.body) != string(rb.body) || ra.header.Get("ETag") != rb.header.Get("ETag") {
			t.Fatalf("query %q: replica A %d %s %s, B %d %s %s, want identical", q, ra.status, ra.header.Get("ETag"), ra.body, rb.status, rb.header.Get("ETag"), rb.body)
		}
	}
}

func TestRestartedPollerKeepsCursorsValid(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	a := startPoller(t, srv, Config{})
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	testutil.PublishChange(t, js, "quiet", "vote.updated", `{}`)
	a.waitApplied(s1 + 1)
	e1 := decodeUpdates(t, a.get("/v1/events/e1/updates?since=0"))
	quiet := decodeUpdates(t, a.get("/v1/events/quiet/updates?since=0"))
	a.stop()
	s3 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"after":"restart"}`)
	b := startPoller(t, srv, Config{})
	b.waitApplied(s3)
	u := decodeUpdates(t, b.get("/v1/events/e1/updates?since="+e1.Cursor))
	if u.Reset || !slices.Equal(seqs(u.Events), []uint64{s3}) {
		t.Fatalf("after restart e1 since %s=%+v, want [%d]", e1.Cursor, u, s3)
	}
	q := decodeUpdates(t, b.get("/v1/events/quiet/updates?since="+quiet.Cursor))
	if q.Reset || len(q.Events) != 0 {
		t.Fatalf("after restart quiet since %s=%+v, want nothing new", quiet.Cursor, q)
	}
}

func TestConsumerResumesWithoutAGapAfterAnOutage(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{})
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":1}`)
	h.waitApplied(s1)
	srv.Stop()
	srv.Start()
	var s []uint64
	testutil.EventuallyErr(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := js.Stream(ctx, wire.StreamName)
		return err
	})
	for i := range 3 {
		s = append(s, testutil.PublishChange(t, js, "e1", "vote.updated", fmt.Sprintf(`{"n":%d}`, i+2)))
	}
	h.waitApplied(s[2])
	u := decodeUpdates(t, h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", s1)))
	if !slices.Equal(seqs(u.Events), s) {
		t.Fatalf("after outage events=%v, want %v", seqs(u.Events), s)
	}
}

func TestServerSentEventsResumeFromLastEventID(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{Heartbeat: time.Second})
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":1}`)
	s2 := testutil.PublishChange(t, js, "e1", "phase.changed", `{"n":2}`)
	h.waitApplied(s2)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/v1/events/e1/stream", nil)
	req.Header.Set("Last-Event-ID", strconv.FormatUint(s1, 10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET stream: %v", err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type=%q, want text/event-stream", ct)
	}
	events := make(chan map[string]string, 8)
	go readSSE(res, events)
	want := func(seq uint64, typ string) {
		t.Helper()
		select {
		case ev := <-events:
			var env wire.Envelope
			if err := json.Unmarshal([]byte(ev["data"]), &env); err != nil {
				t.Fatalf("data %q: %v", ev["data"], err)
			}
			if ev["id"] != strconv.FormatUint(seq, 10) || ev["event"] != typ || env.Seq != seq {
				t.Fatalf("event=%v, want id %d event %s", ev, seq, typ)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no SSE event %d within 10s", seq)
		}
	}
	want(s2, "phase.changed")
	s3 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":3}`)
	want(s3, "vote.updated")
	// A heartbeat comment arrives while nothing changes.
	select {
	case ev := <-events:
		if ev["comment"] != "heartbeat" {
			t.Fatalf("idle stream sent %v, want a heartbeat comment", ev)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no heartbeat within 10s")
	}
}

// readSSE sends each SSE block (fields by name; comments as "comment").
func readSSE(res *http.Response, out chan<- map[string]string) {
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	ev := map[string]string{}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(ev) > 0 && ev["retry"] == "" {
				out <- ev
			}
			ev = map[string]string{}
			continue
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			ev["comment"] = strings.TrimSpace(c)
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		ev[k] = strings.TrimPrefix(v, " ")
	}
	close(out)
}

func TestServerSentEventsResetAnOldCursor(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{RingSize: 1})
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	s2 := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	s3 := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(s3)
	// The stream no longer holds s2 (as after its age limit): only a reset
	// is honest.
	st, err := js.Stream(t.Context(), testStream().WithDefaults().Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context(), jetstream.WithPurgeSequence(s3)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/events/e1/stream?since=%d", h.url, s1), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET stream: %v", err)
	}
	defer res.Body.Close()
	events := make(chan map[string]string, 8)
	go readSSE(res, events)
	select {
	case ev := <-events:
		if ev["event"] != "reset" || ev["id"] != strconv.FormatUint(s3, 10) || !strings.Contains(ev["data"], `"reset":true`) {
			t.Fatalf("first event=%v, want a reset to %d (s2=%d was dropped)", ev, s3, s2)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no reset event")
	}
}

func TestMessageBySeqFromMemoryAndFromTheStream(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{RingSize: 1})
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"big":"ref"}`)
	s2 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":2}`)
	other := testutil.PublishChange(t, js, "secret-event", "vote.updated", `{"private":true}`)
	h.waitApplied(other)
	for _, tc := range []struct {
		name   string
		path   string
		status int
		data   string
	}{
		{"a held change is served from memory", fmt.Sprintf("/v1/events/e1/messages/%d", s2), 200, `{"n":2}`},
		{"a dropped change is fetched from the stream", fmt.Sprintf("/v1/events/e1/messages/%d", s1), 200, `{"big":"ref"}`},
		{"another eventId's change is not found", fmt.Sprintf("/v1/events/e1/messages/%d", other), 404, ""},
		{"a seq beyond the stream is not found", "/v1/events/e1/messages/999999", 404, ""},
		{"seq 0 is a bad request", "/v1/events/e1/messages/0", 400, ""},
		{"a non-numeric seq is a bad request", "/v1/events/e1/messages/abc", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.get(tc.path)
			if r.status != tc.status {
				t.Fatalf("GET %s=%d %s, want %d", tc.path, r.status, r.body, tc.status)
			}
			if tc.status != 200 {
				if strings.Contains(string(r.body), "private") {
					t.Fatalf("error body leaks another eventId's data: %s", r.body)
				}
				return
			}
			var env wire.Envelope
			if err := json.Unmarshal(r.body, &env); err != nil || string(env.Data) != tc.data || env.EventID != "e1" {
				t.Fatalf("envelope=%s err=%v, want data %s", r.body, err, tc.data)
			}
		})
	}
}

func TestTokensGuardEachEvent(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	secret := []byte("0123456789abcdef0123")
	h := startPoller(t, srv, Config{Secret: secret})
	now := time.Now()
	tokA, _ := polltoken.Mint(secret, "eventA", time.Hour, now)
	expired, _ := polltoken.Mint(secret, "eventA", time.Second, now.Add(-time.Hour))
	forged, _ := polltoken.Mint([]byte("another-secret-of-16"), "eventA", time.Hour, now)
	for _, tc := range []struct {
		name   string
		path   string
		hdr    []string
		status int
		code   string
	}{
		{"a token for its event reads it", "/v1/events/eventA/updates?token=" + tokA, nil, 200, ""},
		{"a bearer token works like the query", "/v1/events/eventA/updates", []string{"Authorization", "Bearer " + tokA}, 200, ""},
		{"a token for event A is refused on event B", "/v1/events/eventB/updates?token=" + tokA, nil, 403, wire.CodeForbidden},
		{"a token for event A is refused on B's stream", "/v1/events/eventB/stream?token=" + tokA, nil, 403, wire.CodeForbidden},
		{"a token for event A is refused on B's messages", "/v1/events/eventB/messages/1?token=" + tokA, nil, 403, wire.CodeForbidden},
		{"no token is unauthorized", "/v1/events/eventA/updates", nil, 401, wire.CodeUnauthorized},
		{"an expired token is unauthorized", "/v1/events/eventA/updates?token=" + expired, nil, 401, wire.CodeUnauthorized},
		{"a forged token is unauthorized", "/v1/events/eventA/updates?token=" + forged, nil, 401, wire.CodeUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.get(tc.path, tc.hdr...)
			if r.status != tc.status {
				t.Fatalf("GET %s=%d %s, want %d", tc.path, r.status, r.body, tc.status)
			}
			if tc.code != "" {
				var eb wire.ErrorBody
				if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error.Code != tc.code {
					t.Fatalf("error body=%s, want code %s", r.body, tc.code)
				}
			}
		})
	}
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	h := startPoller(t, srv, Config{})
	for _, tc := range []struct {
		name, path, code string
	}{
		{"an eventId with a dot", "/v1/events/e.1/updates", wire.CodeInvalidEventID},
		{"an eventId too long", "/v1/events/" + strings.Repeat("a", 129) + "/updates", wire.CodeInvalidEventID},
		{"a negative since", "/v1/events/e1/updates?since=-1", wire.CodeInvalidCursor},
		{"a since that is not a number", "/v1/events/e1/updates?since=abc", wire.CodeInvalidCursor},
		{"a since beyond uint64", "/v1/events/e1/updates?since=99999999999999999999", wire.CodeInvalidCursor},
		{"since given twice", "/v1/events/e1/updates?since=1&since=2", wire.CodeInvalidCursor},
		{"a fractional wait", "/v1/events/e1/updates?wait=1.5", wire.CodeInvalidRequest},
		{"a bad Last-Event-ID", "/v1/events/e1/stream?since=x", wire.CodeInvalidCursor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.get(tc.path)
			var eb wire.ErrorBody
			if r.status != 400 || json.Unmarshal(r.body, &eb) != nil || eb.Error.Code != tc.code || eb.Error.Message == "" {
				t.Fatalf("GET %s=%d %s, want 400 %s with a message", tc.path, r.status, r.body, tc.code)
			}
		})
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.url+"/v1/events/e1/updates", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST=%d, want 405", res.StatusCode)
	}
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	h := startPoller(t, srv, Config{Rate: 0.5, Burst: 2})
	for i := range 2 {
		if r := h.get("/v1/events/e1/updates"); r.status != 200 {
			t.Fatalf("request %d=%d, want 200 within the burst", i, r.status)
		}
	}
	r := h.get("/v1/events/e1/updates")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the burst=%d Retry-After %q, want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

func TestCORSForConfiguredOrigins(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	h := startPoller(t, srv, Config{CORSOrigins: []string{"https://app.example"}})
	opt := func(origin string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodOptions, h.url+"/v1/events/e1/updates", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := opt("https://app.example"); res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "If-None-Match") {
		t.Fatalf("allowed preflight=%d %v, want 204 with CORS headers", res.StatusCode, res.Header)
	}
	if res := opt("https://evil.example"); res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign preflight=%d %v, want 403 without CORS headers", res.StatusCode, res.Header)
	}
	r := h.get("/v1/events/e1/updates", "Origin", "https://app.example")
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("GET CORS headers=%v, want origin allowed and ETag exposed", r.header)
	}
}

func TestNotReadyBeforeReplay(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	p, err := New(Config{}, Deps{JS: srv.JS(t), Stream: testStream()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(t.Context()); err == nil {
		t.Fatal("Ready()=nil before Run, want ErrNotReady")
	}
	mux := http.NewServeMux()
	p.Register(mux)
	rec := newRecorder()
	mux.ServeHTTP(rec, mustRequest(t, "/v1/events/e1/updates"))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("before replay=%d, want 503 with Retry-After", rec.Code)
	}
}

// Poll answers bring their own Date (formatted once a second, not by
// net/http per response): present, in the HTTP format, and current.
func TestPollAnswersCarryACurrentDate(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h := startPoller(t, srv, Config{})
	h.waitApplied(s)
	ok := h.get("/v1/events/e1/updates")
	notModified := h.get("/v1/events/e1/updates", "If-None-Match", ok.header.Get("ETag"))
	if ok.status != http.StatusOK || notModified.status != http.StatusNotModified {
		t.Fatalf("statuses %d, %d, want 200 then 304", ok.status, notModified.status)
	}
	for _, r := range []reply{ok, notModified} {
		d, err := http.ParseTime(r.header.Get("Date"))
		if err != nil || len(r.header["Date"]) != 1 {
			t.Fatalf("%d answer Date=%q (%v), want one HTTP date", r.status, r.header["Date"], err)
		}
		if age := time.Since(d); age < -2*time.Second || age > time.Minute {
			t.Fatalf("%d answer Date=%v, %v from now", r.status, d, age)
		}
	}
	now := time.Now()
	if a, b := httpDate(now), httpDate(now); a != b || a != now.UTC().Format(http.TimeFormat) {
		t.Fatalf("httpDate=%q, %q, want %q", a, b, now.UTC().Format(http.TimeFormat))
	}
	if got, want := httpDate(now.Add(time.Second)), now.Add(time.Second).UTC().Format(http.TimeFormat); got != want {
		t.Fatalf("httpDate a second later=%q, want %q", got, want)
	}
}
