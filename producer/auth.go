package producer

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
	"github.com/sirupsen/logrus"
)

// This file is who may call the API and how often: bearer keys compared in
// constant time, their fingerprints for logs, their dedup scopes, and a
// rate limit per key.

// keyFingerprint names key in logs: 32 bits of HMAC-SHA256 under the
// process's fpKey. Stable within a process, so one key's lines can be
// grouped; meaningless outside it.
func keyFingerprint(fpKey []byte, key string) string {
	m := hmac.New(sha256.New, fpKey)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// keyScope is the dedup scope of an API key (wire.DedupID): "k." and 72 bits
// of HMAC-SHA256 keyed with the API key itself over a fixed label. Every
// replica derives the same scope without sharing another secret; the raw key
// never reaches a header, and the scope cannot be turned back into it.
func keyScope(key string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("liveupdates idempotency scope v1"))
	return "k." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:9])
}

// keyHandler is a handler that knows which configured key authenticated it.
type keyHandler func(w http.ResponseWriter, r *http.Request, key int)

// authed checks Authorization: Bearer <key> against every configured key in
// constant time (comparing SHA-256 sums, so lengths leak nothing either).
func (a *API) authed(next keyHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, presented, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || presented == "" {
			a.unauthorized(w, "missing Authorization: Bearer <key> header")
			return
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(presented)))
		key := -1
		for i := range a.keys {
			if subtle.ConstantTimeCompare(sum[:], a.keys[i][:]) == 1 {
				key = i
			}
		}
		if key < 0 {
			a.unauthorized(w, "unknown API key")
			return
		}
		// The body's deadline starts here, so it bounds the handler's
		// own read and also what net/http reads of a body a handler left
		// unread (a 400 on the path, a 429) before it answers. A server
		// that cannot set deadlines (a test recorder) has no connection
		// to hold.
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.cfg.BodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			a.log.WithError(err).Debug("set the body read deadline")
		}
		next(w, r, key)
	})
}

// unauthorized answers 401 without reading the body and closes the
// connection: an unauthenticated client gets no server time for a body it
// may never finish sending. net/http reads what is left of a body before it
// writes the answer (to reuse the connection; Connection: close stops that)
// and again when the handler returns (an expired read deadline stops that).
func (a *API) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("Connection", "close")
	w.Header().Set("WWW-Authenticate", `Bearer realm="liveupdates"`)
	wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, msg)
	// A server that cannot set deadlines (a test recorder) has no
	// connection to hold; nothing is lost if this fails.
	if err := http.NewResponseController(w).SetReadDeadline(time.Now()); err != nil && !errors.Is(err, http.ErrNotSupported) {
		a.log.WithError(err).Debug("expire the read deadline of an unauthenticated request")
	}
}

// allow takes n changes from key's bucket, or answers 429 with Retry-After
// and reports false.
func (a *API) allow(w http.ResponseWriter, key, n int) bool {
	now := a.now()
	res := a.limiters[key].ReserveN(now, n)
	delay := res.DelayFrom(now)
	if res.OK() && delay == 0 {
		return true
	}
	res.CancelAt(now)
	secs := int(math.Ceil(delay.Seconds()))
	if !res.OK() || secs < 1 {
		secs = 1
	}
	a.log.WithFields(logrus.Fields{"key_fp": a.fps[key], "changes": n, "retry_after": secs}).Info("rate limited")
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	wire.WriteError(w, http.StatusTooManyRequests, wire.CodeRateLimited,
		fmt.Sprintf("over this key's rate of %v changes per second; retry after %d s", a.cfg.Rate, secs))
	return false
}
