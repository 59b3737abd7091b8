package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
