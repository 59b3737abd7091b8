package pushercompat

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pusher/pusher-http-go/v5"

	"github.com/nostressplanner/liveupdates/testutil"
)

// names lists channel/name/data/socket/request of events, ignoring At.
func names(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s/%s/%s/%s/%d", e.Channel, e.Name, e.Data, e.SocketID, e.Request)
	}
	return out
}

func TestRealClientPublishesAreRecorded(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock(time.Now())
	s := Start(t, Options{AppID: "42", Key: "k1", Secret: "s1", Now: clk.Now})
	c := s.Client(0)
	if c.HTTPClient == nil || c.HTTPClient.Timeout != 5*time.Second {
		t.Fatalf("Client(0).HTTPClient=%v, want a 5 s timeout", c.HTTPClient)
	}

	if err := c.Trigger("event-e1", "vote.updated", `{"n":1}`); err != nil {
		t.Fatalf("Trigger()=%v", err)
	}
	if err := c.TriggerMulti([]string{"event-e2", "event-e3"}, "phase.changed", map[string]int{"n": 2}); err != nil {
		t.Fatalf("TriggerMulti()=%v", err)
	}
	//lint:ignore SA1019 old backends still call the deprecated form; the server must accept it
	if err := c.TriggerExclusive("event-e1", "vote.updated", "x", "123.456"); err != nil {
		t.Fatalf("TriggerExclusive()=%v", err)
	}
	sock := "7.8"
	if _, err := c.TriggerBatch([]pusher.Event{
		{Channel: "event-e1", Name: "blocks.updated", Data: "a", SocketID: &sock},
		{Channel: "private-event-e4", Name: "final.date.set", Data: "b"},
	}); err != nil {
		t.Fatalf("TriggerBatch()=%v", err)
	}

	want := []string{
		`event-e1/vote.updated/{"n":1}//1`,
		`event-e2/phase.changed/{"n":2}//2`,
		`event-e3/phase.changed/{"n":2}//2`,
		`event-e1/vote.updated/x/123.456/3`,
		`event-e1/blocks.updated/a/7.8/4`,
		`private-event-e4/final.date.set/b//4`,
	}
	if got := names(s.Events()); !slices.Equal(got, want) {
		t.Fatalf("Events()=%q, want %q", got, want)
	}
	wantE1 := []string{want[0], want[3], want[4]}
	if got := names(s.EventsOn("event-e1")); !slices.Equal(got, wantE1) {
		t.Fatalf("EventsOn(event-e1)=%q, want %q", got, wantE1)
	}
	if s.Requests() != 4 || s.Accepted() != 4 {
		t.Fatalf("Requests()=%d Accepted()=%d, want 4 and 4", s.Requests(), s.Accepted())
	}
	for _, e := range s.Events() {
		if !e.At.Equal(clk.Now()) {
			t.Fatalf("event At=%v, want the server clock %v", e.At, clk.Now())
		}
	}
	// Events returns a copy: changing it changes nothing recorded.
	s.Events()[0].Data = "changed"
	if s.Events()[0].Data != `{"n":1}` {
		t.Fatalf("Events() shares its backing array")
	}
}

func TestRealClientBatchOfElevenGets400AndRecordsNothing(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	batch := make([]pusher.Event, 11)
	for i := range batch {
		batch[i] = pusher.Event{Channel: "c", Name: "e", Data: "d"}
	}
	_, err := s.Client(0).TriggerBatch(batch)
	if err == nil || !strings.HasPrefix(err.Error(), "Status Code: 400 - Batch too large") {
		t.Fatalf("TriggerBatch(11)=%v, want a 400", err)
	}
	if len(s.Events()) != 0 || s.Requests() != 1 || s.Accepted() != 0 {
		t.Fatalf("Events()=%d Requests()=%d Accepted()=%d, want 0 1 0", len(s.Events()), s.Requests(), s.Accepted())
	}
}

func TestRealClientOversizedDataGets413(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Client(0)
	c.OverrideMaxMessagePayloadKB = 11 // else the client refuses before sending
	err := c.Trigger("c", "e", strings.Repeat("x", 10241))
	if err == nil || !strings.HasPrefix(err.Error(), "Status Code: 413 - The data content of this event exceeds the allowed maximum (10240 bytes)") {
		t.Fatalf("Trigger(10241 bytes)=%v, want Pusher's 413", err)
	}
	if len(s.Events()) != 0 {
		t.Fatalf("Events()=%d, want 0", len(s.Events()))
	}
}

func TestClientFollowsARaisedPayloadLimit(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{MaxPayloadBytes: 32 * 1024})
	c := s.Client(0)
	if c.OverrideMaxMessagePayloadKB != 32 {
		t.Fatalf("OverrideMaxMessagePayloadKB=%d, want 32", c.OverrideMaxMessagePayloadKB)
	}
	if err := c.Trigger("c", "e", strings.Repeat("x", 32*1024)); err != nil {
		t.Fatalf("Trigger(32 KiB)=%v, want nil", err)
	}
}

// status returns the status pusher-http-go reported in err. Parsing the
// error text is acceptable here only: it is how the library reports it.
func status(err error) string {
	if err == nil {
		return "200"
	}
	s, ok := strings.CutPrefix(err.Error(), "Status Code: ")
	if !ok || len(s) < 3 {
		return "error: " + err.Error()
	}
	return s[:3]
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Client(0)
	s.FailNext(2, Fault{Status: 503})
	var got []string
	for range 3 {
		got = append(got, status(c.Trigger("c", "e", "d")))
	}
	if want := []string{"503", "503", "200"}; !slices.Equal(got, want) {
		t.Fatalf("statuses=%v, want %v", got, want)
	}
	if n := len(s.Events()); n != 1 || s.Events()[0].Request != 3 {
		t.Fatalf("Events()=%+v, want one from request 3", s.Events())
	}
	if s.Requests() != 3 || s.Accepted() != 1 {
		t.Fatalf("Requests()=%d Accepted()=%d, want 3 and 1", s.Requests(), s.Accepted())
	}
}

func TestFaultAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		fault          Fault
		wantStatus     int
		wantBody       string
		wantRetryAfter string
	}{
		{name: "429 carries Retry-After rounded up to whole seconds", fault: Fault{Status: 429, RetryAfter: 1500 * time.Millisecond}, wantStatus: 429, wantBody: "Too Many Requests", wantRetryAfter: "2"},
		{name: "500 with a body answers that body", fault: Fault{Status: 500, Body: "boom"}, wantStatus: 500, wantBody: "boom"},
		{name: "503 without a body answers the status text", fault: Fault{Status: 503}, wantStatus: 503, wantBody: "Service Unavailable"},
		{name: "a zero status means 500", fault: Fault{}, wantStatus: 500, wantBody: "Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, Options{})
			s.FailNext(1, tt.fault)
			got := rawPost(t, s, defaultCreds, time.Now(), "/apps/1/events", triggerJSON(t, []string{"c"}, "e", "d"))
			if got.status != tt.wantStatus || got.body != tt.wantBody || got.header.Get("Retry-After") != tt.wantRetryAfter {
				t.Fatalf("answer=%d %q Retry-After=%q, want %d %q %q", got.status, got.body, got.header.Get("Retry-After"), tt.wantStatus, tt.wantBody, tt.wantRetryAfter)
			}
			err := s.Client(0).Trigger("c", "e", "d")
			if err != nil || len(s.Events()) != 1 {
				t.Fatalf("after the fault: Trigger()=%v, Events()=%d, want nil and 1", err, len(s.Events()))
			}
		})
	}
}

func TestFaultsApplyBeforeAnyCheck(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.FailNext(1, Fault{Status: 503})
	// A request to another app with a bad signature still gets the fault.
	if got := rawDo(t, s, http.MethodPost, "/apps/9/events?auth_key=x", nil); got.status != 503 {
		t.Fatalf("answer=%d %q, want 503", got.status, got.body)
	}
}

func TestFailForUsesTheServerClock(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock(time.Now())
	s := Start(t, Options{Now: clk.Now})
	c := s.Client(0)
	s.FailFor(10*time.Second, Fault{Status: 429, RetryAfter: time.Second})
	if got := status(c.Trigger("c", "e", "d")); got != "429" {
		t.Fatalf("within the period: %s, want 429", got)
	}
	clk.Add(9 * time.Second)
	if got := status(c.Trigger("c", "e", "d")); got != "429" {
		t.Fatalf("9 s in: %s, want 429", got)
	}
	clk.Add(time.Second)
	if got := status(c.Trigger("c", "e", "d")); got != "200" {
		t.Fatalf("10 s in: %s, want 200", got)
	}
	// FailNext wins over FailFor while it lasts.
	s.FailFor(time.Minute, Fault{Status: 500})
	s.FailNext(1, Fault{Status: 503})
	got := []string{status(c.Trigger("c", "e", "d")), status(c.Trigger("c", "e", "d"))}
	if want := []string{"503", "500"}; !slices.Equal(got, want) {
		t.Fatalf("statuses=%v, want %v", got, want)
	}
}

// wantURLError fails unless err is the *url.Error of a failed connection.
func wantURLError(t *testing.T, err error) {
	t.Helper()
	if _, ok := errors.AsType[*url.Error](err); !ok {
		t.Fatalf("err=%v (%T), want a *url.Error", err, err)
	}
}

func TestDropClosesTheConnectionWithoutAnswer(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Client(0)
	// A first request leaves a kept-alive connection, so the drop also
	// shows that the client does not silently retry a POST on it.
	if err := c.Trigger("c", "e", "d"); err != nil {
		t.Fatalf("before the drop: Trigger()=%v", err)
	}
	s.FailNext(1, Fault{Drop: true, Status: 200})
	wantURLError(t, c.Trigger("c", "e", "d"))
	if err := c.Trigger("c", "e", "d"); err != nil {
		t.Fatalf("after the drop: Trigger()=%v", err)
	}
	if s.Requests() != 3 || s.Accepted() != 2 || len(s.Events()) != 2 {
		t.Fatalf("Requests()=%d Accepted()=%d Events()=%d, want 3 2 2", s.Requests(), s.Accepted(), len(s.Events()))
	}
	ex := s.Exchanges()
	if len(ex) != 3 || ex[1].Status != 0 || ex[1].Message != "dropped: fault" || ex[2].Status != 200 || ex[2].Events != 1 {
		t.Fatalf("Exchanges()=%+v", ex)
	}
}

func TestOutageOnAndOff(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Client(0)
	s.SetOutage(true)
	for range 3 {
		wantURLError(t, c.Trigger("c", "e", "d"))
	}
	if s.Requests() != 3 || len(s.Events()) != 0 {
		t.Fatalf("during the outage: Requests()=%d Events()=%d, want 3 and 0", s.Requests(), len(s.Events()))
	}
	s.SetOutage(false)
	if err := c.Trigger("c", "e", "d"); err != nil {
		t.Fatalf("after the outage: Trigger()=%v", err)
	}
	if len(s.Events()) != 1 {
		t.Fatalf("Events()=%d, want 1", len(s.Events()))
	}
}

func TestLatencyOutlastingTheClientTimeoutRecordsNothing(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.SetLatency(time.Minute) // Close cuts it short at cleanup
	err := s.Client(50*time.Millisecond).Trigger("c", "e", "d")
	ue, ok := errors.AsType[*url.Error](err)
	if !ok || !ue.Timeout() {
		t.Fatalf("Trigger()=%v, want a *url.Error timeout", err)
	}
	// The handler sees the client leave and answers nothing.
	ex := func() []Exchange { return s.Exchanges() }
	testutil.Eventually(t, 5*time.Second, func() bool { return len(ex()) > 0 }, "the abandoned request never finished")
	if got := ex(); len(got) != 1 || got[0].Status != 0 || got[0].Message != "client went away during latency" {
		t.Fatalf("Exchanges()=%+v, want one that went away", got)
	}
	if len(s.Events()) != 0 {
		t.Fatalf("Events()=%d, want 0", len(s.Events()))
	}
	s.SetLatency(0)
	if err := s.Client(0).Trigger("c", "e", "d"); err != nil {
		t.Fatalf("without latency: Trigger()=%v", err)
	}
}

func TestLatencyDelaysButStillAnswers(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	const d = 30 * time.Millisecond
	s.SetLatency(d)
	start := time.Now()
	if err := s.Client(0).Trigger("c", "e", "d"); err != nil {
		t.Fatalf("Trigger()=%v", err)
	}
	// A lower bound only: the server cannot answer before the latency.
	if took := time.Since(start); took < d {
		t.Fatalf("answered after %v, want at least %v", took, d)
	}
}

func TestRejectWhenRefusesTheWholeRequest(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.RejectWhen(func(e Event) (int, string) {
		if e.Channel == "event-bad" {
			return http.StatusForbidden, "over quota"
		}
		return 0, ""
	})
	_, err := s.Client(0).TriggerBatch([]pusher.Event{
		{Channel: "event-ok", Name: "e", Data: "1"},
		{Channel: "event-bad", Name: "e", Data: "2"},
	})
	if err == nil || err.Error() != "Status Code: 403 - over quota" {
		t.Fatalf("TriggerBatch()=%v, want 403 over quota", err)
	}
	if len(s.Events()) != 0 {
		t.Fatalf("Events()=%d, want 0", len(s.Events()))
	}
	s.RejectWhen(func(Event) (int, string) { return http.StatusServiceUnavailable, "" })
	if got := status(s.Client(0).Trigger("event-ok", "e", "d")); got != "503" {
		t.Fatalf("with a rule answering 503: %s", got)
	}
	s.RejectWhen(nil)
	if err := s.Client(0).Trigger("event-ok", "e", "d"); err != nil {
		t.Fatalf("without a rule: Trigger()=%v", err)
	}
}

func TestSubscribeDeliversInAcceptanceOrder(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	events, cancel := s.Subscribe()
	c := s.Client(0)
	// Publish before reading: delivery must not depend on a reader.
	for i := range 20 {
		if err := c.Trigger("c", "e", fmt.Sprint(i)); err != nil {
			t.Fatalf("Trigger(%d)=%v", i, err)
		}
	}
	for i := range 20 {
		select {
		case e := <-events:
			if e.Data != fmt.Sprint(i) || e.Request != i+1 {
				t.Fatalf("event %d=%+v, want data %d from request %d", i, e, i, i+1)
			}
		case <-t.Context().Done():
			t.Fatalf("event %d never arrived", i)
		}
	}
	cancel()
	if _, open := <-events; open {
		t.Fatalf("channel still open after cancel")
	}
	cancel() // a second cancel is harmless
}

func TestCloseEndsSubscriptions(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	events, cancel := s.Subscribe()
	defer cancel()
	if err := s.Client(0).Trigger("c", "e", "d"); err != nil {
		t.Fatalf("Trigger()=%v", err)
	}
	s.Close()
	var got int
	for range events {
		got++
	}
	// The undelivered event may or may not be handed over before the
	// close; what matters is that the range ends.
	if got > 1 {
		t.Fatalf("received %d events, want at most 1", got)
	}
	late, lateCancel := s.Subscribe()
	defer lateCancel()
	if _, open := <-late; open {
		t.Fatalf("Subscribe after Close returned an open channel")
	}
}

func TestResetForgetsEverything(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Client(0)
	if err := c.Trigger("c", "e", "d"); err != nil {
		t.Fatalf("Trigger()=%v", err)
	}
	s.FailNext(5, Fault{Status: 500})
	s.FailFor(time.Hour, Fault{Status: 500})
	s.SetOutage(true)
	s.SetLatency(time.Hour)
	s.RejectWhen(func(Event) (int, string) { return 500, "" })
	s.Reset()
	if len(s.Events()) != 0 || s.Requests() != 0 || s.Accepted() != 0 || len(s.Exchanges()) != 0 {
		t.Fatalf("after Reset: Events()=%d Requests()=%d Accepted()=%d Exchanges()=%d", len(s.Events()), s.Requests(), s.Accepted(), len(s.Exchanges()))
	}
	if err := c.Trigger("c", "e", "d"); err != nil {
		t.Fatalf("after Reset: Trigger()=%v", err)
	}
	if evs := s.Events(); len(evs) != 1 || evs[0].Request != 1 {
		t.Fatalf("after Reset: Events()=%+v, want one from request 1", evs)
	}
}

func TestConcurrentPublishersAreAllRecorded(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	events, cancel := s.Subscribe()
	defer cancel()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			c := s.Client(0)
			for i := range each {
				if err := c.Trigger(fmt.Sprintf("c-%d", w), "e", fmt.Sprint(i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Trigger()=%v", err)
	}
	all := s.Events()
	if len(all) != workers*each || s.Accepted() != workers*each {
		t.Fatalf("Events()=%d Accepted()=%d, want %d", len(all), s.Accepted(), workers*each)
	}
	// Per channel, the order is each worker's order; the subscriber sees
	// exactly the recorded order.
	for w := range workers {
		on := s.EventsOn(fmt.Sprintf("c-%d", w))
		for i, e := range on {
			if e.Data != fmt.Sprint(i) {
				t.Fatalf("c-%d event %d has data %s", w, i, e.Data)
			}
		}
	}
	for i, want := range all {
		if got := <-events; got != want {
			t.Fatalf("subscriber event %d=%+v, want %+v", i, got, want)
		}
	}
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	_, err := New(Options{MaxBatch: -1, MaxPayloadBytes: -2})
	if err == nil || err.Error() != "pushercompat: negative Options: MaxBatch=-1, MaxPayloadBytes=-2" {
		t.Fatalf("err=%v, want the negative options named", err)
	}
}

func TestServerFromNewHasNoAddress(t *testing.T) {
	t.Parallel()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.URL() != "" || s.Host() != "" {
		t.Fatalf("URL()=%q Host()=%q, want empty", s.URL(), s.Host())
	}
	defer func() {
		if recover() == nil {
			t.Fatalf("Client() on a server without listener did not panic")
		}
	}()
	s.Client(0)
}

// A second server on the same registry is an error from New, not a
// panic inside prometheus: dev builds it from its one registry.
func TestNewReturnsRegistrationError(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Registerer: reg}); err != nil {
		t.Fatalf("first New: %v", err)
	}
	_, err := New(Options{Registerer: reg})
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("second New on one registry: err=%v, want a register metrics error", err)
	}
}
