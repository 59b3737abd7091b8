package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Encodings of Envelope.Data when the relay had to shrink a change for Pusher.
const (
	EncGzipBase64 = "gzip+base64"
)

// TimeFormat is the envelope's "at": RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Envelope is what a browser receives, through Pusher and through the poller
// alike:
//
//	{"id":"01JD...","seq":1042,"eventId":"e42","type":"vote.updated","at":"2026-11-29T10:00:00.123Z","data":{}}
//
// Data is the publisher's JSON, untouched, unless Enc says otherwise; a
// reference (Ref) carries no data and tells the client to fetch the change
// from the poller by seq.
type Envelope struct {
	ID        string          `json:"id"`
	Seq       uint64          `json:"seq"`
	EventID   string          `json:"eventId"`
	Type      string          `json:"type"`
	At        time.Time       `json:"-"`
	Enc       string          `json:"enc,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Ref       bool            `json:"ref,omitempty"`
	Coalesced int             `json:"coalesced,omitempty"`
}

// MarshalJSON writes the envelope with "at" in TimeFormat and the fields in
// the documented order. It is hand-written because the poller encodes every
// change once and the relay encodes every change it sends.
func (e Envelope) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 128+len(e.Data))), nil
}

// AppendJSON appends the envelope's JSON to b.
func (e Envelope) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	// The id comes from a header anyone publishing by hand can set, so it
	// is escaped as JSON; strconv.AppendQuote writes Go escapes such as
	// \x00 that are not JSON.
	b = AppendJSONString(b, e.ID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"eventId":`...)
	b = AppendJSONString(b, e.EventID)
	b = append(b, `,"type":`...)
	b = AppendJSONString(b, e.Type)
	b = append(b, `,"at":"`...)
	b = e.At.UTC().AppendFormat(b, TimeFormat)
	b = append(b, '"')
	if e.Enc != "" {
		b = append(b, `,"enc":`...)
		b = AppendJSONString(b, e.Enc)
	}
	if e.Ref {
		b = append(b, `,"ref":true`...)
	}
	if e.Coalesced > 0 {
		b = append(b, `,"coalesced":`...)
		b = strconv.AppendInt(b, int64(e.Coalesced), 10)
	}
	if len(e.Data) > 0 && !e.Ref {
		b = append(b, `,"data":`...)
		b = append(b, e.Data...)
	}
	return append(b, '}')
}

// AppendJSONString appends s as a JSON string, for the hand-written encoders
// of the hot paths (every role uses this one). Validated names and ids are
// plain ASCII and take the fast path; anything else goes through
// encoding/json, which escapes control bytes and replaces invalid UTF-8.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// UnmarshalJSON reads an envelope written by MarshalJSON.
func (e *Envelope) UnmarshalJSON(b []byte) error {
	type plain Envelope
	var aux struct {
		plain
		At string `json:"at"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*e = Envelope(aux.plain)
	if aux.At != "" {
		t, err := time.Parse(time.RFC3339Nano, aux.At)
		if err != nil {
			return fmt.Errorf("envelope at %q: %w", aux.At, err)
		}
		e.At = t
	}
	return nil
}

// ErrInvalidMessage is wrapped by DecodeMessage for a stored message that is
// not a well-formed change; such a message is dead-lettered or skipped, never
// passed on.
var ErrInvalidMessage = errors.New("invalid stream message")

// DecodeMessage builds the envelope of a message read from StreamName and
// applies every check the ingest API applies, so a message written straight
// to NATS is refused by every reader alike. The body is the publisher's data
// (valid JSON and valid UTF-8; an empty body reads as null; a body holding
// raw newlines is compacted, since SSE would split it); eventId and type
// come from the subject (ParseSubject); the id from HeaderID, else
// HeaderMsgID (messages published by hand), else "seq-<seq>", and it must
// pass ValidateID (no control bytes, at most MaxIDLen). at comes from
// HeaderAt, else stored, the stream's own timestamp. The socket id is
// returned only when it passes ValidateSocketID: a bad one only means the
// sender sees its own change. header is a nats.Header, which has this
// underlying type. Every error wraps ErrInvalidMessage.
func DecodeMessage(subject string, header map[string][]string, body []byte, seq uint64, stored time.Time) (Envelope, string, error) {
	eventID, typ, err := ParseSubject(subject)
	if err != nil {
		return Envelope{}, "", fmt.Errorf("%w: seq %d: %w", ErrInvalidMessage, seq, err)
	}
	env := Envelope{Seq: seq, EventID: eventID, Type: typ, At: stored}
	env.ID = first(header, HeaderID)
	if env.ID == "" {
		env.ID = first(header, HeaderMsgID)
	}
	if env.ID == "" {
		// Published by hand without an id (nats pub): the seq is unique.
		env.ID = "seq-" + strconv.FormatUint(seq, 10)
	} else if err := ValidateID(env.ID); err != nil {
		return Envelope{}, "", fmt.Errorf("%w: seq %d: %w", ErrInvalidMessage, seq, err)
	}
	if at := first(header, HeaderAt); at != "" {
		// A time whose UTC year falls outside 0000-9999 would be written as
		// an "at" that RFC 3339 parsers (UnmarshalJSON, browsers) refuse.
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil && t.UTC().Year() >= 0 && t.UTC().Year() <= 9999 {
			env.At = t
		}
	}
	if len(body) == 0 {
		body = []byte("null")
	}
	if err := ValidateData(body); err != nil {
		return Envelope{}, "", fmt.Errorf("%w: seq %d: %w", ErrInvalidMessage, seq, err)
	}
	if bytes.ContainsAny(body, "\r\n") {
		// Stored before the producer compacted, or written by hand.
		var buf bytes.Buffer
		if err := json.Compact(&buf, body); err != nil {
			return Envelope{}, "", fmt.Errorf("%w: seq %d: data is not valid JSON: %w", ErrInvalidMessage, seq, err)
		}
		body = buf.Bytes()
	}
	env.Data = bytes.TrimSpace(body)
	socketID := first(header, HeaderSocketID)
	if socketID != "" && ValidateSocketID(socketID) != nil {
		socketID = ""
	}
	return env, socketID, nil
}

func first(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// MaxIDLen bounds a client-given id (Idempotency-Key).
const MaxIDLen = 128

// ErrInvalidID is wrapped by ValidateID.
var ErrInvalidID = errors.New("invalid id")

// ValidateID checks a client-given change id: 1 to 128 of A-Z a-z 0-9 and
// _ - . : (it travels as a header value and as a JSON string).
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return &InputError{Code: CodeInvalidID, Err: ErrInvalidID,
			Msg: fmt.Sprintf("id (Idempotency-Key) must be 1 to %d characters, got %d", MaxIDLen, len(id))}
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isIDByte(c) && c != '.' && c != ':' {
			return &InputError{Code: CodeInvalidID, Err: ErrInvalidID,
				Msg: fmt.Sprintf("id (Idempotency-Key) may hold only A-Z a-z 0-9 _ - . :, found %q at offset %d", safeByte(c), i)}
		}
	}
	return nil
}

var (
	entropyMu sync.Mutex
	entropy   = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a new ULID: unique, and sortable by creation time, so ids the
// service generates order like the changes they name.
func NewID(now time.Time) string {
	entropyMu.Lock()
	defer entropyMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(now), entropy).String()
}

// FormatAt formats t as the envelope's "at" (and the Live-At header).
func FormatAt(t time.Time) string {
	return t.UTC().Format(TimeFormat)
}
