package producer

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadAPIConfigReadsEveryVariable(t *testing.T) {
	t.Parallel()
	got, err := LoadAPIConfig(envOf(map[string]string{
		"LIVE_API_KEYS":              " alpha-key , beta-key,, ",
		"LIVE_API_MAX_EVENT_BYTES":   "32KiB",
		"LIVE_API_MAX_REQUEST_BYTES": "2MiB",
		"LIVE_API_RATE":              "50.5",
		"LIVE_API_BURST":             "800",
		"LIVE_API_PUBLISH_TIMEOUT":   "750ms",
		"LIVE_POLL_SECRET":           "0123456789abcdef",
	}))
	if err != nil {
		t.Fatalf("LoadAPIConfig()=%v", err)
	}
	want := APIConfig{Keys: []string{"alpha-key", "beta-key"}, MaxEventBytes: 32 << 10, MaxRequestBytes: 2 << 20,
		Rate: 50.5, Burst: 800, PublishTimeout: 750 * time.Millisecond, PollSecret: []byte("0123456789abcdef")}
	if fmt.Sprintf("%v|%v", got.Keys, string(got.PollSecret)) != fmt.Sprintf("%v|%v", want.Keys, string(want.PollSecret)) || got.String() != want.String() {
		t.Fatalf("LoadAPIConfig()=%v keys %v, want %v keys %v", got, got.Keys, want, want.Keys)
	}
}

func TestLoadAPIConfigLeavesZeroValuesForTheDefaults(t *testing.T) {
	t.Parallel()
	got, err := LoadAPIConfig(envOf(map[string]string{"LIVE_API_KEYS": "k"}))
	if err != nil {
		t.Fatalf("LoadAPIConfig()=%v", err)
	}
	d := got.withDefaults()
	if d.MaxEventBytes != 64<<10 || d.MaxRequestBytes != 1<<20 || d.Rate != 200 || d.Burst != MaxBatchItems || d.PublishTimeout != 15*time.Second || d.PollSecret != nil {
		t.Fatalf("defaults=%v", d)
	}
}

func TestLoadAPIConfigReportsEveryProblemNamingItsVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no keys at all", map[string]string{}, []string{"LIVE_API_KEYS"}},
		{"only commas", map[string]string{"LIVE_API_KEYS": " , ,"}, []string{"LIVE_API_KEYS"}},
		{"every number malformed at once", map[string]string{
			"LIVE_API_MAX_EVENT_BYTES": "lots", "LIVE_API_MAX_REQUEST_BYTES": "-1",
			"LIVE_API_RATE": "0", "LIVE_API_BURST": "x", "LIVE_API_PUBLISH_TIMEOUT": "soon",
		}, []string{"LIVE_API_KEYS", "LIVE_API_MAX_EVENT_BYTES", "LIVE_API_MAX_REQUEST_BYTES", "LIVE_API_RATE", "LIVE_API_BURST", "LIVE_API_PUBLISH_TIMEOUT"}},
		{"a burst below one full batch", map[string]string{"LIVE_API_KEYS": "k", "LIVE_API_BURST": "10"}, []string{"LIVE_API_BURST"}},
		{"a request limit below the change limit", map[string]string{"LIVE_API_KEYS": "k", "LIVE_API_MAX_EVENT_BYTES": "2MiB"}, []string{"LIVE_API_MAX_REQUEST_BYTES"}},
		{"a short poll secret and no keys", map[string]string{"LIVE_POLL_SECRET": "s3cr3t"}, []string{"LIVE_POLL_SECRET", "LIVE_API_KEYS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadAPIConfig(envOf(tt.env))
			if err == nil {
				t.Fatalf("LoadAPIConfig() succeeded, want errors naming %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("LoadAPIConfig()=%v, want it to name %s", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("LoadAPIConfig()=%v echoes the secret", err)
			}
		})
	}
}

func TestAPIConfigStringRedactsSecrets(t *testing.T) {
	t.Parallel()
	c := APIConfig{Keys: []string{"super-secret-key"}, PollSecret: []byte("poll-secret-value")}
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, "super-secret-key") || strings.Contains(s, "poll-secret-value") {
			t.Fatalf("formatted config %q holds a secret", s)
		}
	}
}
