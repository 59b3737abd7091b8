// Package polltoken mints and verifies the tokens that let a browser read
// one planned event's changes from the poller. A token names one eventId and
// an expiry and is signed with HMAC-SHA256 under LIVE_POLL_SECRET, so a
// poller replica verifies it without any lookup, and a token for one eventId
// never reads another.
//
// Format (URL-safe, no padding): v1.<eventId>.<expiry unix seconds>.<base64url(hmac)>
// where the MAC covers "v1.<eventId>.<expiry>".
package polltoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

// Errors returned by Verify. ErrExpired and ErrInvalid mean 401; ErrWrongEvent
// means 403 (a valid token, for another eventId).
var (
	ErrInvalid    = errors.New("poll token is malformed or forged")
	ErrExpired    = errors.New("poll token has expired")
	ErrWrongEvent = errors.New("poll token is for another event")
)

// MinSecretLen is the shortest secret accepted; shorter ones are guessable.
const MinSecretLen = 16

// MaxTokenLen bounds what Verify reads, so a huge query string costs nothing.
const MaxTokenLen = 256

const version = "v1"

// Mint returns a token for eventID valid until now+ttl.
func Mint(secret []byte, eventID string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("poll secret must be at least %d bytes", MinSecretLen)
	}
	if err := wire.ValidateEventID(eventID); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", fmt.Errorf("poll token ttl must be positive, got %v", ttl)
	}
	payload := version + "." + eventID + "." + strconv.FormatInt(now.Add(ttl).Unix(), 10)
	return payload + "." + sign(secret, payload), nil
}

// Verify checks that token is genuine, unexpired at now, and for eventID.
// A secret shorter than MinSecretLen verifies nothing: with an empty or
// guessable secret anyone could mint tokens, so a misconfigured poller fails
// closed.
func Verify(secret []byte, token, eventID string, now time.Time) error {
	if len(secret) < MinSecretLen || len(token) == 0 || len(token) > MaxTokenLen {
		return ErrInvalid
	}
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return ErrInvalid
	}
	payload, mac := token[:i], token[i+1:]
	if !hmac.Equal([]byte(sign(secret, payload)), []byte(mac)) {
		return ErrInvalid
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 3 || parts[0] != version {
		return ErrInvalid
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return ErrInvalid
	}
	if now.Unix() >= exp {
		return ErrExpired
	}
	if parts[1] != eventID {
		return ErrWrongEvent
	}
	return nil
}

func sign(secret []byte, payload string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
