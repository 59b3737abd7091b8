package relay

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/wire"
)

// Config is the relay's configuration. LoadConfig fills it from the
// environment; New fills any zero field with the default documented on it
// (from Defaults) and checks it with Validate.
type Config struct {
	// AppID, Key and Secret are the Pusher app's credentials. All three
	// empty means Pusher is off (PusherEnabled reports false).
	AppID, Key, Secret string
	// Cluster selects api-<cluster>.pusher.com. Zero means the library's
	// legacy default host; Host overrides it.
	Cluster string
	// Host is host[:port] of a Pusher-compatible server. Zero means Pusher's
	// own host for Cluster.
	Host string
	// Secure selects https. Zero (false) means plain http; LoadConfig
	// defaults to true unless PUSHER_SECURE=false.
	Secure bool
	// MaxPayloadKB is Pusher's limit on one event's data, in KiB. Zero means 10.
	MaxPayloadKB int

	// BatchWindow is how long the relay gathers changes after the first one
	// before sending. Zero means 20ms.
	BatchWindow time.Duration
	// BatchSize bounds the changes fetched in one window. Zero means 500.
	BatchSize int
	// MaxInFlight is the number of sequential lanes, hence the bound on
	// Pusher requests in flight. Zero means 4.
	MaxInFlight int
	// AckWait is the consumer's ack wait; held changes are kept alive with
	// InProgress well within it. Zero means 3s: short, so a change held by
	// a relay that was killed is redelivered within seconds of the kill.
	AckWait time.Duration
	// MaxDeliver is the consumer's delivery limit; a change that reaches it
	// is dead-lettered. Zero means 10.
	MaxDeliver int
	// MaxAckPending is the consumer's bound on unacked changes across all
	// replicas. Zero means 5000.
	MaxAckPending int
	// CoalesceTypes lists the change types whose changes of one channel
	// inside a window collapse into the newest. Nil or empty means none;
	// LoadConfig defaults to wire.KnownTypes.
	CoalesceTypes []string
	// ChannelPrefix goes before the eventId in the channel name. Zero means
	// "event-".
	ChannelPrefix string
	// PrivateChannels prepends "private-" to every channel name. Zero
	// (false) means public channels.
	PrivateChannels bool
	// RequestsPerSecond limits Pusher requests. Zero means unlimited.
	RequestsPerSecond float64
	// MessagesPerSecond limits Pusher events (the plan's quota). Zero means
	// unlimited.
	MessagesPerSecond float64
	// Timeout bounds one Pusher HTTP request. Zero means 5s.
	Timeout time.Duration
	// Partitions, when positive, turns on partitioned mode (see
	// partition.go): eventIds are split into this many partitions, each
	// sent by one replica at a time in strict seq order, handed over in
	// order within about LeaseTTL when a replica dies. Zero means off: every
	// replica shares one durable consumer (order holds per channel only
	// while no replica crashes). Use several times the replica count.
	Partitions int
	// LeaseTTL is how long a partition's lease lives without renewal, so
	// how long a dead replica's partitions wait for a new owner. Zero means
	// 2s.
	LeaseTTL time.Duration

	// The knobs below have no environment variable; tests shorten them.

	// BackoffBase is the first retry delay after a failed request. Zero
	// means 100ms.
	BackoffBase time.Duration
	// BackoffMax caps the retry delay. Zero means 1s: after an outage the
	// first request goes within about a second of Pusher being back (a
	// longer Retry-After is still honoured), and probing an unreachable
	// Pusher once a second costs nothing worth saving.
	BackoffMax time.Duration
	// AuthRetryInterval is how often the relay probes Pusher (and logs)
	// while Pusher refuses its credentials (401/403/404). Zero means 30s.
	AuthRetryInterval time.Duration
	// IdleWait is how long one pull waits for a first change. Zero means 1s;
	// it bounds how long Run takes to return after cancellation.
	IdleWait time.Duration
	// LagInterval is how often consumer info is sampled for the pending
	// gauge. Zero means 10s.
	LagInterval time.Duration
	// CheckpointInterval is how often an owned partition's checkpoint is
	// written; it bounds what a new owner sends again. Zero means 100ms.
	CheckpointInterval time.Duration
	// StallAfter is how long the relay may go without acking or
	// terminating a change, while changes are pending and Pusher is
	// healthy, before Ready reports ErrStalled. Zero means 60s.
	StallAfter time.Duration
}

// Consumer is the durable pull consumer every relay replica shares.
const Consumer = "relay"

// Defaults is the relay's one set of defaults: LoadConfig starts from it,
// and New fills every zero field whose comment names a default from it.
// Secure and CoalesceTypes are the exceptions: their zero values mean
// plain http and no coalescing to New, so only LoadConfig takes their
// defaults (https, the known types).
func Defaults() Config {
	return Config{
		Secure:        true,
		MaxPayloadKB:  10,
		BatchWindow:   20 * time.Millisecond,
		BatchSize:     500,
		MaxInFlight:   4,
		AckWait:       3 * time.Second,
		MaxDeliver:    10,
		MaxAckPending: 5000,
		CoalesceTypes: wire.KnownTypes(),
		ChannelPrefix: "event-",
		Timeout:       5 * time.Second,
		LeaseTTL:      2 * time.Second,

		BackoffBase:        100 * time.Millisecond,
		BackoffMax:         time.Second,
		AuthRetryInterval:  30 * time.Second,
		IdleWait:           time.Second,
		LagInterval:        10 * time.Second,
		CheckpointInterval: 100 * time.Millisecond,
		StallAfter:         time.Minute,
	}
}

// LoadConfig reads the relay's environment over Defaults; every problem is
// reported at once, each naming its variable. Missing Pusher credentials
// are not an error (PusherEnabled reports false); partial credentials are.
//
//	PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET  credentials (all or none)
//	PUSHER_CLUSTER, PUSHER_HOST               where Pusher is
//	PUSHER_SECURE                             true (default) or false
//	PUSHER_MAX_PAYLOAD_KB                     1..10240, default 10
//	LIVE_RELAY_BATCH_WINDOW                   duration, default 20ms
//	LIVE_RELAY_BATCH_SIZE                     1..10000, default 500
//	LIVE_RELAY_MAX_IN_FLIGHT                  1..64, default 4
//	LIVE_RELAY_ACK_WAIT                       duration >= 1s, default 3s
//	LIVE_RELAY_MAX_DELIVER                    1..1000, default 10
//	LIVE_RELAY_MAX_ACK_PENDING                >= batch size, default 5000
//	LIVE_RELAY_COALESCE                       off, or a comma list of types; default the six known
//	LIVE_RELAY_CHANNEL_PREFIX                 default event-
//	LIVE_RELAY_PRIVATE_CHANNELS               true or false (default)
//	LIVE_RELAY_REQUESTS_PER_SECOND            >= 0, 0 (default) unlimited
//	LIVE_RELAY_MESSAGES_PER_SECOND            >= 0, 0 (default) unlimited
//	LIVE_RELAY_TIMEOUT                        duration, default 5s
//	LIVE_RELAY_PARTITIONS                     0..1024, default 0 (off)
//	LIVE_RELAY_LEASE_TTL                      duration >= 500ms, default 2s
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Defaults()
	r := env.NewReader(getenv)
	r.String("PUSHER_APP_ID", &c.AppID)
	r.String("PUSHER_KEY", &c.Key)
	r.String("PUSHER_SECRET", &c.Secret)
	r.String("PUSHER_CLUSTER", &c.Cluster)
	r.String("PUSHER_HOST", &c.Host)
	r.Bool("PUSHER_SECURE", &c.Secure)
	r.Int("PUSHER_MAX_PAYLOAD_KB", &c.MaxPayloadKB, 1, maxPayloadKB)
	r.Duration("LIVE_RELAY_BATCH_WINDOW", &c.BatchWindow, time.Millisecond, forever)
	r.Int("LIVE_RELAY_BATCH_SIZE", &c.BatchSize, 1, 10000)
	r.Int("LIVE_RELAY_MAX_IN_FLIGHT", &c.MaxInFlight, 1, maxInFlight)
	r.Duration("LIVE_RELAY_ACK_WAIT", &c.AckWait, time.Second, forever)
	r.Int("LIVE_RELAY_MAX_DELIVER", &c.MaxDeliver, 1, 1000)
	r.Int("LIVE_RELAY_MAX_ACK_PENDING", &c.MaxAckPending, 1, 1_000_000)
	if v, ok := r.Lookup("LIVE_RELAY_COALESCE"); ok {
		types, err := parseCoalesce(v)
		if err != nil {
			r.Add(fmt.Errorf("LIVE_RELAY_COALESCE=%q: %w", v, err))
		} else {
			c.CoalesceTypes = types
		}
	}
	r.String("LIVE_RELAY_CHANNEL_PREFIX", &c.ChannelPrefix)
	r.Bool("LIVE_RELAY_PRIVATE_CHANNELS", &c.PrivateChannels)
	r.Rate("LIVE_RELAY_REQUESTS_PER_SECOND", &c.RequestsPerSecond, 0, math.MaxFloat64)
	r.Rate("LIVE_RELAY_MESSAGES_PER_SECOND", &c.MessagesPerSecond, 0, math.MaxFloat64)
	r.Duration("LIVE_RELAY_TIMEOUT", &c.Timeout, time.Millisecond, forever)
	r.Int("LIVE_RELAY_PARTITIONS", &c.Partitions, 0, maxPartitions)
	r.Duration("LIVE_RELAY_LEASE_TTL", &c.LeaseTTL, 500*time.Millisecond, forever)
	// A bad value above left its default in place, so the checks across
	// fields still read sensible values.
	r.Add(c.Validate())
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Bounds shared by LoadConfig and Validate.
const (
	maxPayloadKB  = 10240
	maxInFlight   = 64
	maxPartitions = 1024
	// forever is the upper bound of durations that have none.
	forever = time.Duration(math.MaxInt64)
)

// Validate reports every problem of the configuration New would run with
// (zero fields read as their defaults), each naming the field and its
// variable. Missing credentials are not its business (New returns
// ErrPusherDisabled); partial ones are.
func (c Config) Validate() error {
	var errs []error
	if set := c.AppID != "" || c.Key != "" || c.Secret != ""; set && !c.PusherEnabled() {
		for _, kv := range [][2]string{{"PUSHER_APP_ID", c.AppID}, {"PUSHER_KEY", c.Key}, {"PUSHER_SECRET", c.Secret}} {
			if kv[1] == "" {
				errs = append(errs, fmt.Errorf("%s is empty while other Pusher credentials are set: set all of PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET, or none", kv[0]))
			}
		}
	}
	c = c.withDefaults()
	if err := wire.ValidateChannelPrefix(c.ChannelPrefix, c.PrivateChannels); err != nil {
		errs = append(errs, fmt.Errorf("LIVE_RELAY_CHANNEL_PREFIX (ChannelPrefix) %q: %w", c.ChannelPrefix, err))
	}
	if c.MaxPayloadKB > maxPayloadKB {
		errs = append(errs, fmt.Errorf("PUSHER_MAX_PAYLOAD_KB (MaxPayloadKB) %d: want at most %d", c.MaxPayloadKB, maxPayloadKB))
	}
	if c.MaxInFlight > maxInFlight {
		errs = append(errs, fmt.Errorf("LIVE_RELAY_MAX_IN_FLIGHT (MaxInFlight) %d: want at most %d", c.MaxInFlight, maxInFlight))
	}
	if c.Partitions < 0 || c.Partitions > maxPartitions {
		errs = append(errs, fmt.Errorf("LIVE_RELAY_PARTITIONS (Partitions) %d: want 0 to %d", c.Partitions, maxPartitions))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"LIVE_RELAY_REQUESTS_PER_SECOND (RequestsPerSecond)", c.RequestsPerSecond}, {"LIVE_RELAY_MESSAGES_PER_SECOND (MessagesPerSecond)", c.MessagesPerSecond}} {
		if math.IsNaN(f.v) || f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v: want a number >= 0 (0 is unlimited)", f.name, f.v))
		}
	}
	if c.MaxAckPending < c.BatchSize {
		errs = append(errs, fmt.Errorf("LIVE_RELAY_MAX_ACK_PENDING (MaxAckPending) %d: want at least LIVE_RELAY_BATCH_SIZE (BatchSize) %d", c.MaxAckPending, c.BatchSize))
	}
	if c.AckWait <= 2*c.BatchWindow {
		errs = append(errs, fmt.Errorf("LIVE_RELAY_ACK_WAIT (AckWait) %v: want more than twice LIVE_RELAY_BATCH_WINDOW (BatchWindow) %v", c.AckWait, c.BatchWindow))
	}
	return errors.Join(errs...)
}

func parseCoalesce(v string) ([]string, error) {
	if strings.EqualFold(strings.TrimSpace(v), "off") {
		return []string{}, nil
	}
	var types []string
	var errs []error
	for _, t := range strings.Split(v, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if err := wire.ValidateType(t); err != nil {
			errs = append(errs, err)
			continue
		}
		types = append(types, t)
	}
	if len(errs) == 0 && len(types) == 0 {
		errs = append(errs, errors.New(`want "off" or a comma list of change types`))
	}
	return types, errors.Join(errs...)
}

// PusherEnabled reports whether all Pusher credentials are set.
func (c Config) PusherEnabled() bool {
	return c.AppID != "" && c.Key != "" && c.Secret != ""
}

// Redacted returns the configuration for logging, with the secret hidden.
// The key is public (browsers hold it), so it stays.
func (c Config) Redacted() map[string]any {
	secret := ""
	if c.Secret != "" {
		secret = "[redacted]"
	}
	return map[string]any{
		"pusher_app_id":         c.AppID,
		"pusher_key":            c.Key,
		"pusher_secret":         secret,
		"pusher_cluster":        c.Cluster,
		"pusher_host":           c.Host,
		"pusher_secure":         c.Secure,
		"pusher_max_payload_kb": c.MaxPayloadKB,
		"pusher_enabled":        c.PusherEnabled(),
		"batch_window":          c.BatchWindow.String(),
		"batch_size":            c.BatchSize,
		"max_in_flight":         c.MaxInFlight,
		"ack_wait":              c.AckWait.String(),
		"max_deliver":           c.MaxDeliver,
		"max_ack_pending":       c.MaxAckPending,
		"coalesce_types":        strings.Join(c.CoalesceTypes, ","),
		"channel_prefix":        c.ChannelPrefix,
		"private_channels":      c.PrivateChannels,
		"requests_per_second":   c.RequestsPerSecond,
		"messages_per_second":   c.MessagesPerSecond,
		"pusher_timeout":        c.Timeout.String(),
		"partitions":            c.Partitions,
		"lease_ttl":             c.LeaseTTL.String(),
	}
}

// withDefaults fills the zero fields whose comments name a default from
// Defaults.
func (c Config) withDefaults() Config {
	d := Defaults()
	fill(&c.MaxPayloadKB, d.MaxPayloadKB)
	fill(&c.BatchWindow, d.BatchWindow)
	fill(&c.BatchSize, d.BatchSize)
	fill(&c.MaxInFlight, d.MaxInFlight)
	fill(&c.AckWait, d.AckWait)
	fill(&c.MaxDeliver, d.MaxDeliver)
	fill(&c.MaxAckPending, d.MaxAckPending)
	fill(&c.ChannelPrefix, d.ChannelPrefix)
	fill(&c.Timeout, d.Timeout)
	fill(&c.LeaseTTL, d.LeaseTTL)
	fill(&c.BackoffBase, d.BackoffBase)
	fill(&c.BackoffMax, d.BackoffMax)
	fill(&c.AuthRetryInterval, d.AuthRetryInterval)
	fill(&c.IdleWait, d.IdleWait)
	fill(&c.LagInterval, d.LagInterval)
	fill(&c.CheckpointInterval, d.CheckpointInterval)
	fill(&c.StallAfter, d.StallAfter)
	c.BackoffMax = max(c.BackoffMax, c.BackoffBase)
	return c
}

// fill sets *v to d when *v is zero (or negative: no field here means
// anything below zero).
func fill[T int | time.Duration | string](v *T, d T) {
	var zero T
	if *v <= zero {
		*v = d
	}
}

// channel returns the Pusher channel of an eventId.
func (c Config) channel(eventID string) string {
	if c.PrivateChannels {
		return "private-" + c.ChannelPrefix + eventID
	}
	return c.ChannelPrefix + eventID
}
