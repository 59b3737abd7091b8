package wire

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// The documented grammars, compiled as oracles for the hand-written checks.
var (
	eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	typePattern    = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
)

// checkInputError asserts that err is nil when ok, and otherwise an
// *InputError with code that unwraps to sentinel.
func checkInputError(t *testing.T, err error, ok bool, code string, sentinel error) {
	t.Helper()
	if ok {
		if err != nil {
			t.Fatalf("err=%v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("err=nil, want %v", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("err=%v, want it to wrap %v", err, sentinel)
	}
	ie, isInput := errors.AsType[*InputError](err)
	if !isInput {
		t.Fatalf("err=%T, want *InputError", err)
	}
	if ie.Code != code {
		t.Fatalf("code=%q, want %q", ie.Code, code)
	}
	if ie.Msg == "" || ie.Error() != ie.Msg {
		t.Fatalf("message=%q, Error()=%q: want a non-empty message returned by Error()", ie.Msg, ie.Error())
	}
}

func TestValidateEventID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"a short alphanumeric id is valid", "e42", true},
		{"upper case, digits, underscore and hyphen are valid", "Ab_9-Z", true},
		{"a single character is valid", "x", true},
		{"exactly 128 characters is valid", strings.Repeat("a", 128), true},
		{"an empty id is refused", "", false},
		{"129 characters is refused", strings.Repeat("a", 129), false},
		{"a dot is refused because it splits NATS tokens", "e.42", false},
		{"a star wildcard is refused", "e*", false},
		{"a greater-than wildcard is refused", ">", false},
		{"a space is refused", "e 42", false},
		{"a slash is refused", "e/42", false},
		{"a control byte is refused", "e\x00", false},
		{"a non-ASCII letter is refused", "é", false},
		{"an equals sign (allowed in Pusher channels) is refused", "e=1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkInputError(t, ValidateEventID(tt.id), tt.ok, CodeInvalidEventID, ErrInvalidEventID)
			if got := eventIDPattern.MatchString(tt.id); got != tt.ok {
				t.Fatalf("oracle disagrees with the table for %q: regexp=%v", tt.id, got)
			}
		})
	}
}

func TestValidateEventIDMessageDoesNotEchoControlBytes(t *testing.T) {
	t.Parallel()
	err := ValidateEventID("ab\x01")
	if err == nil {
		t.Fatal("ValidateEventID accepted a control byte")
	}
	if strings.ContainsRune(err.Error(), '\x01') {
		t.Fatalf("message %q echoes the control byte", err.Error())
	}
	if !strings.Contains(err.Error(), "offset 2") {
		t.Fatalf("message %q does not name the offset", err.Error())
	}
}

func TestValidateType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  string
		ok   bool
	}{
		{"every known type is valid", TypeVoteUpdated, true},
		{"a single word is valid", "ping", true},
		{"three words are valid", "final.date.set", true},
		{"digits and underscores after the first letter are valid", "a1_b.c2_", true},
		{"exactly 64 bytes is valid", strings.Repeat("a", 64), true},
		{"65 bytes is refused", strings.Repeat("a", 65), false},
		{"an empty type is refused", "", false},
		{"upper case is refused", "Vote.updated", false},
		{"a word starting with a digit is refused", "vote.1st", false},
		{"a word starting with an underscore is refused", "_vote", false},
		{"a leading dot is refused", ".vote", false},
		{"a trailing dot is refused", "vote.", false},
		{"two dots in a row are refused", "vote..updated", false},
		{"a hyphen is refused", "vote-updated", false},
		{"a space is refused", "vote updated", false},
		{"a NATS wildcard is refused", "vote.*", false},
		{"a greater-than wildcard is refused", "vote.>", false},
		{"a non-ASCII byte is refused", "vöte", false},
		{"a NUL byte is refused", "vote\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkInputError(t, ValidateType(tt.typ), tt.ok, CodeInvalidType, ErrInvalidType)
			want := typePattern.MatchString(tt.typ) && len(tt.typ) <= MaxTypeLen
			if want != tt.ok {
				t.Fatalf("oracle disagrees with the table for %q: regexp=%v", tt.typ, want)
			}
		})
	}
}

func TestKnownTypesAreValidAndKnown(t *testing.T) {
	t.Parallel()
	known := KnownTypes()
	if len(known) != 6 {
		t.Fatalf("KnownTypes()=%v, want the six documented types", known)
	}
	for _, typ := range known {
		if err := ValidateType(typ); err != nil {
			t.Errorf("ValidateType(%q)=%v, want nil", typ, err)
		}
		if !IsKnownType(typ) {
			t.Errorf("IsKnownType(%q)=false, want true", typ)
		}
	}
	for _, typ := range []string{"", "vote", "vote.updated.x", "custom.thing"} {
		if IsKnownType(typ) {
			t.Errorf("IsKnownType(%q)=true, want false", typ)
		}
	}
}

func TestValidateID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"a ULID is valid", "01JD5Z8X3K9Q2W4E6R7T8Y9U0I", true},
		{"dots and colons are valid", "order:42.v1", true},
		{"underscores and hyphens are valid", "a_b-c", true},
		{"a single character is valid", "1", true},
		{"exactly 128 characters is valid", strings.Repeat("k", 128), true},
		{"an empty id is refused", "", false},
		{"129 characters is refused", strings.Repeat("k", 129), false},
		{"a space is refused", "a b", false},
		{"a slash is refused", "a/b", false},
		{"a quote is refused", `a"b`, false},
		{"a newline is refused because the id travels in a header", "a\nb", false},
		{"a non-ASCII letter is refused", "ü", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkInputError(t, ValidateID(tt.id), tt.ok, CodeInvalidID, ErrInvalidID)
			if got := idPattern.MatchString(tt.id); got != tt.ok {
				t.Fatalf("oracle disagrees with the table for %q: regexp=%v", tt.id, got)
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		subject   string
		eventID   string
		typ       string
		wantErr   bool
		wantInner error // also wrapped, besides ErrInvalidSubject
	}{
		{"a known type parses", "live.events.e42.vote.updated", "e42", "vote.updated", false, nil},
		{"a three-word type keeps its dots", "live.events.e42.final.date.set", "e42", "final.date.set", false, nil},
		{"a single-word type parses", "live.events.E_1-x.ping", "E_1-x", "ping", false, nil},
		{"another prefix is refused", "live.dlq.e42.vote.updated", "", "", true, nil},
		{"the prefix without the trailing dot is refused", "live.events", "", "", true, nil},
		{"a subject without a type is refused", "live.events.e42", "", "", true, nil},
		{"an empty eventId is refused", "live.events..vote.updated", "", "", true, ErrInvalidEventID},
		{"a wildcard eventId is refused", "live.events.*.vote.updated", "", "", true, ErrInvalidEventID},
		{"an empty type is refused", "live.events.e42.", "", "", true, ErrInvalidType},
		{"an upper-case type is refused", "live.events.e42.Vote", "", "", true, ErrInvalidType},
		{"a trailing dot is refused", "live.events.e42.vote.", "", "", true, ErrInvalidType},
		{"a full wildcard type is refused", "live.events.e42.>", "", "", true, ErrInvalidType},
		{"an empty subject is refused", "", "", "", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eventID, typ, err := ParseSubject(tt.subject)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidSubject) {
					t.Fatalf("ParseSubject(%q) err=%v, want ErrInvalidSubject", tt.subject, err)
				}
				if tt.wantInner != nil && !errors.Is(err, tt.wantInner) {
					t.Fatalf("ParseSubject(%q) err=%v, want it to wrap %v too", tt.subject, err, tt.wantInner)
				}
				if eventID != "" || typ != "" {
					t.Fatalf("ParseSubject(%q)=(%q,%q) with an error, want empty parts", tt.subject, eventID, typ)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSubject(%q) err=%v", tt.subject, err)
			}
			if eventID != tt.eventID || typ != tt.typ {
				t.Fatalf("ParseSubject(%q)=(%q,%q), want (%q,%q)", tt.subject, eventID, typ, tt.eventID, tt.typ)
			}
		})
	}
}

func TestSubjectsRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		eventID string
		typ     string
		subject string
		dlq     string
		filter  string
	}{
		{"a known type", "e42", "vote.updated", "live.events.e42.vote.updated", "live.dlq.e42.vote.updated", "live.events.e42.>"},
		{"a three-word type", "Z-9_", "final.date.set", "live.events.Z-9_.final.date.set", "live.dlq.Z-9_.final.date.set", "live.events.Z-9_.>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Subject(tt.eventID, tt.typ); got != tt.subject {
				t.Fatalf("Subject()=%q, want %q", got, tt.subject)
			}
			if got := DLQSubject(tt.eventID, tt.typ); got != tt.dlq {
				t.Fatalf("DLQSubject()=%q, want %q", got, tt.dlq)
			}
			if got := EventSubjectFilter(tt.eventID); got != tt.filter {
				t.Fatalf("EventSubjectFilter()=%q, want %q", got, tt.filter)
			}
			eventID, typ, err := ParseSubject(Subject(tt.eventID, tt.typ))
			if err != nil || eventID != tt.eventID || typ != tt.typ {
				t.Fatalf("ParseSubject(Subject())=(%q,%q,%v), want (%q,%q,nil)", eventID, typ, err, tt.eventID, tt.typ)
			}
			if !strings.HasPrefix(tt.subject, SubjectPrefix) || !strings.HasPrefix(tt.dlq, DLQSubjectPrefix) {
				t.Fatalf("subjects %q, %q do not start with the documented prefixes", tt.subject, tt.dlq)
			}
		})
	}
	if StreamSubjects != SubjectPrefix+">" || DLQStreamSubjects != DLQSubjectPrefix+">" {
		t.Fatalf("stream filters %q, %q do not cover their prefixes", StreamSubjects, DLQStreamSubjects)
	}
}
