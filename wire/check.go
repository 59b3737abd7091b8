package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The checks every change passes, at the door (the ingest API and the Go
// library) and again wherever a stored message is read (DecodeMessage: the
// poller, the relay, the tail tool). A message written straight to NATS
// skips the door, so readers must refuse exactly what the door refuses:
// otherwise one reader serves what another dead-letters.

// Sentinels inside the *InputError of the checks below.
var (
	ErrInvalidData     = errors.New("invalid data")
	ErrInvalidSocketID = errors.New("invalid socket id")
)

// MaxSocketIDLen bounds a socket id; Pusher's are two integers.
const MaxSocketIDLen = 64

// ValidateSocketID checks a Pusher socket id the way Pusher's libraries do:
// ^\d+\.\d+$, at most MaxSocketIDLen bytes.
func ValidateSocketID(s string) error {
	dot := -1
	ok := len(s) >= 3 && len(s) <= MaxSocketIDLen
	for i := 0; ok && i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' && dot < 0 && i > 0 && i < len(s)-1:
			dot = i
		case c >= '0' && c <= '9':
		default:
			ok = false
		}
	}
	if !ok || dot < 0 {
		return &InputError{Code: CodeInvalidSocketID, Err: ErrInvalidSocketID,
			Msg: fmt.Sprintf("socket id (X-Socket-Id) must be two numbers joined by a dot, like 123.456, at most %d bytes", MaxSocketIDLen)}
	}
	return nil
}

// ValidateData checks a change's data: present, one JSON value, valid UTF-8.
// encoding/json accepts invalid UTF-8 inside strings (and replaces it when
// decoding), but a strict parser refuses the whole document it lands in, so
// one such change would break every answer that carries it.
func ValidateData(data []byte) error {
	if len(data) == 0 {
		return &InputError{Code: CodeInvalidJSON, Err: ErrInvalidData,
			Msg: "data is required (any JSON value; use null for none)"}
	}
	if !json.Valid(data) {
		return &InputError{Code: CodeInvalidJSON, Err: ErrInvalidData, Msg: "data is not valid JSON"}
	}
	if !utf8.Valid(data) {
		return &InputError{Code: CodeInvalidJSON, Err: ErrInvalidData, Msg: "data is not valid UTF-8"}
	}
	return nil
}

// CompactData validates data (ValidateData) and returns it without
// insignificant whitespace. Data that holds no whitespace byte at all is
// returned as it is, without a copy: the common case for machine-written
// JSON. Compacting means a stored change never holds a raw newline, which a
// line protocol such as SSE would split, and costs no bytes it need not.
func CompactData(data []byte) ([]byte, error) {
	if err := ValidateData(data); err != nil {
		return nil, err
	}
	if !bytes.ContainsAny(data, " \t\r\n") {
		return data, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := json.Compact(&buf, data); err != nil {
		// ValidateData passed, so this cannot happen; report it as input
		// all the same rather than store something unchecked.
		return nil, &InputError{Code: CodeInvalidJSON, Err: ErrInvalidData, Msg: "data is not valid JSON"}
	}
	return buf.Bytes(), nil
}

// DedupID returns the Nats-Msg-Id of a change: its id scoped by eventId and,
// when not empty, by scope (the ingest API's key id), so the same id used on
// two eventIds, or by two API keys, names two changes. Scopes hold a '.',
// which no eventId holds, so a scoped and an unscoped id never meet.
func DedupID(scope, eventID, id string) string {
	if scope == "" {
		return eventID + ":" + id
	}
	return scope + ":" + eventID + ":" + id
}

// BodyHash digests a change's type and data (128 bits of SHA-256, base64url):
// the HeaderBodyHash value that tells a retry (same hash) from another change
// reusing the id (a different hash).
func BodyHash(typ string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write(data)
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:16])
}
