package wire

import (
	"strings"
	"testing"
)

// TestPusherChannelAuthSignsTheDocumentedVector is the worked example of
// Pusher's auth-signature documentation.
func TestPusherChannelAuthSignsTheDocumentedVector(t *testing.T) {
	t.Parallel()
	got := PusherChannelAuth("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", "private-foobar")
	want := "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
	if got != want {
		t.Fatalf("PusherChannelAuth()=%s, want %s", got, want)
	}
}

func TestValidateChannelPrefix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		prefix  string
		private bool
		ok      bool
	}{
		{"event-", false, true},
		{"event-", true, true},
		{"a_b=c@d,e.f;g-", false, true},
		{"", false, true},
		{"event ", false, false},
		{"évent-", false, false},
		{"event/", false, false},
		{strings.Repeat("p", MaxPusherChannelLen-MaxEventIDLen), false, true},
		{strings.Repeat("p", MaxPusherChannelLen-MaxEventIDLen), true, false},
		{strings.Repeat("p", MaxPusherChannelLen-MaxEventIDLen+1), false, false},
	} {
		if err := ValidateChannelPrefix(tt.prefix, tt.private); (err == nil) != tt.ok {
			t.Errorf("ValidateChannelPrefix(%q, %v)=%v, want ok=%v", tt.prefix, tt.private, err, tt.ok)
		}
	}
}
