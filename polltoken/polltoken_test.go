package polltoken

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	secret = []byte("0123456789abcdef-test-secret")
	now    = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
)

func mint(t *testing.T, eventID string, ttl time.Duration) string {
	t.Helper()
	tok, err := Mint(secret, eventID, ttl, now)
	if err != nil {
		t.Fatalf("Mint(%q): %v", eventID, err)
	}
	return tok
}

func TestMintFormat(t *testing.T) {
	t.Parallel()
	tok := mint(t, "e42", time.Hour)
	parts := strings.Split(tok, ".")
	if len(parts) != 4 || parts[0] != "v1" || parts[1] != "e42" || parts[2] != strconv.FormatInt(now.Add(time.Hour).Unix(), 10) || len(parts[3]) != 43 {
		t.Fatalf("Mint()=%q, want v1.e42.<now+1h unix>.<43-char MAC>", tok)
	}
	if len(tok) > MaxTokenLen {
		t.Fatalf("token of %d bytes is over MaxTokenLen", len(tok))
	}
	if long := mint(t, strings.Repeat("a", 128), time.Hour); len(long) > MaxTokenLen {
		t.Fatalf("token for the longest eventId is %d bytes, over MaxTokenLen %d", len(long), MaxTokenLen)
	}
}

func TestMintRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secret  []byte
		eventID string
		ttl     time.Duration
	}{
		{"a secret shorter than 16 bytes", []byte("short"), "e42", time.Hour},
		{"an empty secret", nil, "e42", time.Hour},
		{"an invalid eventId", secret, "e.42", time.Hour},
		{"an empty eventId", secret, "", time.Hour},
		{"a zero ttl", secret, "e42", 0},
		{"a negative ttl", secret, "e42", -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tok, err := Mint(tt.secret, tt.eventID, tt.ttl, now); err == nil {
				t.Fatalf("Mint()=%q, want an error", tok)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	good := mint(t, "e42", time.Minute)
	i := strings.LastIndexByte(good, '.')
	payload, mac := good[:i], good[i+1:]
	flip := func(s string, at int) string {
		b := []byte(s)
		if b[at] == 'A' {
			b[at] = 'B'
		} else {
			b[at] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name    string
		secret  []byte
		token   string
		eventID string
		now     time.Time
		want    error
	}{
		{"a fresh token for its eventId is accepted", secret, good, "e42", now, nil},
		{"a token one second before expiry is accepted", secret, good, "e42", now.Add(time.Minute - time.Second), nil},
		{"a token at its expiry is expired", secret, good, "e42", now.Add(time.Minute), ErrExpired},
		{"a token after its expiry is expired", secret, good, "e42", now.Add(time.Hour), ErrExpired},
		{"a token for another eventId is refused", secret, good, "e43", now, ErrWrongEvent},
		{"a token whose eventId was edited is forged", secret, strings.Replace(good, ".e42.", ".e43.", 1), "e43", now, ErrInvalid},
		{"a token whose expiry was extended is forged", secret, "v1.e42.9999999999." + mac, "e42", now, ErrInvalid},
		{"a token with a flipped MAC character is forged", secret, payload + "." + flip(mac, 0), "e42", now, ErrInvalid},
		{"a token with a flipped last MAC character is forged", secret, payload + "." + flip(mac, len(mac)-1), "e42", now, ErrInvalid},
		{"a token with a truncated MAC is forged", secret, good[:len(good)-1], "e42", now, ErrInvalid},
		{"a token under another secret is forged", []byte("another-secret-of-16+"), good, "e42", now, ErrInvalid},
		{"an empty token is invalid", secret, "", "e42", now, ErrInvalid},
		{"garbage is invalid", secret, "hello world", "e42", now, ErrInvalid},
		{"a token without dots is invalid", secret, "abc", "e42", now, ErrInvalid},
		{"an over-long token is invalid", secret, strings.Repeat("a", MaxTokenLen+1), "e42", now, ErrInvalid},
		{"an over-long token with a valid prefix is invalid", secret, good + strings.Repeat("A", MaxTokenLen), "e42", now, ErrInvalid},
		{"a token of another version is invalid", secret, "v2.e42.1764414000." + sign(secret, "v2.e42.1764414000"), "e42", now, ErrInvalid},
		{"a signed payload with a non-numeric expiry is invalid", secret, "v1.e42.soon." + sign(secret, "v1.e42.soon"), "e42", now, ErrInvalid},
		{"a signed payload with too many parts is invalid", secret, "v1.e.42.1764414000." + sign(secret, "v1.e.42.1764414000"), "e", now, ErrInvalid},
		{"a short secret verifies nothing, even a token it signed itself", []byte("short"), "v1.e42.9999999999." + sign([]byte("short"), "v1.e42.9999999999"), "e42", now, ErrInvalid},
		{"an empty secret verifies nothing, even a token it signed itself", nil, "v1.e42.9999999999." + sign(nil, "v1.e42.9999999999"), "e42", now, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Verify(tt.secret, tt.token, tt.eventID, tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify()=%v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify()=%v, want %v", err, tt.want)
			}
		})
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, eventID := range []string{"e42", "A", "a-b_c", strings.Repeat("Z", 128)} {
		for _, ttl := range []time.Duration{time.Second, time.Hour, 30 * 24 * time.Hour} {
			tok := mint(t, eventID, ttl)
			if err := Verify(secret, tok, eventID, now); err != nil {
				t.Errorf("Verify(Mint(%q, %v))=%v, want nil", eventID, ttl, err)
			}
			if err := Verify(secret, tok, eventID, now.Add(ttl)); !errors.Is(err, ErrExpired) {
				t.Errorf("Verify(Mint(%q, %v)) at expiry=%v, want ErrExpired", eventID, ttl, err)
			}
		}
	}
}

func FuzzVerify(f *testing.F) {
	good, err := Mint(secret, "e42", time.Minute, now)
	if err != nil {
		f.Fatalf("Mint: %v", err)
	}
	for _, s := range []string{good, "", "v1.e42.0.x", "....", good + "x", "v1.e42.1764414000"} {
		f.Add(s, "e42")
	}
	f.Fuzz(func(t *testing.T, token, eventID string) {
		err := Verify(secret, token, eventID, now)
		switch {
		case err == nil:
			// Only the genuine token verifies: anything else accepted
			// would be a forgery.
			if token != good || eventID != "e42" {
				t.Fatalf("Verify(%q, %q) accepted a token that was never minted", token, eventID)
			}
		case errors.Is(err, ErrInvalid), errors.Is(err, ErrExpired), errors.Is(err, ErrWrongEvent):
			if token != good && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify(%q)=%v for an altered token, want ErrInvalid", token, err)
			}
		default:
			t.Fatalf("Verify(%q)=%v, want one of the sentinels", token, err)
		}
	})
}
