package wire

import (
	"regexp"
	"strings"
	"testing"
)

// socketIDPattern is the grammar Pusher's libraries check a socket id
// against, an oracle for ValidateSocketID (which also bounds the length).
var socketIDPattern = regexp.MustCompile(`^\d+\.\d+$`)

func TestValidateSocketID(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("1", MaxSocketIDLen/2) + "." + strings.Repeat("2", MaxSocketIDLen/2-1)
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"two integers joined by a dot are valid", "123.456", true},
		{"the shortest is valid", "1.2", true},
		{"zeros are valid", "0.0", true},
		{"exactly MaxSocketIDLen bytes is valid", long, true},
		{"one byte over MaxSocketIDLen is refused", long + "3", false},
		{"an empty id is refused", "", false},
		{"no dot is refused", "123456", false},
		{"a leading dot is refused", ".456", false},
		{"a trailing dot is refused", "123.", false},
		{"two dots are refused", "1.2.3", false},
		{"a letter is refused", "12a.456", false},
		{"a sign is refused", "-1.2", false},
		{"a space is refused", "1. 2", false},
		{"a leading space is refused", " 1.2", false},
		{"a newline is refused because the id travels in a header", "1.2\n", false},
		{"a non-ASCII digit is refused", "١.٢", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkInputError(t, ValidateSocketID(tt.id), tt.ok, CodeInvalidSocketID, ErrInvalidSocketID)
			oracle := socketIDPattern.MatchString(tt.id) && len(tt.id) <= MaxSocketIDLen
			if oracle != tt.ok {
				t.Fatalf("oracle disagrees with the table for %q: %v", tt.id, oracle)
			}
		})
	}
}
