package env

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func lookup(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestReaderSetsValidValuesAndKeepsDefaults(t *testing.T) {
	t.Parallel()
	r := NewReader(lookup(map[string]string{
		"S": " name ", "B": "true", "I": "7", "U": "9", "D": "250ms", "Z": "64KiB", "R": "2.5", "K": "0123456789abcdef",
	}))
	var (
		s         = "default"
		unset     = "kept"
		b         bool
		i, iUnset = 1, 3
		u         uint64
		d         time.Duration
		z         int64
		zi        = 5
		f         float64
		k         []byte
	)
	r.String("S", &s)
	r.String("UNSET", &unset)
	r.Bool("B", &b)
	r.Int("I", &i, 1, 10)
	r.Int("UNSET", &iUnset, 1, 10)
	r.Uint64("U", &u, 1, 10)
	r.Duration("D", &d, time.Millisecond, time.Second)
	r.Bytes("Z", &z, 1, 1<<20)
	r.IntBytes("Z", &zi, 1, 1<<20)
	r.Rate("R", &f, 0, 10)
	r.Secret("K", &k, 16)
	if err := r.Err(); err != nil {
		t.Fatalf("Err()=%v", err)
	}
	if s != "name" || unset != "kept" || !b || i != 7 || iUnset != 3 || u != 9 || d != 250*time.Millisecond || z != 64<<10 || zi != 64<<10 || f != 2.5 || string(k) != "0123456789abcdef" {
		t.Fatalf("got s=%q unset=%q b=%v i=%d iUnset=%d u=%d d=%v z=%d zi=%d f=%v k=%q", s, unset, b, i, iUnset, u, d, z, zi, f, k)
	}
}

func TestReaderCollectsEveryProblemAndKeepsFields(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"B": "yes please", "I": "11", "U": "0", "D": "1h", "Z": "2MiB", "R": "NaN", "K": "short-secret",
	}
	r := NewReader(lookup(bad))
	var (
		b bool
		i = 1
		u uint64
		d = time.Second
		z int64
		f float64
		k []byte
	)
	r.Bool("B", &b)
	r.Int("I", &i, 1, 10)
	r.Uint64("U", &u, 1, 10)
	r.Duration("D", &d, time.Millisecond, time.Minute)
	r.Bytes("Z", &z, 1, 1<<20)
	r.Rate("R", &f, 0, 10)
	r.Secret("K", &k, 16)
	err := r.Err()
	if err == nil {
		t.Fatal("Err()=nil, want every problem")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != len(bad) {
		t.Fatalf("Err()=%v: want a join of %d errors", err, len(bad))
	}
	for name := range bad {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "short-secret") {
		t.Errorf("error %q echoes the secret", err)
	}
	if b || i != 1 || u != 0 || d != time.Second || z != 0 || f != 0 || k != nil {
		t.Fatalf("fields changed by bad values: b=%v i=%d u=%d d=%v z=%d f=%v k=%q", b, i, u, d, z, f, k)
	}
	if !strings.Contains(err.Error(), `I="11": want an integer from 1 to 10`) {
		t.Errorf("error %q does not say what I wants", err)
	}
}

func TestReaderAddAndFail(t *testing.T) {
	t.Parallel()
	r := NewReader(lookup(nil))
	r.Add(nil)
	if r.Err() != nil {
		t.Fatal("Add(nil) recorded an error")
	}
	sentinel := errors.New("cross check")
	r.Add(sentinel)
	r.Fail("X", "v", "something else")
	if err := r.Err(); !errors.Is(err, sentinel) || !strings.Contains(err.Error(), `X="v": want something else`) {
		t.Fatalf("Err()=%v", err)
	}
}

func TestFormatBytesRoundTrips(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, 1, 1000, 1 << 10, 3 << 20, 1 << 30, 5<<30 + 1} {
		got, err := ParseBytes(FormatBytes(n))
		if err != nil || got != n {
			t.Errorf("ParseBytes(FormatBytes(%d)=%q)=%d,%v", n, FormatBytes(n), got, err)
		}
	}
}
