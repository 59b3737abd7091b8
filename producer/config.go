package producer

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/polltoken"
)

// MaxBatchItems is the most changes one POST /v1/publish may carry.
const MaxBatchItems = 500

// APIConfig configures the ingest HTTP API. Zero fields take the defaults
// documented on each; Keys has none.
type APIConfig struct {
	// Keys are the accepted bearer keys (Authorization: Bearer <key>).
	// Empty is a configuration error: the API never runs open.
	Keys []string
	// MaxEventBytes bounds one change's data. Zero means 64 KiB. The
	// Publisher's own Options.MaxDataBytes applies too.
	MaxEventBytes int
	// MaxRequestBytes bounds a request body. Zero means 1 MiB.
	MaxRequestBytes int
	// Rate is the changes per second one key may publish (a batch of n
	// costs n), refilled continuously. Zero means 200.
	Rate float64
	// Burst is how many changes a key may publish at once above Rate.
	// Zero means max(2*Rate, MaxBatchItems); it must be at least
	// MaxBatchItems so a full batch can ever pass.
	Burst int
	// PollSecret signs poll tokens for POST /v1/tokens. Empty means that
	// route answers 501 not_configured.
	PollSecret []byte
	// PublishTimeout bounds how long a request waits for JetStream,
	// retries included, before answering 503. Zero means 15s: a JetStream
	// leader election takes a random 4 to 10 s after a node is lost (raft's
	// election timeout, measured 4 to 9.6 s by the cluster suite, whose
	// slowest request then took 11.74 s), and a publish that outlives it is
	// stored rather than answered 503.
	PublishTimeout time.Duration
	// BodyTimeout bounds reading one request body, so a client that stops
	// sending mid-body holds a connection no longer. Zero means 10s, in
	// which a backend on any link sends MaxRequestBytes.
	BodyTimeout time.Duration
}

// LoadAPIConfig reads the API's environment; every problem is reported at
// once, each naming its variable. Unset variables leave their fields zero,
// which means the defaults documented on APIConfig.
//
//	LIVE_API_KEYS               comma-separated bearer keys (required)
//	LIVE_API_MAX_EVENT_BYTES    per-change data limit, default 64KiB
//	LIVE_API_MAX_REQUEST_BYTES  per-request body limit, default 1MiB
//	LIVE_API_RATE               changes per second per key, default 200
//	LIVE_API_BURST              changes at once per key, default max(2*rate, 500)
//	LIVE_API_PUBLISH_TIMEOUT    wait for JetStream per request, default 15s
//	LIVE_POLL_SECRET            poll token secret (at least 16 bytes); unset turns /v1/tokens off
func LoadAPIConfig(getenv func(string) string) (APIConfig, error) {
	var c APIConfig
	r := env.NewReader(getenv)
	if v, ok := r.Lookup("LIVE_API_KEYS"); ok {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				c.Keys = append(c.Keys, k)
			}
		}
	}
	r.IntBytes("LIVE_API_MAX_EVENT_BYTES", &c.MaxEventBytes, 1, 1<<30)
	r.IntBytes("LIVE_API_MAX_REQUEST_BYTES", &c.MaxRequestBytes, 1, 1<<30)
	r.Rate("LIVE_API_RATE", &c.Rate, math.SmallestNonzeroFloat64, 1e9)
	r.Int("LIVE_API_BURST", &c.Burst, 1, 1<<30)
	r.Duration("LIVE_API_PUBLISH_TIMEOUT", &c.PublishTimeout, time.Millisecond, time.Hour)
	r.Secret("LIVE_POLL_SECRET", &c.PollSecret, polltoken.MinSecretLen)
	// Fields that did not parse stayed zero, so Validate sees their
	// defaults and reports only the remaining problems.
	r.Add(c.Validate())
	if err := r.Err(); err != nil {
		return APIConfig{}, err
	}
	return c, nil
}

// withDefaults is the one source of the defaults documented on APIConfig.
func (c APIConfig) withDefaults() APIConfig {
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = 64 << 10
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 1 << 20
	}
	if c.Rate == 0 {
		c.Rate = 200
	}
	if c.Burst == 0 {
		c.Burst = max(int(2*c.Rate), MaxBatchItems)
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 15 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 10 * time.Second
	}
	return c
}

// Validate checks c, its zero fields read as their defaults; errors name
// the variable and the field. NewAPI calls it.
func (c APIConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.Keys) == 0 {
		errs = append(errs, errors.New("LIVE_API_KEYS (APIConfig.Keys): at least one API key is required; the ingest API never runs without authentication"))
	}
	for i, k := range c.Keys {
		if k == "" || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ',' }) {
			// Never echo the key itself.
			errs = append(errs, fmt.Errorf("LIVE_API_KEYS (APIConfig.Keys): key #%d is empty or holds spaces, commas or control characters", i+1))
		}
	}
	if c.MaxEventBytes < 0 {
		errs = append(errs, fmt.Errorf("LIVE_API_MAX_EVENT_BYTES (APIConfig.MaxEventBytes): %d is negative", c.MaxEventBytes))
	}
	if c.MaxRequestBytes < c.MaxEventBytes {
		errs = append(errs, fmt.Errorf("LIVE_API_MAX_REQUEST_BYTES (APIConfig.MaxRequestBytes): %d is below the per-change limit %d", c.MaxRequestBytes, c.MaxEventBytes))
	}
	if !(c.Rate > 0) {
		errs = append(errs, fmt.Errorf("LIVE_API_RATE (APIConfig.Rate): %v is not positive", c.Rate))
	}
	if c.Burst < MaxBatchItems {
		errs = append(errs, fmt.Errorf("LIVE_API_BURST (APIConfig.Burst): %d is below %d, so a full batch could never pass", c.Burst, MaxBatchItems))
	}
	if n := len(c.PollSecret); n > 0 && n < polltoken.MinSecretLen {
		errs = append(errs, fmt.Errorf("LIVE_POLL_SECRET (APIConfig.PollSecret): %d bytes is too short, want at least %d", n, polltoken.MinSecretLen))
	}
	if c.BodyTimeout < 0 {
		errs = append(errs, fmt.Errorf("APIConfig.BodyTimeout: %v is negative", c.BodyTimeout))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("LIVE_API_PUBLISH_TIMEOUT (APIConfig.PublishTimeout): %v is negative", c.PublishTimeout))
	}
	return errors.Join(errs...)
}

// String describes c with the keys and the poll secret redacted, so the
// configuration can be logged.
func (c APIConfig) String() string {
	return fmt.Sprintf("APIConfig{Keys:%d redacted, MaxEventBytes:%d, MaxRequestBytes:%d, Rate:%v, Burst:%d, PollSecret:%s, PublishTimeout:%v, BodyTimeout:%v}",
		len(c.Keys), c.MaxEventBytes, c.MaxRequestBytes, c.Rate, c.Burst, redacted(c.PollSecret), c.PublishTimeout, c.BodyTimeout)
}

// GoString keeps %#v from printing the secrets.
func (c APIConfig) GoString() string { return c.String() }

func redacted(secret []byte) string {
	if len(secret) == 0 {
		return "unset"
	}
	return "redacted"
}
