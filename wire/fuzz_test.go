package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"
)

// Seed corpora also live in testdata/fuzz/<FuzzName>/.

func FuzzValidateEventID(f *testing.F) {
	for _, s := range []string{"e42", "", "a.b", "A-z_0", "é", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateEventID(id)
		if want := eventIDPattern.MatchString(id); (err == nil) != want {
			t.Fatalf("ValidateEventID(%q)=%v, regexp oracle says valid=%v", id, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalidEventID) {
			t.Fatalf("ValidateEventID(%q)=%v, want ErrInvalidEventID", id, err)
		}
	})
}

func FuzzValidateType(f *testing.F) {
	for _, s := range []string{"vote.updated", "", "a.", ".a", "a..b", "A", "a_1.b2", "final.date.set"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, typ string) {
		err := ValidateType(typ)
		want := len(typ) <= MaxTypeLen && typePattern.MatchString(typ)
		if (err == nil) != want {
			t.Fatalf("ValidateType(%q)=%v, regexp oracle says valid=%v", typ, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalidType) {
			t.Fatalf("ValidateType(%q)=%v, want ErrInvalidType", typ, err)
		}
	})
}

func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"live.events.e42.vote.updated", "live.events.e42", "live.events..x", "live.dlq.e.t", "", "live.events.e.t.", "live.events.*.>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		eventID, typ, err := ParseSubject(subject)
		if err != nil {
			if !errors.Is(err, ErrInvalidSubject) {
				t.Fatalf("ParseSubject(%q)=%v, want ErrInvalidSubject", subject, err)
			}
			return
		}
		if ValidateEventID(eventID) != nil || ValidateType(typ) != nil {
			t.Fatalf("ParseSubject(%q)=(%q,%q) returned invalid parts", subject, eventID, typ)
		}
		if got := Subject(eventID, typ); got != subject {
			t.Fatalf("Subject(ParseSubject(%q))=%q, want the subject back", subject, got)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add("live.events.e42.vote.updated", "01JD", "2026-11-29T10:00:00.123Z", "123.456", []byte(`{"a":1}`), uint64(1))
	f.Add("live.events.e42.vote.updated", "", "", "", []byte(``), uint64(0))
	f.Add("live.events.e42", "x", "bad", "", []byte(`{}`), uint64(2))
	f.Add("live.events.e.t", "nul\x00", "2026-11-29T10:00:00Z", "", []byte(` [1, "\u00e9"] `), uint64(1<<63))
	f.Add("live.events.e.t", "x", "", "", []byte(`{"a":`), uint64(3))
	f.Add("live.events.e.t", "x", "", "", []byte("\"\xff\""), uint64(4))
	f.Add("live.events.e.t", "a\x01b", "", "", []byte(`1`), uint64(5))
	f.Add("live.events.e.t", "x", "", "1.2\n", []byte("{\n \"a\": 1\n}"), uint64(6))
	stored := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, subject, id, at, socket string, body []byte, seq uint64) {
		header := map[string][]string{}
		for k, v := range map[string]string{HeaderMsgID: id, HeaderAt: at, HeaderSocketID: socket} {
			if v != "" {
				header[k] = []string{v}
			}
		}
		env, sock, err := DecodeMessage(subject, header, body, seq, stored)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("DecodeMessage err=%v, want ErrInvalidMessage", err)
			}
			return
		}
		if env.Seq != seq || (sock != socket && sock != "") {
			t.Fatalf("DecodeMessage=%+v sock=%q, want seq %d, sock %q or none", env, sock, seq, socket)
		}
		// What DecodeMessage passes, the ingest API would have accepted.
		if err := ValidateID(env.ID); err != nil && env.ID != "seq-"+strconv.FormatUint(seq, 10) {
			t.Fatalf("DecodeMessage passed id %q: %v", env.ID, err)
		}
		if sock != "" && ValidateSocketID(sock) != nil {
			t.Fatalf("DecodeMessage passed socket id %q", sock)
		}
		if err := ValidateData(env.Data); err != nil || bytes.ContainsAny(env.Data, "\r\n") {
			t.Fatalf("DecodeMessage passed data %q (%v)", env.Data, err)
		}
		b := env.AppendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("envelope JSON is invalid: %s", b)
		}
		var back Envelope
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if back.Seq != env.Seq || back.EventID != env.EventID || back.Type != env.Type {
			t.Fatalf("round trip=%+v, want %+v", back, env)
		}
	})
}
