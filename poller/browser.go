package poller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/nostressplanner/liveupdates/wire"
)

// What a browser needs besides the read API: the settings to connect
// (GET /v1/config), private-channel signatures backed by poll tokens
// (POST /v1/pusher/auth), and the client module itself (GET /v1/client.js).

// configAnswer is GET /v1/config. URLs are paths to append to the poller's
// base URL (what the page passed as url), so they hold behind a proxy that
// mounts the poller under a prefix.
type configAnswer struct {
	// Pusher is null when Pusher is off: browsers poll.
	Pusher *pusherAnswer `json:"pusher"`
	// TokenRequired says reads (and the auth route) need a poll token.
	TokenRequired bool       `json:"tokenRequired"`
	URLs          configURLs `json:"urls"`
	// PollIntervalMs is how often a browser polls without waiting.
	PollIntervalMs int64 `json:"pollIntervalMs"`
	// LongPollWaitSeconds is the longest wait= the poller honours.
	LongPollWaitSeconds int64 `json:"longPollWaitSeconds"`
	// RepollSpreadMs is the most a long-poll waits, at random, before it
	// asks again after an answer with changes: the linger, so a hot
	// event's browsers, all answered by one change at once, do not all
	// re-poll in the same millisecond, and a change published meanwhile
	// is answered at once when they do. 0 with the linger off.
	RepollSpreadMs int64 `json:"repollSpreadMs"`
	// TransportHeader names the long-poll answers' header that asks the
	// client to move to another transport; its value "sse" means the
	// stream URL, from the same cursor. It is sent on the answers of an
	// eventId on which at least HotLongPolls clients wait (0: never).
	TransportHeader string   `json:"transportHeader"`
	HotLongPolls    int      `json:"hotLongPolls"`
	Types           []string `json:"types"`
}

type pusherAnswer struct {
	Key     string `json:"key"`
	Cluster string `json:"cluster,omitempty"`
	// Set for a self-hosted server: pusher-js's wsHost, wsPort, wssPort,
	// wsPath and forceTLS.
	WSHost   string `json:"wsHost,omitempty"`
	WSPort   int    `json:"wsPort,omitempty"`
	WSPath   string `json:"wsPath,omitempty"`
	ForceTLS bool   `json:"forceTLS"`
	// Channel is the channel to subscribe to, with {eventId} to fill in.
	Channel       string `json:"channel"`
	ChannelPrefix string `json:"channelPrefix"`
	Private       bool   `json:"private"`
	// AuthEndpoint signs private channels; send the poll token with it.
	AuthEndpoint string `json:"authEndpoint,omitempty"`
}

type configURLs struct {
	Updates  string `json:"updates"`
	Stream   string `json:"stream"`
	Messages string `json:"messages"`
}

func (p *Poller) buildConfigAnswer() ([]byte, error) {
	a := configAnswer{
		TokenRequired: !p.cfg.Open(),
		URLs: configURLs{
			Updates:  "/v1/events/{eventId}/updates",
			Stream:   "/v1/events/{eventId}/stream",
			Messages: "/v1/events/{eventId}/messages/{seq}",
		},
		PollIntervalMs:      p.cfg.PollInterval.Milliseconds(),
		LongPollWaitSeconds: int64(p.cfg.MaxWait.Seconds()),
		RepollSpreadMs:      max(p.cfg.Linger, 0).Milliseconds(),
		TransportHeader:     headerTransport,
		HotLongPolls:        max(p.cfg.HotLongPolls, 0),
		Types:               wire.KnownTypes(),
	}
	if pc := p.cfg.Pusher; pc.Enabled() {
		ch := pc.prefix() + "{eventId}"
		if pc.Private {
			ch = "private-" + ch
		}
		a.Pusher = &pusherAnswer{
			Key: pc.Key, Cluster: pc.Cluster,
			WSHost: pc.WSHost, WSPort: pc.WSPort, WSPath: pc.WSPath, ForceTLS: pc.ForceTLS || pc.WSHost == "",
			Channel: ch, ChannelPrefix: pc.prefix(), Private: pc.Private,
		}
		if pc.Secret != "" {
			a.Pusher.AuthEndpoint = "/v1/pusher/auth"
		}
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("marshal config answer: %w", err)
	}
	return append(b, '\n'), nil
}

func (p *Poller) handleConfig(w http.ResponseWriter, r *http.Request) {
	p.cors(w, r)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	// The settings change only with a deploy; a minute of caching spares a
	// request per page load.
	h["Cache-Control"] = []string{"public, max-age=60"}
	h["Content-Length"] = []string{strconv.Itoa(len(p.configJSON))}
	w.WriteHeader(http.StatusOK)
	p.m.count(routeConfig, outOK)
	_, _ = w.Write(p.configJSON) // a failed write means the client left
}

// authRequest is POST /v1/pusher/auth's body, as pusher-js sends it (a
// form) or as JSON.
type authRequest struct {
	SocketID    string `json:"socket_id"`
	ChannelName string `json:"channel_name"`
	Token       string `json:"token"`
}

const maxAuthBody = 4 << 10

// handleAuth signs socket_id:channel_name for private-<prefix><eventId>,
// and only for the eventId of the caller's poll token: one token gives a
// viewer both Pusher and poll access to one event and nothing else.
func (p *Poller) handleAuth(w http.ResponseWriter, r *http.Request) {
	p.cors(w, r)
	pc := p.cfg.Pusher
	if !pc.Enabled() || pc.Secret == "" {
		p.fail(w, routeAuth, outNotFound, http.StatusNotFound, wire.CodeNotFound, "Pusher is not configured on this poller; poll instead")
		return
	}
	req, err := readAuthRequest(w, r)
	if err != nil {
		var me *http.MaxBytesError
		if errors.As(err, &me) {
			p.fail(w, routeAuth, outBadRequest, http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "the body is larger than 4 KiB")
			return
		}
		p.fail(w, routeAuth, outBadRequest, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error())
		return
	}
	if wire.ValidateSocketID(req.SocketID) != nil {
		p.fail(w, routeAuth, outBadRequest, http.StatusBadRequest, wire.CodeInvalidSocketID, "socket_id must be digits.digits, as Pusher issues it")
		return
	}
	want := "private-" + pc.prefix()
	id, ok := strings.CutPrefix(req.ChannelName, want)
	if !ok || wire.ValidateEventID(id) != nil {
		p.fail(w, routeAuth, outForbidden, http.StatusForbidden, wire.CodeForbidden, "this poller signs only "+want+"<eventId> channels")
		return
	}
	tok := req.Token
	if tok == "" {
		tok = r.URL.Query().Get("token")
	}
	if tok == "" {
		tok = bearerToken(r)
	}
	if !p.admit(w, r, routeAuth, id, tok, "a poll token is required: Authorization: Bearer, query token= or a token field") {
		return
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"auth":"`...)
	b = append(b, wire.PusherChannelAuth(pc.Key, pc.Secret, req.SocketID, req.ChannelName)...)
	b = append(b, "\"}\n"...)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-store"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	p.m.count(routeAuth, outOK)
	_, _ = w.Write(b)
}

func readAuthRequest(w http.ResponseWriter, r *http.Request) (authRequest, error) {
	var req authRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAuthBody))
	if err != nil {
		return req, err
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		if err := json.Unmarshal(body, &req); err != nil {
			return req, errors.New("the body is not a JSON object with socket_id and channel_name")
		}
		return req, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return req, errors.New("the body is not a form: socket_id=…&channel_name=…")
	}
	for k, dst := range map[string]*string{"socket_id": &req.SocketID, "channel_name": &req.ChannelName, "token": &req.Token} {
		if vs := form[k]; len(vs) > 1 {
			return req, errors.New(k + " given more than once")
		} else if len(vs) == 1 {
			*dst = vs[0]
		}
	}
	return req, nil
}

// clientFiles are the client's files the poller serves, by URL path.
var clientFiles = map[string]string{
	"/v1/client.js":          "client.js",
	"/v1/client.d.ts":        "client.d.ts",
	"/v1/client/client.js":   "client.js",
	"/v1/client/client.d.ts": "client.d.ts",
	"/v1/client/react.js":    "react.js",
	"/v1/client/react.d.ts":  "react.d.ts",
}

// asset is one client file, read once.
type asset struct {
	body []byte
	etag string
}

func loadAssets(files fs.FS) (map[string]asset, error) {
	if files == nil {
		return nil, nil
	}
	out := make(map[string]asset, len(clientFiles))
	for path, name := range clientFiles {
		b, err := fs.ReadFile(files, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // served as 404, like a poller without the client
		}
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		out[path] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out, nil
}

func (p *Poller) handleAsset(w http.ResponseWriter, r *http.Request) {
	p.cors(w, r)
	a, ok := p.assets[r.URL.Path]
	if !ok {
		p.fail(w, routeClient, outNotFound, http.StatusNotFound, wire.CodeNotFound, "this poller serves no browser client")
		return
	}
	h := w.Header()
	// A browser's module loader refuses a module of any other type; the
	// declarations go out the same way, since tools ignore the type.
	h["Content-Type"] = []string{"text/javascript; charset=utf-8"}
	// Revalidated after five minutes, so a deploy reaches browsers soon
	// while repeat loads cost a 304.
	h["Cache-Control"] = []string{"public, max-age=300"}
	h["Etag"] = []string{a.etag}
	if inm := r.Header.Get("If-None-Match"); inm != "" && assetETagMatch(inm, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		p.m.count(routeClient, outNotModified)
		return
	}
	h["Content-Length"] = []string{strconv.Itoa(len(a.body))}
	w.WriteHeader(http.StatusOK)
	p.m.count(routeClient, outOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.body)
	}
}

func assetETagMatch(inm, etag string) bool {
	for t := range strings.SplitSeq(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
