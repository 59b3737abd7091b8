package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/client"
	"github.com/nostressplanner/liveupdates/producer"
	"github.com/nostressplanner/liveupdates/wire"
)

// mountDemo adds dev's demo to mux:
//
//	GET  /demo/{eventId}          the page: the client's status and a live list of changes
//	GET  /demo/assets/{file}      client.js and pusher.min.js for it
//	POST /demo/{eventId}/publish  {"type","data"[,"id"]}: publish through the producer library
//	POST /demo/{eventId}/token    a poll token for the page when LIVE_POLL_SECRET is set
//
// The publish and token routes take no API key: only runDev mounts them,
// and they answer only clients on this machine (loopback), because dev
// listens on every interface and anyone on the network could otherwise
// publish changes or mint poll tokens.
func mountDemo(mux *http.ServeMux, pub *producer.Publisher, log logrus.FieldLogger) {
	d := &demo{pub: pub, log: log.WithField("component", "demo")}
	mux.HandleFunc("GET /demo/{eventId}", d.page)
	mux.HandleFunc("GET /demo/assets/{file}", d.asset)
	mux.HandleFunc("POST /demo/{eventId}/publish", loopbackOnly(d.publish))
	mux.HandleFunc("POST /demo/{eventId}/token", loopbackOnly(d.token))
}

// loopbackOnly answers 403 to a client that is not on this machine. It
// looks at the connection's own address, never at a forwarding header a
// client could write.
func loopbackOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			wire.WriteError(w, http.StatusForbidden, wire.CodeForbidden,
				"the demo's publish and token routes answer only on this machine (loopback); use the API (POST /v1/events/...) with an API key")
			return
		}
		h(w, r)
	}
}

type demo struct {
	pub *producer.Publisher
	log logrus.FieldLogger
}

// demoAssets are the files the page loads, by the name it asks for.
var demoAssets = map[string]string{
	"client.js":     "client.js",
	"pusher.min.js": "vendor/pusher.min.js",
}

func (d *demo) page(w http.ResponseWriter, r *http.Request) {
	if err := wire.ValidateEventID(r.PathValue("eventId")); err != nil {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidEventID, err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, client.Files, "demo.html")
}

func (d *demo) asset(w http.ResponseWriter, r *http.Request) {
	name, ok := demoAssets[r.PathValue("file")]
	if !ok {
		wire.WriteError(w, http.StatusNotFound, wire.CodeNotFound, "no such demo asset")
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, client.Files, name)
}

func (d *demo) publish(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
		// ID is the optional idempotency key, as the API's.
		ID string `json:"id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidJSON, "want {\"type\":\"vote.updated\",\"data\":{...}}: "+err.Error())
		return
	}
	if len(body.Data) == 0 {
		body.Data = json.RawMessage("{}")
	}
	// No socket id: the page that publishes sees its own change too, as a
	// second tab does.
	res, err := d.pub.Publish(r.Context(), producer.Change{EventID: r.PathValue("eventId"), Type: body.Type, Data: body.Data, ID: body.ID})
	if err != nil {
		status, code, msg := demoAnswer(err)
		if status >= 500 {
			d.log.WithError(err).Warn("demo publish failed")
			w.Header().Set("Retry-After", "1")
		}
		wire.WriteError(w, status, code, msg)
		return
	}
	writeDemoJSON(w, http.StatusAccepted, map[string]any{"id": res.ID, "seq": res.Seq})
}

// demoAnswer maps a publish error to the status, wire code and message the
// ingest API answers it with (producer's API keeps its own mapping
// unexported), so the page sees the API's contract: 409 for an id stored
// with other content, 400 for bad input, 413 for data over the limit, and
// 503 for anything else, since the demo's only other failure is NATS not
// storing the change in time.
func demoAnswer(err error) (status int, code, msg string) {
	var ie *wire.InputError
	switch {
	case errors.Is(err, producer.ErrConflict) && errors.As(err, &ie):
		return http.StatusConflict, ie.Code, ie.Msg
	case errors.As(err, &ie):
		return http.StatusBadRequest, ie.Code, ie.Msg
	case errors.Is(err, producer.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, wire.CodeTooLarge, err.Error()
	default:
		return http.StatusServiceUnavailable, wire.CodeUnavailable, "the change was not stored; retry"
	}
}

func (d *demo) token(w http.ResponseWriter, r *http.Request) {
	tok, _, err := d.pub.MintPollToken(r.PathValue("eventId"), 12*time.Hour)
	switch {
	case errors.Is(err, producer.ErrNoPollSecret):
		tok = "" // reads are open: the page needs none
	case err != nil:
		wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidEventID, err.Error())
		return
	}
	writeDemoJSON(w, http.StatusOK, map[string]string{"token": tok})
}

func writeDemoJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A failed write means the page went away.
	_ = json.NewEncoder(w).Encode(v)
}
