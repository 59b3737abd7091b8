// Package env reads a role's settings from its environment: one way to
// parse integers, durations, sizes, rates and booleans with their ranges,
// collecting every problem so an operator fixes them all in one go.
//
// Every role's LoadConfig starts from its package's defaults and lets a
// Reader overwrite the fields whose variables are set:
//
//	r := env.NewReader(getenv)
//	r.Int("LIVE_RELAY_BATCH_SIZE", &c.BatchSize, 1, 10000)
//	r.Duration("LIVE_RELAY_ACK_WAIT", &c.AckWait, time.Second, time.Hour)
//	if err := r.Err(); err != nil { ... }
//
// A variable that is unset or empty leaves its field alone; one that does
// not parse or is out of range leaves it alone too and adds an error that
// names the variable, the value and what is wanted. Values are trimmed of
// surrounding spaces; secrets are never echoed (Secret).
package env

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Reader reads variables through getenv and collects their errors.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// NewReader returns a Reader on getenv (os.Getenv, or a map in tests).
func NewReader(getenv func(string) string) *Reader {
	return &Reader{getenv: getenv}
}

// Lookup returns the trimmed value of name and whether it is set and not
// empty, for settings with a syntax of their own; report problems with Fail.
func (r *Reader) Lookup(name string) (string, bool) {
	v := strings.TrimSpace(r.getenv(name))
	return v, v != ""
}

// String sets *dst to the trimmed value of name when it is set.
func (r *Reader) String(name string, dst *string) {
	if v, ok := r.Lookup(name); ok {
		*dst = v
	}
}

// Secret sets *dst to the value of name (untrimmed: a secret is what it is)
// when it is set and at least minLen bytes long. The error gives the length,
// never the value.
func (r *Reader) Secret(name string, dst *[]byte, minLen int) {
	v := r.getenv(name)
	if v == "" {
		return
	}
	if len(v) < minLen {
		r.Add(fmt.Errorf("%s: want at least %d bytes, got %d", name, minLen, len(v)))
		return
	}
	*dst = []byte(v)
}

// Bool sets *dst from true/false (and the other spellings of
// strconv.ParseBool).
func (r *Reader) Bool(name string, dst *bool) {
	v, ok := r.Lookup(name)
	if !ok {
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.Fail(name, v, "true or false")
		return
	}
	*dst = b
}

// Int sets *dst to an integer from lo to hi.
func (r *Reader) Int(name string, dst *int, lo, hi int) {
	v, ok := r.Lookup(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.Fail(name, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return
	}
	*dst = n
}

// Uint64 sets *dst to an integer from lo to hi.
func (r *Reader) Uint64(name string, dst *uint64, lo, hi uint64) {
	v, ok := r.Lookup(name)
	if !ok {
		return
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < lo || n > hi {
		r.Fail(name, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return
	}
	*dst = n
}

// Duration sets *dst to a Go duration (such as 250ms or 2m) from lo to hi.
func (r *Reader) Duration(name string, dst *time.Duration, lo, hi time.Duration) {
	v, ok := r.Lookup(name)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.Fail(name, v, fmt.Sprintf("a duration from %v to %v", lo, hi))
		return
	}
	*dst = d
}

// Bytes sets *dst to a size (see ParseBytes) from lo to hi.
func (r *Reader) Bytes(name string, dst *int64, lo, hi int64) {
	v, ok := r.Lookup(name)
	if !ok {
		return
	}
	n, err := ParseBytes(v)
	if err != nil || n < lo || n > hi {
		r.Fail(name, v, fmt.Sprintf("a size from %s to %s, such as 64KiB", FormatBytes(lo), FormatBytes(hi)))
		return
	}
	*dst = n
}

// IntBytes is Bytes for an int field.
func (r *Reader) IntBytes(name string, dst *int, lo, hi int) {
	n := int64(*dst)
	r.Bytes(name, &n, int64(lo), int64(hi))
	*dst = int(n)
}

// Rate sets *dst to a number of things per second from lo to hi (NaN and
// infinities are refused).
func (r *Reader) Rate(name string, dst *float64, lo, hi float64) {
	v, ok := r.Lookup(name)
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		r.Fail(name, v, fmt.Sprintf("a number per second from %g to %g", lo, hi))
		return
	}
	*dst = f
}

// Fail records that name's value v is not what is wanted.
func (r *Reader) Fail(name, v, want string) {
	r.Add(fmt.Errorf("%s=%q: want %s", name, v, want))
}

// Add records err (nil is ignored), for checks across several variables.
func (r *Reader) Add(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// Err returns every problem found so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// ParseBytes reads a size such as 1048576, 64KiB, 512MiB or 1GiB (KB, MB and
// GB are read as powers of 1024 too, as NATS does). -1 reads as -1 (the
// streams' "unlimited").
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	// Without this check 16GiB-times-a-billion wraps round to a small,
	// plausible size and is accepted silently.
	if n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, fmt.Errorf("size %q times %d: %w", s, mult, strconv.ErrRange)
	}
	return n * mult, nil
}

// FormatBytes writes n the way ParseBytes reads it, in the largest binary
// unit that divides it.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
