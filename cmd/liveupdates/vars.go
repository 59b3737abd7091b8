package main

// The settings of every command, each listed once with the commands that
// read it. The README's configuration table lists the same names; a test
// keeps the two in step.

// readers is the set of commands that read a setting.
type readers uint16

const (
	// byNATS: every command that connects to a NATS server (not dev: it
	// embeds its own); each role authenticates as its own NATS user
	// (deploy/nats.yaml, ops.NATSRoles).
	byNATS    readers = 1 << iota
	byServer          // the long-running roles and dev: HTTP
	byStream          // the roles that ensure or read LIVE_EVENTS, and dev
	byAPI             // api and dev
	byRelay           // relay and dev
	byPoller          // poller and dev
	byDev             // dev alone
	byPublish         // publish alone
	byRoles   = byServer | byStream
	// byAll: every command logs, the roles and dev as servers, the tools
	// as NATS clients.
	byAll = byServer | byNATS
)

var settingsTable = []envVar{
	{Name: "LIVE_NATS_URL", Default: "nats://127.0.0.1:4222", Help: "NATS server URL(s), comma-separated", readers: byNATS},
	{Name: "LIVE_NATS_CREDS", Help: "NATS credentials file (optional; or LIVE_NATS_USER and LIVE_NATS_PASSWORD, or LIVE_NATS_NKEY_SEED)", readers: byNATS},
	{Name: "LIVE_NATS_USER", Help: "NATS user of this role (with LIVE_NATS_PASSWORD)", readers: byNATS},
	{Name: "LIVE_NATS_PASSWORD", Help: "password of LIVE_NATS_USER", Secret: true, readers: byNATS},
	{Name: "LIVE_NATS_NKEY_SEED", Help: "NATS user nkey seed (SU...) of this role", Secret: true, readers: byNATS},

	{Name: "LIVE_HTTP_ADDR", Default: ":8080", Help: "address of the HTTP server (/healthz, /readyz, /metrics and the role's routes)", readers: byServer},
	{Name: "LIVE_LOG_LEVEL", Default: "info", Help: "debug, info, warn or error", readers: byAll},
	{Name: "LIVE_LOG_FORMAT", Default: "json (text in dev and the operator tools)", Help: "json or text", readers: byAll},
	{Name: "LIVE_METRICS_ADDR", Help: "serve /metrics (and /healthz, /readyz) on this address instead of LIVE_HTTP_ADDR, away from the public port", readers: byServer},
	{Name: debugAddrVar, Default: "off", Help: "address of an opt-in debug server with /debug/pprof/ (off when empty; must differ from LIVE_HTTP_ADDR; keep it private)", readers: byServer},

	{Name: "LIVE_STREAM_STORAGE", Default: "file", Help: "LIVE_EVENTS storage: file or memory", readers: byStream},
	{Name: "LIVE_STREAM_MAX_AGE", Default: "24h", Help: "drop changes older than this", readers: byStream},
	{Name: "LIVE_STREAM_MAX_BYTES", Default: "1GiB", Help: "bound the stream's size (-1 unlimited)", readers: byStream},
	{Name: "LIVE_STREAM_REPLICAS", Default: "1", Help: "stream replicas: 1 in dev, 3 in a cluster", readers: byStream},
	{Name: "LIVE_STREAM_DUPLICATES", Default: "2m", Help: "dedup window for change ids", readers: byStream},

	{Name: "LIVE_API_KEYS", Help: "comma-separated API keys accepted as Authorization: Bearer <key> (required for api; dev accepts \"dev\" when unset)", Secret: true, readers: byAPI},
	{Name: "LIVE_API_MAX_EVENT_BYTES", Default: "64KiB", Help: "largest change data accepted", readers: byAPI},
	{Name: "LIVE_API_MAX_REQUEST_BYTES", Default: "1MiB", Help: "largest request body accepted", readers: byAPI},
	{Name: "LIVE_API_RATE", Default: "200", Help: "changes per second per API key (a batch of n counts n)", readers: byAPI},
	{Name: "LIVE_API_BURST", Default: "max(2×rate, 500)", Help: "burst per API key; at least 500 so a full batch can pass", readers: byAPI},
	{Name: "LIVE_API_PUBLISH_TIMEOUT", Default: "15s", Help: "how long a request waits for JetStream to store its changes", readers: byAPI},
	{Name: "LIVE_POLL_SECRET", Help: "secret for poll tokens (POST /v1/tokens and poller reads), at least 16 bytes; reads are open when unset", Secret: true, readers: byAPI | byPoller},

	// Pusher: the relay sends to it; the poller tells browsers where it is
	// and signs their private channels.
	{Name: "PUSHER_APP_ID", Help: "Pusher app id", readers: byRelay},
	{Name: "PUSHER_KEY", Help: "Pusher key (the poller gives it to browsers at GET /v1/config)", readers: byRelay | byPoller},
	{Name: "PUSHER_SECRET", Help: "Pusher secret (the relay signs its requests with it, the poller private channels at POST /v1/pusher/auth)", Secret: true, readers: byRelay | byPoller},
	{Name: "PUSHER_CLUSTER", Help: "Pusher cluster, such as eu", readers: byRelay | byPoller},
	{Name: "PUSHER_HOST", Help: "host[:port] of a Pusher-compatible server, instead of the cluster (browsers connect to it unless LIVE_POLLER_PUSHER_WS_URL is set)", readers: byRelay | byPoller},
	{Name: "PUSHER_SECURE", Default: "true", Help: "Pusher (or the Pusher-compatible server) is reached with TLS", readers: byRelay | byPoller},
	{Name: "PUSHER_MAX_PAYLOAD_KB", Default: "10", Help: "Pusher's event size limit for your plan", readers: byRelay},
	{Name: "LIVE_RELAY_CHANNEL_PREFIX", Default: "event-", Help: "Pusher channel prefix before the eventId", readers: byRelay | byPoller},
	{Name: "LIVE_RELAY_PRIVATE_CHANNELS", Default: "false", Help: "channels are private-<prefix><eventId> (the poller signs them at POST /v1/pusher/auth)", readers: byRelay | byPoller},

	{Name: "LIVE_RELAY_BATCH_WINDOW", Default: "20ms", Help: "how long the relay gathers changes before sending", readers: byRelay},
	{Name: "LIVE_RELAY_BATCH_SIZE", Default: "500", Help: "most changes gathered per window", readers: byRelay},
	{Name: "LIVE_RELAY_MAX_IN_FLIGHT", Default: "4", Help: "Pusher requests in flight", readers: byRelay},
	{Name: "LIVE_RELAY_ACK_WAIT", Default: "3s", Help: "consumer ack wait", readers: byRelay},
	{Name: "LIVE_RELAY_MAX_DELIVER", Default: "10", Help: "deliveries before a change is dead-lettered", readers: byRelay},
	{Name: "LIVE_RELAY_MAX_ACK_PENDING", Default: "5000", Help: "unacked changes across all relay replicas", readers: byRelay},
	{Name: "LIVE_RELAY_COALESCE", Help: "types to coalesce per window: off, or a comma list (default: the six known types)", readers: byRelay},
	{Name: "LIVE_RELAY_REQUESTS_PER_SECOND", Default: "0 (unlimited)", Help: "Pusher requests per second (your plan's quota)", readers: byRelay},
	{Name: "LIVE_RELAY_MESSAGES_PER_SECOND", Default: "0 (unlimited)", Help: "Pusher messages per second (your plan's quota)", readers: byRelay},
	{Name: "LIVE_RELAY_TIMEOUT", Default: "5s", Help: "timeout of one Pusher request", readers: byRelay},
	{Name: "LIVE_RELAY_PARTITIONS", Default: "0 (off)", Help: "partitioned mode: split eventIds into this many partitions, each sent by one replica at a time, in order across crashes (use several times the replica count, such as 8)", readers: byRelay},
	{Name: "LIVE_RELAY_LEASE_TTL", Default: "2s", Help: "partitioned mode: how long a dead replica's partitions wait for a new owner", readers: byRelay},

	{Name: "LIVE_POLLER_RING_SIZE", Default: "64", Help: "recent changes kept per eventId", readers: byPoller},
	{Name: "LIVE_POLLER_RING_AGE", Default: "10m", Help: "how long recent changes are kept", readers: byPoller},
	{Name: "LIVE_POLLER_MAX_EVENTS", Default: "100000", Help: "eventIds kept in memory; idle ones are evicted past this", readers: byPoller},
	{Name: "LIVE_POLLER_REPLAY_DEPTH", Default: "1000000", Help: "changes replayed from the stream at start", readers: byPoller},
	{Name: "LIVE_POLLER_MAX_WAIT", Default: "30s", Help: "longest long-poll", readers: byPoller},
	{Name: "LIVE_POLLER_MAX_BYTES", Default: "256MiB", Help: "memory bound of the index; idle eventIds are evicted past it", readers: byPoller},
	{Name: "LIVE_POLLER_MAX_CLIENTS", Default: "100000", Help: "clients tracked by the rate limiter", readers: byPoller},
	{Name: "LIVE_POLLER_BEHIND_WAIT", Default: "2s", Help: "how long a replica behind a client's cursor waits to catch up", readers: byPoller},
	{Name: "LIVE_POLLER_POLL_INTERVAL", Default: "2s", Help: "the clients' poll interval, for counting active clients", readers: byPoller},
	{Name: "LIVE_POLLER_CORS_ORIGINS", Help: "comma-separated origins allowed to read (or *)", readers: byPoller},
	{Name: "LIVE_POLLER_RATE", Default: "5 (off disables)", Help: "requests per second per client", readers: byPoller},
	{Name: "LIVE_POLLER_BURST", Default: "20", Help: "burst per client", readers: byPoller},
	{Name: "LIVE_POLLER_PARK", Default: "keepalive", Help: "how waiting long-polls and SSE streams are held: keepalive (hijacked and parked, about 1 KiB per long-poll, 3 KB per stream), close, or off (a goroutine each)", readers: byPoller},
	{Name: "LIVE_POLLER_LINGER", Default: "250ms (0 or off disables)", Help: "how long a long-poll woken by a change waits for the next changes before it answers, so a hot event costs each browser at most about one answer and re-poll per linger", readers: byPoller},
	{Name: "LIVE_POLLER_HOT_LONGPOLLS", Default: "500 (off disables)", Help: "clients waiting on one eventId (long-polls and SSE streams) that make it hot: its long-poll answers then carry Live-Transport: sse, and the client moves to the SSE stream, which costs one write per change instead of an answer and a new request", readers: byPoller},
	{Name: "LIVE_POLLER_HEARTBEAT", Default: "15s", Help: "SSE heartbeat interval", readers: byPoller},
	{Name: "LIVE_POLLER_SSE_WRITE_TIMEOUT", Default: "10s", Help: "bound of one SSE write; a client that does not read within it is disconnected (it resumes with Last-Event-ID)", readers: byPoller},
	{Name: "LIVE_POLLER_SSE_MAX_PER_TOKEN", Default: "16", Help: "open SSE streams per poll token", readers: byPoller},
	{Name: "LIVE_POLLER_SSE_MAX_PER_ADDR", Default: "64", Help: "open SSE streams per remote address", readers: byPoller},
	{Name: "LIVE_POLLER_PUSHER_WS_URL", Help: "ws(s)://host[:port][/path] where browsers reach a self-hosted Pusher-compatible server", readers: byPoller},

	{Name: "LIVE_DATA_DIR", Default: "./data", Help: "where the embedded nats-server stores JetStream data", readers: byDev},
	{Name: "LIVE_NATS_LISTEN", Default: "127.0.0.1:4222", Help: "where the embedded nats-server listens, for operator tools and separately started roles", readers: byDev},
	{Name: "LIVE_DEV_PUSHER_ADDR", Default: "127.0.0.1:8081", Help: "where dev's own Pusher-compatible server listens (WebSocket /app/{key}, HTTP API /apps/{appId}/) when no PUSHER_* credentials are set", readers: byDev},

	{Name: "LIVE_API_KEY", Help: "API key for --api-url", Secret: true, readers: byPublish},
}

// varsOf returns the settings any of r reads, in the table's order.
func varsOf(r readers) []envVar {
	var out []envVar
	for _, v := range settingsTable {
		if v.readers&r != 0 {
			out = append(out, v)
		}
	}
	return out
}

// dev has no LIVE_NATS_*: it embeds its own server.
func devVars() []envVar     { return varsOf(byRoles | byAPI | byRelay | byPoller | byDev) }
func apiVars() []envVar     { return varsOf(byNATS | byRoles | byAPI) }
func relayVars() []envVar   { return varsOf(byNATS | byRoles | byRelay) }
func pollerVars() []envVar  { return varsOf(byNATS | byRoles | byPoller) }
func publishVars() []envVar { return varsOf(byNATS | byPublish) }
func natsVars() []envVar    { return varsOf(byNATS) }
