package env

import (
	"math"
	"testing"
)

func TestParseBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"a plain number is bytes", "1048576", 1 << 20, false},
		{"B is bytes", "512B", 512, false},
		{"KiB is 1024", "64KiB", 64 << 10, false},
		{"MiB is 1024^2", "512MiB", 512 << 20, false},
		{"GiB is 1024^3", "1GiB", 1 << 30, false},
		{"KB is read as 1024 like NATS", "2KB", 2 << 10, false},
		{"MB is read as 1024^2", "3MB", 3 << 20, false},
		{"GB is read as 1024^3", "4GB", 4 << 30, false},
		{"K alone is 1024", "5K", 5 << 10, false},
		{"M alone is 1024^2", "6M", 6 << 20, false},
		{"G alone is 1024^3", "7G", 7 << 30, false},
		{"spaces around and before the unit are allowed", " 8 GiB ", 8 << 30, false},
		{"minus one stays minus one", "-1", -1, false},
		{"zero parses", "0", 0, false},
		{"the largest int64 parses", "9223372036854775807", math.MaxInt64, false},
		{"an empty string is refused", "", 0, true},
		{"a unit alone is refused", "GiB", 0, true},
		{"lower-case units are refused", "1gib", 0, true},
		{"a fraction is refused", "1.5GiB", 0, true},
		{"an unknown unit is refused", "1PB", 0, true},
		{"a product over int64 is refused", "8589934592GiB", 0, true},
		{"a product that would wrap to a small positive size is refused", "17179869185GiB", 0, true},
		{"a negative product under int64 is refused", "-8589934593GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseBytes(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseBytes(%q)=%d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseBytes(%q)=%d,%v, want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzParseBytes: every accepted size formats back to itself, and nothing
// panics.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "-1", "64KiB", "1GiB", " 8 GiB ", "17179869185GiB", "1.5M", "GiB", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			return
		}
		back, err := ParseBytes(FormatBytes(n))
		if err != nil || back != n {
			t.Fatalf("ParseBytes(%q)=%d, but FormatBytes gives %q which reads as %d,%v", s, n, FormatBytes(n), back, err)
		}
	})
}
