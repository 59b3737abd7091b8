package pushercompat

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxClockSkew is Pusher's window for auth_timestamp: "The server will only
// accept requests where the timestamp is within 600s of the current time".
const maxClockSkew = 600 * time.Second

// authParams are the query parameters every signed request carries.
var authParams = []string{"auth_key", "auth_timestamp", "auth_version", "auth_signature"}

// credentials are what a request is checked against.
type credentials struct {
	key, secret string
}

// stringToSign is what Pusher signs: method, path and the query without
// auth_signature, keys lower-cased and sorted, joined as k=v&k=v and not
// URL-escaped (docs "Generating authentication signatures").
func stringToSign(method, path string, query url.Values) string {
	keys := make([]string, 0, len(query))
	lower := make(map[string][]string, len(query))
	for k, v := range query {
		lk := strings.ToLower(k)
		if lk == "auth_signature" {
			continue
		}
		if _, seen := lower[lk]; !seen {
			keys = append(keys, lk)
		}
		lower[lk] = append(lower[lk], v...)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		vs := slices.Clone(lower[k])
		slices.Sort(vs)
		for _, v := range vs {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
		}
	}
	return method + "\n" + path + "\n" + b.String()
}

// sign returns the hex HMAC-SHA256 of msg under secret.
func sign(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// bodyMD5 returns the lower-case hex MD5 that body_md5 must carry.
func bodyMD5(body []byte) string {
	sum := md5.Sum(body)
	return hex.EncodeToString(sum[:])
}

// signedQuery returns the query string pusher-http-go would send for a
// request: the auth parameters, body_md5 when body is not nil, and
// auth_signature last, unescaped. Tests use it to build raw requests.
func signedQuery(c credentials, method, path string, ts int64, body []byte) string {
	q := url.Values{
		"auth_key":       {c.key},
		"auth_timestamp": {strconv.FormatInt(ts, 10)},
		"auth_version":   {"1.0"},
	}
	if body != nil {
		q.Set("body_md5", bodyMD5(body))
	}
	sts := stringToSign(method, path, q)
	unescaped := strings.TrimPrefix(sts, method+"\n"+path+"\n")
	return unescaped + "&auth_signature=" + sign(c.secret, sts)
}

// verify checks the signature of a request the way Pusher does and returns
// nil or an *apiError with status 401 and the reason.
func verify(c credentials, method, path, rawQuery string, body []byte, now time.Time) *apiError {
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return unauthorized("Invalid query string: %v", err)
	}
	for _, p := range authParams {
		switch n := len(query[p]); {
		case n == 0:
			return unauthorized("Missing parameter: %s", p)
		case n > 1:
			return unauthorized("Parameter %s given %d times", p, n)
		}
	}
	if got := query.Get("auth_key"); got != c.key {
		return unauthorized("Unknown auth_key")
	}
	if v := query.Get("auth_version"); v != "1.0" {
		return unauthorized("Unsupported auth_version %q, want 1.0", v)
	}
	tsText := query.Get("auth_timestamp")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return unauthorized("Invalid auth_timestamp %q", tsText)
	}
	// Compare against bounds rather than subtracting, so an extreme
	// timestamp cannot overflow into the window.
	window := int64(maxClockSkew / time.Second)
	if ts < now.Unix()-window || ts > now.Unix()+window {
		return unauthorized("Timestamp expired: Given timestamp (%d) not within 600s of server time (%d)", ts, now.Unix())
	}
	if len(body) > 0 || len(query["body_md5"]) > 0 {
		switch n := len(query["body_md5"]); {
		case n == 0:
			return unauthorized("Missing parameter: body_md5")
		case n > 1:
			return unauthorized("Parameter body_md5 given %d times", n)
		}
		if got, want := query.Get("body_md5"), bodyMD5(body); !hmac.Equal([]byte(strings.ToLower(got)), []byte(want)) {
			return unauthorized("Invalid body_md5: the MD5 of the body is %s, but you sent %q", want, got)
		}
	}
	sts := stringToSign(method, path, query)
	got := strings.ToLower(query.Get("auth_signature"))
	if !hmac.Equal([]byte(got), []byte(sign(c.secret, sts))) {
		return unauthorized("Invalid signature: you should have sent HmacSHA256Hex(%q, your_secret_key), but you sent %q", sts, got)
	}
	return nil
}

func unauthorized(format string, args ...any) *apiError {
	return &apiError{status: 401, msg: fmt.Sprintf(format, args...)}
}
