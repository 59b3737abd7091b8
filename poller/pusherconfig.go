package poller

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/wire"
)

// Pusher is the browser's side of the Pusher settings. The relay reads the
// same variables for the server side; only the WebSocket address differs,
// because browsers may reach a self-hosted server by another name than the
// relay's REST calls do.
type Pusher struct {
	// Key is the app key (PUSHER_KEY). Zero means Pusher is off.
	Key string
	// Secret signs private-channel subscriptions (PUSHER_SECRET). It is
	// never logged nor served. Zero means the auth route answers 404.
	Secret string
	// Cluster is Pusher's cluster, such as eu (PUSHER_CLUSTER).
	Cluster string
	// WSHost, WSPort, WSPath and ForceTLS are the browser-facing WebSocket
	// address of a self-hosted Pusher-compatible server
	// (LIVE_POLLER_PUSHER_WS_URL, else PUSHER_HOST and PUSHER_SECURE).
	// Zero WSHost means Pusher's own, by Cluster.
	WSHost   string
	WSPort   int
	WSPath   string
	ForceTLS bool
	// ChannelPrefix goes before the eventId (LIVE_RELAY_CHANNEL_PREFIX).
	// Zero means "event-".
	ChannelPrefix string
	// Private means the relay sends to private-<prefix><eventId>
	// (LIVE_RELAY_PRIVATE_CHANNELS), which browsers subscribe to through
	// POST /v1/pusher/auth.
	Private bool
}

// Enabled reports whether Pusher is configured.
func (p Pusher) Enabled() bool { return p.Key != "" }

func (p Pusher) prefix() string {
	if p.ChannelPrefix == "" {
		return "event-"
	}
	return p.ChannelPrefix
}

// loadPusher reads the browser's side of the Pusher settings into p.
func loadPusher(r *env.Reader, p *Pusher) {
	r.String("PUSHER_KEY", &p.Key)
	r.String("PUSHER_SECRET", &p.Secret)
	r.String("PUSHER_CLUSTER", &p.Cluster)
	r.String("LIVE_RELAY_CHANNEL_PREFIX", &p.ChannelPrefix)
	r.Bool("LIVE_RELAY_PRIVATE_CHANNELS", &p.Private)
	secure := true
	r.Bool("PUSHER_SECURE", &secure)
	if v, ok := r.Lookup("LIVE_POLLER_PUSHER_WS_URL"); ok {
		host, port, path, tls, err := parseWSURL(v)
		if err != nil {
			r.Add(fmt.Errorf("LIVE_POLLER_PUSHER_WS_URL=%q: %w", v, err))
		}
		p.WSHost, p.WSPort, p.WSPath, p.ForceTLS = host, port, path, tls
	} else if v, ok := r.Lookup("PUSHER_HOST"); ok {
		// A self-hosted server (soketi, pushercompat) serves the WebSocket
		// and REST on one address; browsers use it unless told otherwise.
		scheme := "ws://"
		if secure {
			scheme = "wss://"
		}
		host, port, path, tls, err := parseWSURL(scheme + v)
		if err != nil {
			r.Add(fmt.Errorf("PUSHER_HOST=%q: want host[:port]: %w", v, err))
		}
		p.WSHost, p.WSPort, p.WSPath, p.ForceTLS = host, port, path, tls
	}
	if p.Key == "" {
		// Nothing to do: with Pusher off, browsers poll, and the poller's
		// reads are guarded by poll tokens, not channels.
		p.Private = false
	}
}

// validate reports the Pusher settings the poller cannot serve browsers
// with; with Pusher off there are none.
func (p Pusher) validate() error {
	if !p.Enabled() {
		return nil
	}
	var errs []error
	if err := wire.ValidateChannelPrefix(p.prefix(), p.Private); err != nil {
		errs = append(errs, fmt.Errorf("LIVE_RELAY_CHANNEL_PREFIX=%q: %w", p.ChannelPrefix, err))
	}
	if p.Private && p.Secret == "" {
		errs = append(errs, errors.New("PUSHER_SECRET is empty while LIVE_RELAY_PRIVATE_CHANNELS=true: the poller signs browsers' private-channel subscriptions with it"))
	}
	return errors.Join(errs...)
}

// parseWSURL reads ws(s)://host[:port][/path] as pusher-js takes it: wsHost,
// wsPort (the scheme's default when absent), wsPath and forceTLS.
func parseWSURL(v string) (host string, port int, path string, tls bool, err error) {
	u, err := url.Parse(v)
	if err != nil {
		return "", 0, "", false, errors.New("want ws://host[:port][/path] or wss://…")
	}
	switch u.Scheme {
	case "ws":
		port = 80
	case "wss":
		port, tls = 443, true
	default:
		return "", 0, "", false, errors.New("want the scheme ws or wss")
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", 0, "", false, errors.New("want ws://host[:port][/path] or wss://… with no user, query or fragment")
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, "", false, errors.New("want a port from 1 to 65535")
		}
		port = n
	}
	return u.Hostname(), port, strings.TrimSuffix(u.Path, "/"), tls, nil
}
