package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// PusherChannelAuth is Pusher's private-channel signature as pusher-js
// expects it from an auth endpoint and as a Channels server checks it:
// key:hex(HMAC-SHA256(secret, socket_id:channel_name)). The poller signs
// with it and pushercompat verifies with it, so the two cannot drift apart.
func PusherChannelAuth(key, secret, socketID, channel string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(socketID + ":" + channel))
	return key + ":" + hex.EncodeToString(m.Sum(nil))
}

// MaxPusherChannelLen is Pusher's limit on a channel name, in bytes.
const MaxPusherChannelLen = 164

// PusherChannelByte reports whether c may stand in a Pusher channel name:
// A-Z a-z 0-9 and - _ = @ , . ;
func PusherChannelByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_=@,.;", c) >= 0
}

// ValidateChannelPrefix checks the prefix of the relay's channel names (and
// of what the poller tells browsers to subscribe to): Pusher's channel
// characters, and room for the longest eventId after it ("private-" first
// when private).
func ValidateChannelPrefix(prefix string, private bool) error {
	for i := 0; i < len(prefix); i++ {
		if !PusherChannelByte(prefix[i]) {
			return fmt.Errorf("may hold only A-Z a-z 0-9 and - _ = @ , . ; (found %q at offset %d)", prefix[i], i)
		}
	}
	longest := len(prefix) + MaxEventIDLen
	if private {
		longest += len("private-")
	}
	if longest > MaxPusherChannelLen {
		return fmt.Errorf("too long: a channel name for a %d-character eventId would have %d characters, Pusher allows %d", MaxEventIDLen, longest, MaxPusherChannelLen)
	}
	return nil
}
