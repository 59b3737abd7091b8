package measure

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPercentileAndMedian(t *testing.T) {
	t.Parallel()
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"p50 of 1..10 is 5 by nearest rank", Percentile(xs, 50), 5},
		{"p99 of 1..10 is the largest", Percentile(xs, 99), 10},
		{"p10 of 1..10 is the smallest", Percentile(xs, 10), 1},
		{"no values give 0", Percentile(nil, 50), 0},
		{"the median of an even count is the mean of the middle two", Median(xs), 5.5},
		{"the median of an odd count is the middle one", Median([]float64{3, 1, 2}), 2},
		{"the median of nothing is 0", Median(nil), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if xs[0] != 5 {
		t.Fatalf("Percentile sorted its input: %v", xs)
	}
}

func TestParseStatCPUCountsAfterTheCommandName(t *testing.T) {
	t.Parallel()
	// A command name with spaces and a parenthesis; utime 250, stime 50 ticks.
	line := "4242 (live (dev) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 555 1000 200 18446744073709551615"
	got, err := ParseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Fatalf("ParseStatCPU = %v, want %v", got, want)
	}
	if _, err := ParseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("ParseStatCPU of a short line = nil error, want one")
	}
}

func TestParseStatusRSSReadsKilobytes(t *testing.T) {
	t.Parallel()
	status := "Name:\tliveupdates\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n"
	got, err := ParseStatusRSS([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 12345*1024 {
		t.Fatalf("ParseStatusRSS = %d, want %d", got, 12345*1024)
	}
	if _, err := ParseStatusRSS([]byte("Name:\tx\n")); err == nil {
		t.Fatal("ParseStatusRSS without VmRSS = nil error, want one")
	}
}

func TestSSEReaderReadsBothServersFrames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100) // longer than the reader's buffer below
	stream := "retry: 2000\n\n" +    // ours opens with a retry and no data
		"\r\n" + // Centrifugo opens with a bare CRLF
		"data: {\"connect\":{}}\n\n" +
		": heartbeat\n\n" +
		"id: 7\nevent: vote.updated\ndata: {\"seq\":7}\n\n" +
		"data: a\r\ndata: " + long + "\r\n\r\n"
	r := NewSSEReader(bufio.NewReaderSize(strings.NewReader(stream), 16))
	want := []SSEEvent{
		{Data: `{"connect":{}}`},
		{ID: "7", Event: "vote.updated", Data: `{"seq":7}`},
		{Data: "a\n" + long},
	}
	for i, w := range want {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got != w {
			t.Fatalf("frame %d = %+v, want %+v", i, got, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestIntFieldFindsTheFirstNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text, name string
		want       int64
		ok         bool
	}{
		{`{"channel":"bench","pub":{"data":{"r":12,"pad":"x"},"offset":3}}`, "r", 12, true},
		{`{"id":"01","seq":1042,"data":{"r": 3}}`, "seq", 1042, true},
		{`{"id":"01","seq":1042,"data":{"r": 3}}`, "r", 3, true},
		{`{"r":"12"}`, "r", 0, false},
		{`{"x":1}`, "r", 0, false},
	}
	for _, tt := range tests {
		got, ok := IntField(tt.text, tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("IntField(%s, %q) = %d, %v, want %d, %v", tt.text, tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPromValueMatchesTheWholeName(t *testing.T) {
	t.Parallel()
	text := []byte("# HELP x\nliveupdates_poller_long_polls_waiting_total 9\n" +
		"liveupdates_poller_long_polls_waiting 5000\nother{a=\"b\"} 2.5\n")
	if v, ok := PromValue(text, "liveupdates_poller_long_polls_waiting"); !ok || v != 5000 {
		t.Fatalf("PromValue = %v, %v, want 5000", v, ok)
	}
	if v, ok := PromValue(text, "other"); !ok || v != 2.5 {
		t.Fatalf("PromValue with labels = %v, %v, want 2.5", v, ok)
	}
	if _, ok := PromValue(text, "missing"); ok {
		t.Fatal("PromValue of a missing metric found one")
	}
}

func TestHS256SignsAVerifiableToken(t *testing.T) {
	t.Parallel()
	tok, err := HS256(map[string]any{"sub": "u1", "channels": []string{"bench"}}, "secret")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts, want 3", tok, len(parts))
	}
	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); parts[2] != want {
		t.Fatalf("signature %q, want %q", parts[2], want)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub      string   `json:"sub"`
		Channels []string `json:"channels"`
	}
	if err := json.Unmarshal(body, &claims); err != nil || claims.Sub != "u1" || len(claims.Channels) != 1 {
		t.Fatalf("claims %s (%v), want sub u1 and one channel", body, err)
	}
}

func TestParseUpdatesFindsTheCursorAndEverySeq(t *testing.T) {
	t.Parallel()
	body := []byte(`{"cursor":"1043","events":[{"id":"01A","seq":1042,"eventId":"hot","type":"vote.updated","data":{"r":1}},` +
		`{"id":"01B","seq":1043,"eventId":"hot","type":"vote.updated","data":{"r":2}}]}`)
	cursor, seqs, err := ParseUpdates(body)
	if err != nil || cursor != 1043 || len(seqs) != 2 || seqs[0] != 1042 || seqs[1] != 1043 {
		t.Fatalf("ParseUpdates = %d, %v, %v, want 1043 and [1042 1043]", cursor, seqs, err)
	}
	cursor, seqs, err = ParseUpdates([]byte(`{"cursor":"7","events":[]}`))
	if err != nil || cursor != 7 || len(seqs) != 0 {
		t.Fatalf("ParseUpdates of no changes = %d, %v, %v, want 7 and none", cursor, seqs, err)
	}
	for _, bad := range []string{`{"events":[]}`, `{"cursor":"x","events":[]}`, `{"cursor":"7","events":[{"seq":"1"}]}`} {
		if _, _, err := ParseUpdates([]byte(bad)); err == nil {
			t.Errorf("ParseUpdates(%s) = nil error, want one", bad)
		}
	}
}
