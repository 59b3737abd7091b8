package stream

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

func getenv(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig(getenv(nil))
	if err != nil {
		t.Fatalf("LoadConfig(empty)=%v", err)
	}
	want := Config{
		Name: wire.StreamName, Subjects: []string{wire.StreamSubjects}, Storage: jetstream.FileStorage,
		MaxAge: 24 * time.Hour, MaxBytes: 1 << 30, MaxMsgSize: 1 << 20, Replicas: 1, Duplicates: 2 * time.Minute,
	}
	if !equalConfig(c, want) {
		t.Fatalf("LoadConfig(empty)=%+v, want %+v", c, want)
	}
	if !equalConfig(Config{}.WithDefaults(), want) {
		t.Fatalf("Config{}.WithDefaults()=%+v, want %+v", Config{}.WithDefaults(), want)
	}
}

func equalConfig(a, b Config) bool {
	return a.Name == b.Name && slices.Equal(a.Subjects, b.Subjects) && a.Storage == b.Storage && a.MaxAge == b.MaxAge &&
		a.MaxBytes == b.MaxBytes && a.MaxMsgSize == b.MaxMsgSize && a.Replicas == b.Replicas && a.Duplicates == b.Duplicates
}

func TestLoadConfigReadsEachVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		key   string
		value string
		check func(Config) bool
	}{
		{"file storage", "LIVE_STREAM_STORAGE", "file", func(c Config) bool { return c.Storage == jetstream.FileStorage }},
		{"memory storage in any case", "LIVE_STREAM_STORAGE", "Memory", func(c Config) bool { return c.Storage == jetstream.MemoryStorage }},
		{"a max age", "LIVE_STREAM_MAX_AGE", "90m", func(c Config) bool { return c.MaxAge == 90*time.Minute }},
		{"max bytes with a suffix", "LIVE_STREAM_MAX_BYTES", "512MiB", func(c Config) bool { return c.MaxBytes == 512<<20 }},
		{"unlimited max bytes", "LIVE_STREAM_MAX_BYTES", "-1", func(c Config) bool { return c.MaxBytes == -1 }},
		{"three replicas", "LIVE_STREAM_REPLICAS", "3", func(c Config) bool { return c.Replicas == 3 }},
		{"five replicas", "LIVE_STREAM_REPLICAS", "5", func(c Config) bool { return c.Replicas == 5 }},
		{"a duplicate window", "LIVE_STREAM_DUPLICATES", "10m", func(c Config) bool { return c.Duplicates == 10*time.Minute }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := LoadConfig(getenv(map[string]string{tt.key: tt.value}))
			if err != nil {
				t.Fatalf("LoadConfig(%s=%q)=%v", tt.key, tt.value, err)
			}
			if !tt.check(c) {
				t.Fatalf("LoadConfig(%s=%q)=%+v, value not applied", tt.key, tt.value, c)
			}
		})
	}
}

func TestLoadConfigRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		key   string
		value string
	}{
		{"an unknown storage", "LIVE_STREAM_STORAGE", "disk"},
		{"an unparsable max age", "LIVE_STREAM_MAX_AGE", "a day"},
		{"a zero max age", "LIVE_STREAM_MAX_AGE", "0s"},
		{"a negative max age", "LIVE_STREAM_MAX_AGE", "-1h"},
		{"an unparsable max bytes", "LIVE_STREAM_MAX_BYTES", "lots"},
		{"a zero max bytes", "LIVE_STREAM_MAX_BYTES", "0"},
		{"a negative max bytes other than -1", "LIVE_STREAM_MAX_BYTES", "-2"},
		{"an overflowing max bytes", "LIVE_STREAM_MAX_BYTES", "17179869185GiB"},
		{"zero replicas", "LIVE_STREAM_REPLICAS", "0"},
		{"six replicas", "LIVE_STREAM_REPLICAS", "6"},
		{"non-numeric replicas", "LIVE_STREAM_REPLICAS", "three"},
		{"an unparsable duplicate window", "LIVE_STREAM_DUPLICATES", "2 minutes"},
		{"a zero duplicate window", "LIVE_STREAM_DUPLICATES", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadConfig(getenv(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Fatalf("LoadConfig(%s=%q) accepted it", tt.key, tt.value)
			}
			if !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.value) {
				t.Fatalf("LoadConfig(%s=%q)=%q, want the error to name the variable and value", tt.key, tt.value, err)
			}
		})
	}
}

func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"LIVE_STREAM_STORAGE":    "tape",
		"LIVE_STREAM_MAX_AGE":    "forever",
		"LIVE_STREAM_MAX_BYTES":  "0",
		"LIVE_STREAM_REPLICAS":   "9",
		"LIVE_STREAM_DUPLICATES": "-1m",
	}
	_, err := LoadConfig(getenv(bad))
	if err == nil {
		t.Fatal("LoadConfig accepted five bad values")
	}
	for k := range bad {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != len(bad) {
		t.Fatalf("error %T is not a join of %d errors", err, len(bad))
	}
}

func TestDLQConfig(t *testing.T) {
	t.Parallel()
	c := Config{Storage: jetstream.MemoryStorage, MaxBytes: 5 << 20, Replicas: 3, MaxMsgSize: 4096, Duplicates: time.Minute, MaxAge: time.Hour}
	d := c.DLQ()
	want := Config{
		Name: wire.DLQStreamName, Subjects: []string{wire.DLQStreamSubjects}, Storage: jetstream.MemoryStorage,
		MaxAge: 7 * 24 * time.Hour, MaxBytes: 5 << 20, MaxMsgSize: 4096, Replicas: 3, Duplicates: time.Minute,
	}
	if !equalConfig(d, want) {
		t.Fatalf("DLQ()=%+v, want %+v", d, want)
	}
	if def := (Config{}).DLQ(); def.Replicas != 1 || def.MaxBytes != 1<<30 || def.Storage != jetstream.FileStorage {
		t.Fatalf("Config{}.DLQ()=%+v, want the defaults of the main stream", def)
	}
}

func TestJetStreamConfig(t *testing.T) {
	t.Parallel()
	sc := Config{Replicas: 3}.JetStreamConfig()
	if sc.Name != wire.StreamName || !slices.Equal(sc.Subjects, []string{wire.StreamSubjects}) || sc.Storage != jetstream.FileStorage ||
		sc.Retention != jetstream.LimitsPolicy || sc.Discard != jetstream.DiscardOld || sc.MaxMsgs != -1 || !sc.AllowDirect ||
		sc.Replicas != 3 || sc.Duplicates != 2*time.Minute || sc.MaxAge != 24*time.Hour || sc.MaxBytes != 1<<30 || sc.MaxMsgSize != 1<<20 {
		t.Fatalf("JetStreamConfig()=%+v, not the documented shape", sc)
	}
}

func TestEnsureCreatesTheStream(t *testing.T) {
	t.Parallel()
	js := testutil.RunJetStream(t).JS(t)
	c := Config{MaxAge: time.Hour, MaxBytes: 64 << 20, Duplicates: 5 * time.Minute}
	s, changes, err := Ensure(t.Context(), js, c)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if len(changes) != 0 {
		t.Fatalf("Ensure on a new stream reported changes %v", changes)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	got := info.Config
	if got.Name != wire.StreamName || !slices.Equal(got.Subjects, []string{wire.StreamSubjects}) ||
		got.Storage != jetstream.FileStorage || got.Retention != jetstream.LimitsPolicy ||
		got.MaxAge != time.Hour || got.MaxBytes != 64<<20 || got.MaxMsgSize != 1<<20 ||
		got.Duplicates != 5*time.Minute || got.Replicas != 1 || !got.AllowDirect || got.Discard != jetstream.DiscardOld {
		t.Fatalf("stream config=%+v, not the configured shape", got)
	}

	// A second Ensure is a no-op.
	_, changes, err = Ensure(t.Context(), js, c)
	if err != nil || len(changes) != 0 {
		t.Fatalf("second Ensure=%v,%v, want no changes and no error", changes, err)
	}

	// The DLQ stream sits beside it.
	if _, _, err := Ensure(t.Context(), js, c.DLQ()); err != nil {
		t.Fatalf("Ensure DLQ: %v", err)
	}
	dlq, err := js.Stream(t.Context(), wire.DLQStreamName)
	if err != nil {
		t.Fatalf("DLQ stream: %v", err)
	}
	if cfg := dlq.CachedInfo().Config; !slices.Equal(cfg.Subjects, []string{wire.DLQStreamSubjects}) || cfg.MaxAge != 7*24*time.Hour {
		t.Fatalf("DLQ config=%+v", cfg)
	}
}

func TestEnsureUpdatesChangedLimits(t *testing.T) {
	t.Parallel()
	js := testutil.RunJetStream(t).JS(t)
	old := Config{MaxAge: time.Hour, MaxBytes: 64 << 20, Duplicates: time.Minute}
	if _, _, err := Ensure(t.Context(), js, old); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	tests := []struct {
		name   string
		cfg    Config
		field  string
		oldVal string
		newVal string
	}{
		{"a longer max age", Config{MaxAge: 2 * time.Hour, MaxBytes: 64 << 20, Duplicates: time.Minute}, "max_age", "1h0m0s", "2h0m0s"},
		{"a larger max bytes", Config{MaxAge: 2 * time.Hour, MaxBytes: 128 << 20, Duplicates: time.Minute}, "max_bytes", "67108864", "134217728"},
		{"a longer duplicate window", Config{MaxAge: 2 * time.Hour, MaxBytes: 128 << 20, Duplicates: 3 * time.Minute}, "duplicate_window", "1m0s", "3m0s"},
	}
	// Sequential: each step changes the same stream one field further.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, changes, err := Ensure(t.Context(), js, tt.cfg)
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			want := []Change{{Field: tt.field, Old: tt.oldVal, New: tt.newVal}}
			if !slices.Equal(changes, want) {
				t.Fatalf("changes=%v, want %v", changes, want)
			}
			info, err := s.Info(t.Context())
			if err != nil {
				t.Fatalf("Info: %v", err)
			}
			if got := info.Config; got.MaxAge != tt.cfg.MaxAge || got.MaxBytes != tt.cfg.MaxBytes || got.Duplicates != tt.cfg.Duplicates {
				t.Fatalf("stream config=%+v, want the new limits of %+v", got, tt.cfg)
			}
			if _, again, err := Ensure(t.Context(), js, tt.cfg); err != nil || len(again) != 0 {
				t.Fatalf("Ensure after the update=%v,%v, want no changes", again, err)
			}
		})
	}
}

func TestEnsureReportsConflicts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing jetstream.StreamConfig
	}{
		{"a memory stream when the configuration wants file storage", jetstream.StreamConfig{
			Name: wire.StreamName, Subjects: []string{wire.StreamSubjects}, Storage: jetstream.MemoryStorage, MaxAge: time.Hour}},
		{"a stream with other subjects", jetstream.StreamConfig{
			Name: wire.StreamName, Subjects: []string{"other.>"}, Storage: jetstream.FileStorage, MaxAge: time.Hour}},
		{"a work-queue stream", jetstream.StreamConfig{
			Name: wire.StreamName, Subjects: []string{wire.StreamSubjects}, Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy, MaxAge: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js := testutil.RunJetStream(t).JS(t)
			if _, err := js.CreateStream(t.Context(), tt.existing); err != nil {
				t.Fatalf("create existing stream: %v", err)
			}
			before, err := js.Stream(t.Context(), wire.StreamName)
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			s, changes, err := Ensure(t.Context(), js, Config{MaxAge: 2 * time.Hour})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("Ensure=%v, want ErrConflict", err)
			}
			if s != nil || changes != nil {
				t.Fatalf("Ensure returned a stream or changes with a conflict")
			}
			after, err := js.Stream(t.Context(), wire.StreamName)
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			b, a := before.CachedInfo().Config, after.CachedInfo().Config
			if a.Storage != b.Storage || a.Retention != b.Retention || !slices.Equal(a.Subjects, b.Subjects) || a.MaxAge != b.MaxAge {
				t.Fatalf("conflicting stream was changed: before %+v, after %+v", b, a)
			}
		})
	}
}

func TestEnsureFromManyRolesAtOnce(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	const roles = 4
	errs := make([]error, roles)
	var wg sync.WaitGroup
	for i := range roles {
		js := srv.JS(t)
		wg.Go(func() {
			_, _, errs[i] = Ensure(t.Context(), js, Config{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Ensure #%d: %v", i, err)
		}
	}
}

// TestValidateRefusesWhatJetStreamWouldRefuse: a dedup window longer than
// the stream keeps changes is named at load time with both variables, and
// Ensure refuses it as ErrInvalid before asking the server.
func TestValidateRefusesWhatJetStreamWouldRefuse(t *testing.T) {
	t.Parallel()
	_, err := LoadConfig(getenv(map[string]string{"LIVE_STREAM_MAX_AGE": "30s"}))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "LIVE_STREAM_DUPLICATES") || !strings.Contains(err.Error(), "LIVE_STREAM_MAX_AGE") {
		t.Fatalf("LoadConfig(LIVE_STREAM_MAX_AGE=30s)=%v, want ErrInvalid naming both variables (the default dedup window is 2m)", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("Config{}.Validate()=%v, want the defaults valid", err)
	}
	if _, _, err := Ensure(t.Context(), nil, Config{MaxAge: time.Minute, Duplicates: time.Hour}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Ensure()=%v, want ErrInvalid", err)
	}
}
