package poller

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

// rawConn is one HTTP/1.1 client connection driven by hand, so tests see
// exactly what a parked long-poll's answer carries on the wire.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	br   *bufio.Reader
	host string
}

func dialRaw(t *testing.T, baseURL string) *rawConn {
	t.Helper()
	host := strings.TrimPrefix(baseURL, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatalf("dial %s: %v", host, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c), host: host}
}

func (rc *rawConn) send(path string, hdr ...string) {
	rc.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, rc.host)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(rc.c, b.String()); err != nil {
		rc.t.Fatalf("send %s: %v", path, err)
	}
}

// recv reads one response; the deadline makes a missing answer fail the
// test instead of hanging it.
func (rc *rawConn) recv(within time.Duration) (*http.Response, []byte) {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(within))
	res, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return res, body
}

// recvUpdates reads one 200 answer with updates, and its body.
func (rc *rawConn) recvUpdates(within time.Duration) (updates, []byte) {
	rc.t.Helper()
	res, body := rc.recv(within)
	if res.StatusCode != http.StatusOK {
		rc.t.Fatalf("status=%d body=%s, want 200", res.StatusCode, body)
	}
	var u updates
	if err := json.Unmarshal(body, &u); err != nil {
		rc.t.Fatalf("decode %s: %v", body, err)
	}
	return u, body
}

// closedByServer reports whether the server closed the connection (EOF).
func (rc *rawConn) closedByServer() bool {
	_ = rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := rc.br.ReadByte()
	return err == io.EOF
}

func waiting(t *testing.T, h *harness) float64 {
	return testutil.MetricSum(t, h.reg, "liveupdates_poller_long_polls_waiting")
}

func waitParked(t *testing.T, h *harness, n int64) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		return h.p.waits.nParked.Load() == n && waiting(t, h) == float64(n) &&
			testutil.MetricSum(t, h.reg, "liveupdates_poller_long_polls_parked") == float64(n)
	}, "%d long-polls parked", n)
}

// headerNames lists the header names of an answer, without Date (its value
// is the time) so two answers can be compared.
func headerNames(h http.Header) []string {
	var out []string
	for k := range h {
		if k != "Date" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func TestParkedLongPollIsWokenWithTheHeadersOfThePlainPathAndKeepsItsConnection(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":1}`)
	h := startPoller(t, srv, Config{CORSOrigins: []string{"https://app.example"}})
	origin := []string{"Origin", "https://app.example"}

	rc := dialRaw(t, h.url)
	rc.send(fmt.Sprintf("/v1/events/e1/updates?since=%d&wait=20", first), origin...)
	waitParked(t, h, 1)
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":2}`)
	res, body := rc.recv(30 * time.Second)
	if res.StatusCode != http.StatusOK || res.Close {
		t.Fatalf("woken answer status=%d close=%v, want 200 keeping the connection", res.StatusCode, res.Close)
	}
	var u updates
	if err := json.Unmarshal(body, &u); err != nil || !slices.Equal(seqs(u.Events), []uint64{s}) || u.Cursor != strconv.FormatUint(s, 10) {
		t.Fatalf("woken answer %s (%v), want events [%d] and cursor %d", body, err, s, s)
	}
	if res.ContentLength != int64(len(body)) {
		t.Fatalf("Content-Length=%d, body is %d bytes", res.ContentLength, len(body))
	}
	if got, want := res.Header.Get("Etag"), fmt.Sprintf(`"%d"`, s); got != want {
		t.Fatalf("ETag=%q, want %q", got, want)
	}
	// What the plain (not waiting) path answers the same question with.
	plain := h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", first), origin...)
	if string(plain.body) != string(body) {
		t.Fatalf("parked body %s, plain path %s", body, plain.body)
	}
	if got, want := headerNames(res.Header), headerNames(plain.header); !slices.Equal(got, want) {
		t.Fatalf("parked answer headers %v, plain path %v", got, want)
	}
	for _, k := range []string{"Content-Type", "Cache-Control", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Vary"} {
		if res.Header.Get(k) != plain.header.Get(k) {
			t.Fatalf("%s=%q, plain path %q", k, res.Header.Get(k), plain.header.Get(k))
		}
	}
	if n := waiting(t, h); n != 0 {
		t.Fatalf("waiting after the answer=%v, want 0", n)
	}

	// The same connection serves the next long-poll, which parks again.
	rc.send(fmt.Sprintf("/v1/events/e1/updates?since=%d&wait=20", s), origin...)
	waitParked(t, h, 1)
	s2 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":3}`)
	res, body = rc.recv(30 * time.Second)
	if err := json.Unmarshal(body, &u); err != nil || res.StatusCode != http.StatusOK || !slices.Equal(seqs(u.Events), []uint64{s2}) {
		t.Fatalf("second long-poll on the kept connection: %d %s, want events [%d]", res.StatusCode, body, s2)
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_answers_total", "route", "updates", "outcome", "ok"); got != 3 {
		t.Fatalf("ok count=%v, want 3 (two woken, one plain)", got)
	}
	// The HTTP metrics count the parked requests as hijacked, also the
	// one the inner server took back, and the plain one by its status.
	const route = "GET /v1/events/{eventId}/updates"
	for code, want := range map[string]float64{"hijacked": 2, "200": 1} {
		if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_http_requests_total", "route", route, "code", code); got != want {
			t.Fatalf("http requests %s code %s=%v, want %v", route, code, got, want)
		}
	}
}

func TestParkedLongPollTimesOut(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h := startPoller(t, srv, Config{})
	tag := fmt.Sprintf(`"%d"`, s)
	cases := []struct {
		name       string
		hdr        []string
		wantStatus int
	}{
		{"without If-None-Match it answers an empty 200", nil, http.StatusOK},
		{"with a matching If-None-Match it answers 304", []string{"If-None-Match", tag}, http.StatusNotModified},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, h.url)
			start := time.Now()
			rc.send(fmt.Sprintf("/v1/events/e1/updates?since=%d&wait=1", s), tc.hdr...)
			res, body := rc.recv(30 * time.Second)
			if el := time.Since(start); el < time.Second {
				t.Fatalf("answered after %v, want held for wait=1s", el)
			}
			if res.StatusCode != tc.wantStatus || res.Header.Get("Etag") != tag || res.Header.Get("Cache-Control") != "private, no-cache" {
				t.Fatalf("status=%d ETag=%q Cache-Control=%q, want %d %s private, no-cache", res.StatusCode, res.Header.Get("Etag"), res.Header.Get("Cache-Control"), tc.wantStatus, tag)
			}
			if tc.wantStatus == http.StatusOK {
				var u updates
				if err := json.Unmarshal(body, &u); err != nil || len(u.Events) != 0 || u.Reset || u.Cursor != strconv.FormatUint(s, 10) {
					t.Fatalf("timed-out body %s (%v), want no events and cursor %d", body, err, s)
				}
			} else if len(body) != 0 {
				t.Fatalf("304 body %q, want none", body)
			}
		})
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_answers_total", "route", "updates", "outcome", "long_poll_timeout"); got != 2 {
		t.Fatalf("timeout count=%v, want 2", got)
	}
	if n := waiting(t, h); n != 0 {
		t.Fatalf("waiting=%v, want 0", n)
	}
}

func TestParkedLongPollOfAGoneClientIsReleased(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	h := startPoller(t, srv, Config{PollInterval: 100 * time.Millisecond})
	rc := dialRaw(t, h.url)
	rc.send("/v1/events/e1/updates?since=0&wait=30")
	waitParked(t, h, 1)
	rc.c.Close()
	// The housekeeping tick peeks at the parked socket and finds it closed.
	waitParked(t, h, 0)
	if n := len(h.p.waits.parkedSnapshot(nil)); n != 0 {
		t.Fatalf("wait sets still hold %d parked connections", n)
	}
}

func TestPeerGoneTellsAnOpenConnectionFromAClosedOne(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if peerGone(server) {
		t.Fatal("peerGone(open connection)=true")
	}
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	client.Close()
	testutil.Eventually(t, 30*time.Second, func() bool { return peerGone(server) }, "closed peer seen as gone")
}

func TestDrainAnswersEveryParkedLongPollAndClosesItsConnection(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	// Waits far longer than the test: only Drain can answer them in time.
	h := startPoller(t, srv, Config{Rate: -1, MaxWait: 5 * time.Minute})
	const n = 40 // more than one worker chunk
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, h.url)
		conns[i].send(fmt.Sprintf("/v1/events/e%d/updates?since=0&wait=300", i%3))
	}
	waitParked(t, h, n)
	h.p.Drain()
	for i, rc := range conns {
		res, body := rc.recv(60 * time.Second)
		var u updates
		if err := json.Unmarshal(body, &u); err != nil || res.StatusCode != http.StatusOK || u.Reset || len(u.Events) != 0 {
			t.Fatalf("conn %d drained answer %d %s (%v), want an empty 200", i, res.StatusCode, body, err)
		}
		if !res.Close || !rc.closedByServer() {
			t.Fatalf("conn %d: want Connection: close and the connection closed after a drained answer", i)
		}
	}
	if w := waiting(t, h); w != 0 {
		t.Fatalf("waiting after Drain=%v, want 0", w)
	}
	// After Drain a long-poll is answered at once on the plain path.
	if u := decodeUpdates(t, h.get("/v1/events/e1/updates?since=0&wait=30")); len(u.Events) != 0 {
		t.Fatalf("long-poll after Drain=%+v, want an empty answer", u)
	}
}

func TestManyParkedLongPollsOfOneEventAreAllWoken(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{Rate: -1})
	cursor := h.p.idx.appliedSeq()
	const n = 200
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, h.url)
		conns[i].send(fmt.Sprintf("/v1/events/hot/updates?since=%d&wait=30", cursor))
	}
	waitParked(t, h, n)
	s := testutil.PublishChange(t, js, "hot", "vote.updated", `{"hot":true}`)
	for i, rc := range conns {
		res, body := rc.recv(30 * time.Second)
		var u updates
		if err := json.Unmarshal(body, &u); err != nil || res.StatusCode != http.StatusOK || !slices.Equal(seqs(u.Events), []uint64{s}) {
			t.Fatalf("conn %d: %d %s, want events [%d]", i, res.StatusCode, body, s)
		}
	}
	waitParked(t, h, 0)
}

func TestParkCloseAnswersWithConnectionClose(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{Park: ParkClose})
	cursor := h.p.idx.appliedSeq()
	rc := dialRaw(t, h.url)
	rc.send(fmt.Sprintf("/v1/events/e1/updates?since=%d&wait=20", cursor))
	waitParked(t, h, 1)
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	res, body := rc.recv(30 * time.Second)
	var u updates
	if err := json.Unmarshal(body, &u); err != nil || !slices.Equal(seqs(u.Events), []uint64{s}) {
		t.Fatalf("answer %s (%v), want events [%d]", body, err, s)
	}
	if !res.Close || !rc.closedByServer() {
		t.Fatal("want Connection: close and the connection closed")
	}
}

func TestLongPollsThatCannotParkWaitOnThePlainPath(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	h := startPoller(t, srv, Config{})
	mux := http.NewServeMux()
	h.p.Register(mux)
	h2 := httptest.NewUnstartedServer(mux)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	hOff := startPoller(t, srv, Config{Park: ParkOff})

	cases := []struct {
		name   string
		h      *harness
		url    string
		client *http.Client
		proto  int
		event  string
	}{
		{"HTTP/2 cannot be hijacked", h, h2.URL, h2.Client(), 2, "over-h2"},
		{"park off keeps HTTP/1.1 on the plain path", hOff, hOff.url, http.DefaultClient, 1, "park-off"},
	}
	for _, tc := range cases {
		cursor := tc.h.p.idx.appliedSeq()
		got := make(chan *http.Response, 1)
		go func() {
			res, err := tc.client.Get(fmt.Sprintf("%s/v1/events/%s/updates?since=%d&wait=20", tc.url, tc.event, cursor))
			if err != nil {
				t.Errorf("%s: GET: %v", tc.name, err)
				res = nil
			}
			got <- res
		}()
		testutil.Eventually(t, 30*time.Second, func() bool { return waiting(t, tc.h) == 1 }, "%s: long-poll waiting", tc.name)
		if n := tc.h.p.waits.nParked.Load(); n != 0 {
			t.Fatalf("%s: parked=%d, want the plain path", tc.name, n)
		}
		s := testutil.PublishChange(t, js, tc.event, "vote.updated", `{}`)
		var res *http.Response
		select {
		case res = <-got:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: not woken", tc.name)
		}
		if res == nil {
			t.FailNow()
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var u updates
		if err := json.Unmarshal(body, &u); err != nil || res.ProtoMajor != tc.proto || !slices.Equal(seqs(u.Events), []uint64{s}) {
			t.Fatalf("%s: HTTP/%d %s (%v), want HTTP/%d events [%d]", tc.name, res.ProtoMajor, body, err, tc.proto, s)
		}
	}
}

func TestParkedRecordsAreTakenByExactlyOneParty(t *testing.T) {
	t.Parallel()
	x, w := newWaitingIndex()
	var woken []*parked
	w.onWake = func(pcs []*parked) { woken = append(woken, pcs...) }
	park := func(pc *parked) bool {
		o := readSince(pc.since, pc.hasSince)
		o.wait = w.parkOn(pc)
		return x.read(pc.id, o, nil).wake != nil
	}
	a := &parked{id: "e1", hasSince: true}
	b := &parked{id: "e1", hasSince: true}
	c := &parked{id: "e2", hasSince: true}
	for _, pc := range []*parked{a, b, c} {
		if !park(pc) {
			t.Fatalf("%s not parked on an empty read", pc.id)
		}
	}
	if got := w.nParked.Load(); got != 3 {
		t.Fatalf("parked=%d, want 3", got)
	}

	// A change of e1 hands both of its records to the waker, not e2's.
	x.apply(change(1, "e1"), time.Now())
	if len(woken) != 2 || !slices.Contains(woken, a) || !slices.Contains(woken, b) {
		t.Fatalf("woken=%v, want e1's two records", woken)
	}
	if w.take(a) || w.expire(b) {
		t.Fatal("a woken record was taken a second time")
	}
	// b's timer fired while the waker held it: it must not park again.
	if park(b) {
		t.Fatal("an expired record parked again")
	}
	// a re-parks (nothing after since=1) and its timer then takes it.
	a.since = 1
	if !park(a) || !w.expire(a) || w.take(a) {
		t.Fatal("a re-parked record must be taken by its timer exactly once")
	}
	// A record whose If-None-Match no longer names the newest seq is
	// answered, not parked.
	if park(&parked{id: "e1", since: 1, hasSince: true, inm: `"0"`}) {
		t.Fatal("a record with a stale If-None-Match parked")
	}

	// Closing parking takes what is left and refuses more.
	left := w.closeParking()
	if len(left) != 1 || left[0] != c {
		t.Fatalf("closeParking()=%v, want e2's record", left)
	}
	if park(&parked{id: "e3"}) {
		t.Fatal("parked after parking closed")
	}
	if w.nParked.Load() != 0 || len(w.sets) != 0 {
		t.Fatalf("parked=%d wait sets=%d at the end, want 0 and 0", w.nParked.Load(), len(w.sets))
	}
}

// recvRaw reads one response's bytes as they came on the wire, without its
// Date line (its value is the time).
func (rc *rawConn) recvRaw(within time.Duration) string {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(within))
	var b strings.Builder
	n := 0
	for {
		line, err := rc.br.ReadString('\n')
		if err != nil {
			rc.t.Fatalf("read answer head: %v (so far %q)", err, b.String())
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if !strings.HasPrefix(line, "Date: ") {
			b.WriteString(line)
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.br, body); err != nil {
		rc.t.Fatalf("read answer body: %v", err)
	}
	b.Write(body)
	return b.String()
}

// The parked records one change wakes share one framed answer: every one
// of them gets the same bytes, and they are the bytes the plain path's
// answer to the same question has; records whose answer differs (another
// origin's CORS lines, an If-None-Match that no longer matches) get their
// own.
func TestWokenParkedLongPollsShareTheAnswerOfThePlainPath(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	first := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
	h := startPoller(t, srv, Config{Rate: -1, Linger: -1, CORSOrigins: []string{"https://a.example", "https://b.example"}})
	const n = 60
	conns := make([]*rawConn, n)
	originOf := func(i int) string { return []string{"https://a.example", "https://b.example"}[i%3/2] }
	for i := range conns {
		conns[i] = dialRaw(t, h.url)
		hdr := []string{"Origin", originOf(i)}
		if i%5 == 0 {
			hdr = append(hdr, "If-None-Match", fmt.Sprintf(`"%d"`, first))
		}
		conns[i].send(fmt.Sprintf("/v1/events/hot/updates?since=%d&wait=30", first), hdr...)
	}
	waitParked(t, h, n)
	s := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":2}`)
	h.waitApplied(s)
	// What the plain path answers each origin, from a ResponseWriter.
	plain := map[string]string{}
	for _, o := range []string{"https://a.example", "https://b.example"} {
		rc := dialRaw(t, h.url)
		rc.send(fmt.Sprintf("/v1/events/hot/updates?since=%d", first), "Origin", o)
		plain[o] = rc.recvRaw(30 * time.Second)
		if !strings.Contains(plain[o], "Access-Control-Allow-Origin: "+o+"\r\n") || !strings.Contains(plain[o], fmt.Sprintf(`"cursor":"%d","events":[{`, s)) {
			t.Fatalf("plain answer for %s: %q", o, plain[o])
		}
	}
	// Parked answers are byte-identical per origin; beside the plain
	// path's, only the order of the header lines may differ (the lines
	// gathered before parking come first).
	parked := map[string]string{}
	for i, rc := range conns {
		o := originOf(i)
		got := rc.recvRaw(30 * time.Second)
		if parked[o] == "" {
			parked[o] = got
		}
		if got != parked[o] {
			t.Fatalf("conn %d (origin %s) got\n%q\nanother parked conn of that origin got\n%q", i, o, got, parked[o])
		}
		if sortedLines(got) != sortedLines(plain[o]) {
			t.Fatalf("conn %d (origin %s) got\n%q\nthe plain path answers\n%q", i, o, got, plain[o])
		}
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_answers_total", "route", "updates", "outcome", "ok"); got != n+2 {
		t.Fatalf("ok answers=%v, want %d (every woken one counted, shared or not, and the two plain ones)", got, n+2)
	}
}

// sortedLines is an answer with its header lines sorted.
func sortedLines(answer string) string {
	head, body, _ := strings.Cut(answer, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	slices.Sort(lines[1:])
	return strings.Join(lines, "\r\n") + "\r\n\r\n" + body
}

func TestAnswerBytesAreSharedOnlyWhenTheAnswerIsTheSame(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":1}`)
	h := startPoller(t, srv, Config{})
	h.waitApplied(s)
	v := h.p.idx.read("e1", readSince(s-1, true), nil)
	var shared sharedAnswer
	a := h.p.answerBytes(&shared, "e1", nil, v, false, false)
	b := h.p.answerBytes(&shared, "e1", nil, v, false, false)
	if &a[0] != &b[0] {
		t.Fatal("the same answer twice was rendered twice, want the shared bytes")
	}
	for name, c := range map[string]func(*sharedAnswer) []byte{
		"other header lines": func(s *sharedAnswer) []byte {
			return h.p.answerBytes(s, "e1", []byte("Vary: Origin\r\n"), v, false, false)
		},
		"closing":         func(s *sharedAnswer) []byte { return h.p.answerBytes(s, "e1", nil, v, false, true) },
		"matched":         func(s *sharedAnswer) []byte { return h.p.answerBytes(s, "e1", nil, v, true, false) },
		"another eventId": func(s *sharedAnswer) []byte { return h.p.answerBytes(s, "e2", nil, v, false, false) },
	} {
		s := shared
		if got := c(&s); &got[0] == &a[0] {
			t.Fatalf("%s: the first answer's bytes, want its own", name)
		}
	}
	if c := h.p.answerBytes(&shared, "e1", []byte("Vary: Origin\r\n"), v, false, true); !strings.Contains(string(c), "Vary: Origin\r\n") || !strings.Contains(string(c), "Connection: close\r\n") {
		t.Fatalf("answer with header lines and closing: %q", c)
	}
}

// The re-poll that follows a parked answer comes on the kept connection:
// with a change it has not seen it is answered at once, with a current
// cursor it parks at once (no channel waiter first), and either way every
// change arrives once, in order.
func TestRepollOnAKeptConnectionIsAnsweredOrParkedAtOnce(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	h := startPoller(t, srv, Config{Rate: -1, Linger: -1})
	cursor := h.p.idx.appliedSeq()
	rc := dialRaw(t, h.url)
	rc.send(fmt.Sprintf("/v1/events/e1/updates?since=%d&wait=20", cursor))
	waitParked(t, h, 1)
	s1 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":1}`)
	if u, body := rc.recvUpdates(30 * time.Second); !slices.Equal(seqs(u.Events), []uint64{s1}) {
		t.Fatalf("first answer %s, want [%d]", body, s1)
	}
	waitParked(t, h, 0)
	// A change before the re-poll: answered at once, not parked.
	s2 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":2}`)
	h.waitApplied(s2)
	rc.send(fmt.Sprintf("/v1/events/e1/updates?since=%d&wait=20", s1))
	if u, body := rc.recvUpdates(30 * time.Second); !slices.Equal(seqs(u.Events), []uint64{s2}) || u.Cursor != strconv.FormatUint(s2, 10) {
		t.Fatalf("re-poll behind a change: %s, want [%d] at once", body, s2)
	}
	// A current cursor: parked, with no channel waiter left behind.
	rc.send(fmt.Sprintf("/v1/events/e1/updates?since=%d&wait=20", s2))
	waitParked(t, h, 1)
	h.p.waits.mu.Lock()
	ws := h.p.waits.sets["e1"]
	chans := -1
	if ws != nil {
		chans = ws.n
	}
	h.p.waits.mu.Unlock()
	if chans != 0 {
		t.Fatalf("channel waiters on e1 while its re-poll is parked=%d, want 0", chans)
	}
	s3 := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":3}`)
	if u, body := rc.recvUpdates(30 * time.Second); !slices.Equal(seqs(u.Events), []uint64{s3}) {
		t.Fatalf("parked re-poll: %s, want [%d]", body, s3)
	}
}
