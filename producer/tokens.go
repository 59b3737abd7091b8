package producer

import (
	"fmt"
	"time"

	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/wire"
)

// Poll token lifetimes.
const (
	DefaultPollTTL = time.Hour
	MaxPollTTL     = 24 * time.Hour
)

// MintPollToken returns a token that lets a browser poll eventID's changes
// until expiresAt (now+ttl, whole seconds). ttl zero means DefaultPollTTL;
// above MaxPollTTL or negative is ErrInvalid. Without Options.PollSecret it
// returns ErrNoPollSecret.
func (p *Publisher) MintPollToken(eventID string, ttl time.Duration) (token string, expiresAt time.Time, err error) {
	return mintPollToken(p.opts.PollSecret, eventID, ttl, p.opts.Now())
}

func mintPollToken(secret []byte, eventID string, ttl time.Duration, now time.Time) (string, time.Time, error) {
	if len(secret) == 0 {
		return "", time.Time{}, ErrNoPollSecret
	}
	if err := wire.ValidateEventID(eventID); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if ttl == 0 {
		ttl = DefaultPollTTL
	}
	if ttl < time.Second || ttl > MaxPollTTL {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalid, &wire.InputError{Code: wire.CodeInvalidRequest, Err: ErrInvalidTTL,
			Msg: fmt.Sprintf("ttl must be 1 to %d seconds, got %v", int(MaxPollTTL.Seconds()), ttl)})
	}
	tok, err := polltoken.Mint(secret, eventID, ttl, now)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint poll token for %s: %w", eventID, err)
	}
	return tok, time.Unix(now.Add(ttl).Unix(), 0).UTC(), nil
}
