package wire

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2026, 11, 29, 10, 0, 0, 123_000_000, time.UTC)

func TestEnvelopeJSONShape(t *testing.T) {
	t.Parallel()
	base := Envelope{ID: "01JD", Seq: 1042, EventID: "e42", Type: "vote.updated", At: at}
	with := func(f func(*Envelope)) Envelope { e := base; f(&e); return e }
	tests := []struct {
		name string
		env  Envelope
		want string
	}{
		{"a plain change has the documented field order and data last",
			with(func(e *Envelope) { e.Data = json.RawMessage(`{"a":1}`) }),
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z","data":{"a":1}}`},
		{"a change without data omits data",
			base,
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z"}`},
		{"a compressed change carries enc before data",
			with(func(e *Envelope) { e.Enc = EncGzipBase64; e.Data = json.RawMessage(`"H4sI"`) }),
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z","enc":"gzip+base64","data":"H4sI"}`},
		{"a reference carries ref and never data",
			with(func(e *Envelope) { e.Ref = true; e.Data = json.RawMessage(`{"big":true}`) }),
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z","ref":true}`},
		{"a coalesced change carries its count",
			with(func(e *Envelope) { e.Coalesced = 3; e.Data = json.RawMessage(`[1,2]`) }),
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z","coalesced":3,"data":[1,2]}`},
		{"a zero seq and time are still written",
			Envelope{ID: "x", EventID: "e", Type: "t", Data: json.RawMessage(`null`)},
			`{"id":"x","seq":0,"eventId":"e","type":"t","at":"0001-01-01T00:00:00.000Z","data":null}`},
		{"a time in another zone is written in UTC",
			with(func(e *Envelope) { e.At = at.In(time.FixedZone("CET", 3600)) }),
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z"}`},
		{"nanoseconds are truncated to milliseconds",
			with(func(e *Envelope) { e.At = at.Add(999_999 * time.Nanosecond) }),
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z"}`},
		{"a whole second still has three decimals",
			with(func(e *Envelope) { e.At = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }),
			`{"id":"01JD","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-01-02T03:04:05.000Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := string(tt.env.AppendJSON(nil)); got != tt.want {
				t.Fatalf("AppendJSON()=%s\nwant          %s", got, tt.want)
			}
			got, err := json.Marshal(tt.env)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("json.Marshal()=%s\nwant           %s", got, tt.want)
			}
			prefix := []byte("prefix:")
			if got := string(tt.env.AppendJSON(prefix)); got != "prefix:"+tt.want {
				t.Fatalf("AppendJSON(prefix)=%s, want the prefix kept", got)
			}
		})
	}
}

func TestEnvelopeJSONRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  Envelope
	}{
		{"a plain change", Envelope{ID: "01JD", Seq: 1, EventID: "e42", Type: "vote.updated", At: at, Data: json.RawMessage(`{"votes":[1,2,3],"s":"ü\"\\"}`)}},
		{"a compressed change", Envelope{ID: "a:b.c", Seq: 1 << 62, EventID: "E-1", Type: "blocks.updated", At: at, Enc: EncGzipBase64, Data: json.RawMessage(`"H4sIAAAA"`)}},
		{"a reference", Envelope{ID: "r", Seq: 7, EventID: "e", Type: "phase.changed", At: at, Ref: true}},
		{"a coalesced change", Envelope{ID: "c", Seq: 9, EventID: "e", Type: "availability.updated", At: at, Coalesced: 12, Data: json.RawMessage(`true`)}},
		{"the maximum seq", Envelope{ID: "m", Seq: ^uint64(0), EventID: "e", Type: "t", At: at, Data: json.RawMessage(`0`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tt.env)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			var got Envelope
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("json.Unmarshal(%s): %v", b, err)
			}
			if !got.At.Equal(tt.env.At) {
				t.Fatalf("At=%v, want %v", got.At, tt.env.At)
			}
			got.At, tt.env.At = time.Time{}, time.Time{}
			if got.ID != tt.env.ID || got.Seq != tt.env.Seq || got.EventID != tt.env.EventID || got.Type != tt.env.Type ||
				got.Enc != tt.env.Enc || got.Ref != tt.env.Ref || got.Coalesced != tt.env.Coalesced || string(got.Data) != string(tt.env.Data) {
				t.Fatalf("round trip=%+v, want %+v", got, tt.env)
			}
		})
	}
}

func TestEnvelopeUnmarshalRefusesABadTime(t *testing.T) {
	t.Parallel()
	var e Envelope
	err := json.Unmarshal([]byte(`{"id":"x","seq":1,"eventId":"e","type":"t","at":"yesterday"}`), &e)
	if err == nil {
		t.Fatal("Unmarshal accepted at=yesterday")
	}
	if err := json.Unmarshal([]byte(`{"id":"x","seq":"one"}`), &e); err == nil {
		t.Fatal("Unmarshal accepted a string seq")
	}
}

func TestEnvelopeJSONIsValidForArbitraryStrings(t *testing.T) {
	t.Parallel()
	// Ids come from a header that anyone publishing by hand can set; the
	// envelope must stay valid JSON whatever they hold.
	for _, id := range []string{"plain", `quote"back\slash`, "tab\tnl\n", "nul\x00bell\a", "bad utf8 \xff\xfe", "emoji 😀", "line sep \u2028", "\U0001F9FF", "<script>&"} {
		e := Envelope{ID: id, Seq: 1, EventID: "e", Type: "t", At: at, Data: json.RawMessage(`{}`)}
		b := e.AppendJSON(nil)
		if !json.Valid(b) {
			t.Errorf("AppendJSON with id %q is not valid JSON: %s", id, b)
			continue
		}
		var back Envelope
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("Unmarshal(%s): %v", b, err)
		}
	}
}

func TestDecodeMessage(t *testing.T) {
	t.Parallel()
	stored := time.Date(2026, 11, 29, 10, 0, 1, 0, time.UTC)
	hdr := func(kv ...string) map[string][]string {
		h := map[string][]string{}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = []string{kv[i+1]}
		}
		return h
	}
	tests := []struct {
		name     string
		subject  string
		header   map[string][]string
		body     string
		wantErr  bool
		wantID   string
		wantAt   time.Time
		wantData string
		wantSock string
	}{
		{"a complete message decodes", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "01JD", HeaderAt, "2026-11-29T10:00:00.123Z", HeaderSocketID, "123.456"),
			`{"a":1}`, false, "01JD", at, `{"a":1}`, "123.456"},
		{"a missing id header falls back to the seq", "live.events.e42.vote.updated",
			hdr(HeaderAt, "2026-11-29T10:00:00.123Z"), `{}`, false, "seq-7", at, `{}`, ""},
		{"a missing Live-At falls back to the stored time", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "x"), `[1]`, false, "x", stored, `[1]`, ""},
		{"an unparsable Live-At falls back to the stored time", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "x", HeaderAt, "soon"), `1`, false, "x", stored, `1`, ""},
		{"a Live-At that would be before year 0 in UTC falls back to the stored time", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "x", HeaderAt, "0000-01-01T00:00:00+01:00"), `1`, false, "x", stored, `1`, ""},
		{"a nil header is read as empty", "live.events.e42.vote.updated",
			nil, `"s"`, false, "seq-7", stored, `"s"`, ""},
		{"an empty body is JSON null", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "x"), ``, false, "x", stored, `null`, ""},
		{"surrounding whitespace is trimmed", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "x"), " \n{\"a\":1}\t ", false, "x", stored, `{"a":1}`, ""},
		{"a bad subject is refused", "live.events.e42", hdr(HeaderMsgID, "x"), `{}`, true, "", time.Time{}, "", ""},
		{"a subject of another stream is refused", "live.dlq.e42.vote.updated", hdr(HeaderMsgID, "x"), `{}`, true, "", time.Time{}, "", ""},
		{"an invalid JSON body is refused", "live.events.e42.vote.updated", hdr(HeaderMsgID, "x"), `{"a":`, true, "", time.Time{}, "", ""},
		{"two JSON values are refused", "live.events.e42.vote.updated", hdr(HeaderMsgID, "x"), `{} {}`, true, "", time.Time{}, "", ""},
		{"a non-JSON text body is refused", "live.events.e42.vote.updated", hdr(HeaderMsgID, "x"), `hello`, true, "", time.Time{}, "", ""},
		// Issue 8 item 5: what the ingest API refuses, every reader refuses.
		{"data with invalid UTF-8 is refused", "live.events.e42.vote.updated", hdr(HeaderMsgID, "x"), "{\"a\":\"\xff\xfe\"}", true, "", time.Time{}, "", ""},
		{"an id with a control character is refused", "live.events.e42.vote.updated", hdr(HeaderMsgID, "a\x01b"), `1`, true, "", time.Time{}, "", ""},
		{"a 60 KB id is refused", "live.events.e42.vote.updated", hdr(HeaderMsgID, strings.Repeat("a", 60<<10)), `1`, true, "", time.Time{}, "", ""},
		{"a Live-Id with a control character is refused", "live.events.e42.vote.updated", hdr(HeaderID, "a\nb", HeaderMsgID, "ok"), `1`, true, "", time.Time{}, "", ""},
		{"Live-Id is the id, whatever the dedup id", "live.events.e42.vote.updated",
			hdr(HeaderID, "order-42", HeaderMsgID, "k.abc:e42:order-42"), `1`, false, "order-42", stored, `1`, ""},
		{"pretty-printed data is compacted", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "x"), "{\n  \"a\": [1, 2],\r\n  \"b\": \"x y\"\n}", false, "x", stored, `{"a":[1,2],"b":"x y"}`, ""},
		{"a bad socket id is dropped", "live.events.e42.vote.updated",
			hdr(HeaderMsgID, "x", HeaderSocketID, "1.2\r\n"), `1`, false, "x", stored, `1`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, sock, err := DecodeMessage(tt.subject, tt.header, []byte(tt.body), 7, stored)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("DecodeMessage err=%v, want ErrInvalidMessage", err)
				}
				if !strings.Contains(err.Error(), "seq 7") {
					t.Fatalf("DecodeMessage err=%v, want it to name the seq", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeMessage err=%v", err)
			}
			if env.ID != tt.wantID || env.Seq != 7 || env.EventID != "e42" || env.Type != "vote.updated" ||
				!env.At.Equal(tt.wantAt) || string(env.Data) != tt.wantData || sock != tt.wantSock {
				t.Fatalf("DecodeMessage=%+v sock=%q, want id %q at %v data %s sock %q", env, sock, tt.wantID, tt.wantAt, tt.wantData, tt.wantSock)
			}
			if b := env.AppendJSON(nil); !json.Valid(b) {
				t.Fatalf("envelope JSON is invalid: %s", b)
			}
		})
	}
}

// Not parallel: the monotonic entropy is shared, and an id for another
// millisecond generated in between (TestNewIDIsSafeForConcurrentUse) restarts
// the random part, so order within one millisecond holds only for one caller.
func TestNewIDIsUniqueAndSortable(t *testing.T) {
	start := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	const n = 2000
	ids := make([]string, 0, n)
	seen := make(map[string]bool, n)
	for i := range n {
		// Many ids share one millisecond: the monotonic entropy must still
		// order them.
		id := NewID(start.Add(time.Duration(i/100) * time.Millisecond))
		if len(id) != 26 {
			t.Fatalf("NewID()=%q, want 26 characters", id)
		}
		if err := ValidateID(id); err != nil {
			t.Fatalf("NewID()=%q is not a valid id: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Fatal("ids generated in time order do not sort in that order")
	}
	if a, b := NewID(start.Add(time.Hour)), NewID(start); a <= b {
		t.Fatalf("id of a later time %q sorts before one of an earlier time %q", a, b)
	}
}

func TestNewIDIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	const workers, each = 4, 500
	out := make(chan string, workers*each)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				out <- NewID(time.Now())
			}
		}()
	}
	for range workers {
		<-done
	}
	close(out)
	seen := map[string]bool{}
	for id := range out {
		if seen[id] {
			t.Fatalf("NewID() repeated %q across goroutines", id)
		}
		seen[id] = true
	}
}

func TestFormatAt(t *testing.T) {
	t.Parallel()
	got := FormatAt(at.Add(456 * time.Microsecond).In(time.FixedZone("X", -5*3600)))
	if got != "2026-11-29T10:00:00.123Z" {
		t.Fatalf("FormatAt()=%q, want 2026-11-29T10:00:00.123Z", got)
	}
	back, err := time.Parse(time.RFC3339Nano, got)
	if err != nil || !back.Equal(at) {
		t.Fatalf("time.Parse(FormatAt())=%v,%v, want %v", back, err, at)
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		code   string
		msg    string
	}{
		{"a bad request", http.StatusBadRequest, CodeInvalidEventID, "eventId must be 1 to 128 characters, got 0"},
		{"an unavailable dependency", http.StatusServiceUnavailable, CodeUnavailable, "nats is not reachable"},
		{"a message with characters that need escaping", http.StatusTooManyRequests, CodeRateLimited, `slow "down" <now> & then`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			rec.Header().Set("Retry-After", "3") // set by callers first; must survive
			WriteError(rec, tt.status, tt.code, tt.msg)
			if rec.Code != tt.status {
				t.Fatalf("status=%d, want %d", rec.Code, tt.status)
			}
			for k, want := range map[string]string{
				"Content-Type":           "application/json",
				"Cache-Control":          "no-store",
				"X-Content-Type-Options": "nosniff",
				"Retry-After":            "3",
			} {
				if got := rec.Header().Get(k); got != want {
					t.Fatalf("header %s=%q, want %q", k, got, want)
				}
			}
			var body map[string]map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", rec.Body.String(), err)
			}
			if len(body) != 1 || len(body["error"]) != 2 || body["error"]["code"] != tt.code || body["error"]["message"] != tt.msg {
				t.Fatalf("body=%v, want {error:{code:%q,message:%q}}", body, tt.code, tt.msg)
			}
		})
	}
}

func TestWriteInputError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		wantCode string
		wantMsg  string
	}{
		{"an input error keeps its code and message", ValidateEventID(""), CodeInvalidEventID, "eventId must be 1 to 128 characters, got 0"},
		{"a wrapped input error is found", errors.Join(errors.New("context"), ValidateType("X")), CodeInvalidType, ""},
		{"a plain error becomes invalid_request", errors.New("body must be an object"), CodeInvalidRequest, "body must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			WriteInputError(rec, tt.err)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status=%d, want 400", rec.Code)
			}
			var body ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if body.Error.Code != tt.wantCode || (tt.wantMsg != "" && body.Error.Message != tt.wantMsg) || body.Error.Message == "" {
				t.Fatalf("body=%+v, want code %q message %q", body, tt.wantCode, tt.wantMsg)
			}
		})
	}
}
