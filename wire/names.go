package wire

import (
	"errors"
	"fmt"
	"strings"
)

// Stream and subject names shared by the producer, the relay and the poller.
const (
	// StreamName is the JetStream stream every change is stored in.
	StreamName = "LIVE_EVENTS"
	// SubjectPrefix starts every change subject: live.events.<eventId>.<type>.
	SubjectPrefix = "live.events."
	// StreamSubjects is the subject filter of StreamName.
	StreamSubjects = "live.events.>"

	// DLQStreamName holds changes the relay could not deliver to Pusher.
	DLQStreamName = "LIVE_DLQ"
	// DLQSubjectPrefix starts every dead-letter subject: live.dlq.<eventId>.<type>.
	DLQSubjectPrefix = "live.dlq."
	// DLQStreamSubjects is the subject filter of DLQStreamName.
	DLQStreamSubjects = "live.dlq.>"
)

// Message headers. Nats-Msg-Id is JetStream's own dedup header; the others
// are ours and carry what the envelope needs beyond the subject and the body.
const (
	// HeaderMsgID is JetStream's dedup key: a second message with the same
	// value inside the stream's duplicate window is not stored. The producer
	// writes a scoped form (DedupID), so two API keys or two eventIds using
	// the same change id never collide; readers take the change id from
	// HeaderID and fall back to this header only for messages without one.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderID carries the change's id as the publisher knows it (the
	// Idempotency-Key, or a generated ULID): the envelope's "id".
	HeaderID = "Live-Id"
	// HeaderBodyHash carries a digest of a change's type and data (BodyHash),
	// so a second publish with the same id can be told apart from a retry.
	HeaderBodyHash = "Live-Body-Hash"
	// HeaderAt carries the publish time as RFC 3339 with milliseconds, UTC.
	HeaderAt = "Live-At"
	// HeaderSocketID carries the publisher's Pusher socket id (from the
	// ingest API's X-Socket-Id) so the relay can exclude the sender.
	HeaderSocketID = "Live-Socket-Id"

	// Dead-letter headers written by the relay.
	HeaderDLQStatus   = "Live-Dlq-Status"   // HTTP status Pusher answered, or 0
	HeaderDLQReason   = "Live-Dlq-Reason"   // why the change was dead-lettered
	HeaderDLQAttempts = "Live-Dlq-Attempts" // delivery attempts made
	HeaderDLQSeq      = "Live-Dlq-Seq"      // the change's seq in StreamName
	// HeaderDLQID carries, on a dead letter, the change id the original
	// message had in Nats-Msg-Id (or "seq-<seq>" when it had none); the
	// dead letter's own Nats-Msg-Id is "dlq-<seq>", so replicas
	// dead-lettering the same change store it once.
	HeaderDLQID = "Live-Dlq-Id"
	// HeaderDLQOrigPrefix goes before the name of each NATS control header
	// (Nats-*) the original message carried: a dead letter keeps those
	// values under Live-Dlq-Orig-<name> instead of the name itself, because
	// JetStream would act on them (Nats-Expected-Stream: LIVE_EVENTS makes
	// LIVE_DLQ refuse the letter with err_code 10060).
	HeaderDLQOrigPrefix = "Live-Dlq-Orig-"
)

// Known change types. Others are allowed where configured.
const (
	TypeVoteUpdated         = "vote.updated"
	TypeBlocksUpdated       = "blocks.updated"
	TypePhaseChanged        = "phase.changed"
	TypeFinalDateSet        = "final.date.set"
	TypeAttendeeUpdated     = "attendee.updated"
	TypeAvailabilityUpdated = "availability.updated"
)

// KnownTypes lists the documented change types in a stable order.
func KnownTypes() []string {
	return []string{
		TypeVoteUpdated, TypeBlocksUpdated, TypePhaseChanged,
		TypeFinalDateSet, TypeAttendeeUpdated, TypeAvailabilityUpdated,
	}
}

// IsKnownType reports whether t is one of KnownTypes.
func IsKnownType(t string) bool {
	switch t {
	case TypeVoteUpdated, TypeBlocksUpdated, TypePhaseChanged,
		TypeFinalDateSet, TypeAttendeeUpdated, TypeAvailabilityUpdated:
		return true
	}
	return false
}

// Limits of the names on the wire.
const (
	MaxEventIDLen = 128
	MaxTypeLen    = 64
)

// Sentinel errors for invalid names; the concrete error is an *InputError
// that wraps one of them and carries the wire code.
var (
	ErrInvalidEventID = errors.New("invalid eventId")
	ErrInvalidType    = errors.New("invalid type")
	ErrInvalidSubject = errors.New("invalid subject")
)

// ValidateEventID checks an eventId: 1 to 128 of A-Z a-z 0-9 _ -. Such an id
// is at once a single NATS subject token and a valid Pusher channel suffix.
func ValidateEventID(id string) error {
	if len(id) == 0 || len(id) > MaxEventIDLen {
		return &InputError{Code: CodeInvalidEventID, Err: ErrInvalidEventID,
			Msg: fmt.Sprintf("eventId must be 1 to %d characters, got %d", MaxEventIDLen, len(id))}
	}
	for i := 0; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return &InputError{Code: CodeInvalidEventID, Err: ErrInvalidEventID,
				Msg: fmt.Sprintf("eventId may hold only A-Z a-z 0-9 _ -, found %q at offset %d", safeByte(id[i]), i)}
		}
	}
	return nil
}

// ValidateType checks a change type: lower-case dotted words matching
// ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$, at most 64 bytes.
func ValidateType(t string) error {
	if len(t) == 0 || len(t) > MaxTypeLen {
		return &InputError{Code: CodeInvalidType, Err: ErrInvalidType,
			Msg: fmt.Sprintf("type must be 1 to %d bytes, got %d", MaxTypeLen, len(t))}
	}
	wordStart := true
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case wordStart:
			if c < 'a' || c > 'z' {
				return &InputError{Code: CodeInvalidType, Err: ErrInvalidType,
					Msg: fmt.Sprintf("type must be lower-case dotted words (like vote.updated); each word starts with a-z, found %q at offset %d", safeByte(c), i)}
			}
			wordStart = false
		case c == '.':
			wordStart = true
		case (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_':
		default:
			return &InputError{Code: CodeInvalidType, Err: ErrInvalidType,
				Msg: fmt.Sprintf("type may hold only a-z 0-9 _ and dots between words, found %q at offset %d", safeByte(c), i)}
		}
	}
	if wordStart { // ends with a dot
		return &InputError{Code: CodeInvalidType, Err: ErrInvalidType,
			Msg: "type must not end with a dot"}
	}
	return nil
}

func isIDByte(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
}

// safeByte renders a byte for an error message without echoing control or
// non-ASCII bytes verbatim into logs and JSON.
func safeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return fmt.Sprintf("\\x%02x", c)
}

// Subject returns live.events.<eventID>.<typ>. Callers validate first.
func Subject(eventID, typ string) string {
	return SubjectPrefix + eventID + "." + typ
}

// DLQSubject returns live.dlq.<eventID>.<typ>.
func DLQSubject(eventID, typ string) string {
	return DLQSubjectPrefix + eventID + "." + typ
}

// EventSubjectFilter returns the subject filter matching every change of one
// eventId: live.events.<eventID>.>.
func EventSubjectFilter(eventID string) string {
	return SubjectPrefix + eventID + ".>"
}

// ParseSubject splits live.events.<eventId>.<type> and validates both parts,
// so a message read from the stream is checked like any other input.
func ParseSubject(subject string) (eventID, typ string, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: %q does not start with %q", ErrInvalidSubject, subject, SubjectPrefix)
	}
	eventID, typ, ok = strings.Cut(rest, ".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q has no type", ErrInvalidSubject, subject)
	}
	if err := ValidateEventID(eventID); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrInvalidSubject, err)
	}
	if err := ValidateType(typ); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrInvalidSubject, err)
	}
	return eventID, typ, nil
}
