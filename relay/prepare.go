package relay

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/wire"
)

// item is one change the relay holds: its message, stays unacked until
// Pusher accepted it (or it was dead-lettered).
type item struct {
	msg       jetstream.Msg
	seq       uint64
	delivered uint64 // NumDelivered when fetched
	env       wire.Envelope
	socketID  string
	channel   string
	touched   time.Time // last ack-wait reset (fetch or InProgress); guarded by holder.mu
	// part is the partition the change was read for in partitioned mode
	// (settled there instead of acked), nil with the shared consumer.
	part *partState
}

// revoked reports whether the change's partition was handed over: it must
// not be sent from here any more.
func (it *item) revoked() bool { return it.part != nil && it.part.revoked.Load() }

// errInvalidChange marks a stored message that is no valid change.
var errInvalidChange = errors.New("invalid change")

// decode builds the item of a fetched message, or explains why the message
// is no valid change. wire.DecodeMessage is the whole check every reader
// applies (UTF-8 JSON data, a plain id, eventId and type from the subject)
// and drops a socket id Pusher's client would refuse.
func decode(msg jetstream.Msg, seq uint64, stored time.Time) (wire.Envelope, string, error) {
	env, socketID, err := wire.DecodeMessage(msg.Subject(), msg.Headers(), msg.Data(), seq, stored)
	if err != nil {
		return wire.Envelope{}, "", fmt.Errorf("%w: %w", errInvalidChange, err)
	}
	return env, socketID, nil
}

// outEvent is one Pusher event: the newest change of its group, standing for
// every change in items (oldest first).
type outEvent struct {
	items    []*item
	channel  string
	name     string
	data     string
	socketID string
	shape    shape
}

// newest is the change whose envelope the event carries.
func (e *outEvent) newest() *item { return e.items[len(e.items)-1] }

// shape says how an envelope had to be shrunk for Pusher.
type shape int

const (
	shapePlain shape = iota
	shapeCompressed
	shapeReference
)

// coalesce groups held changes (in seq order) into Pusher events. The
// changes of one (channel, type) whose type is in types collapse into the
// newest, which keeps its own place in seq order; other changes pass alone.
func coalesce(items []*item, types map[string]bool) [][]*item {
	groups := make([][]*item, 0, len(items))
	if len(types) == 0 {
		// Nothing coalesces: every change is its own group, sharing the
		// items' backing array instead of one allocation each.
		for i := range items {
			groups = append(groups, items[i:i+1:i+1])
		}
		return groups
	}
	type key struct{ channel, typ string }
	last := make(map[key]int)
	for i, it := range items {
		if types[it.env.Type] {
			last[key{it.channel, it.env.Type}] = i
		}
	}
	pending := make(map[key][]*item)
	for i, it := range items {
		if !types[it.env.Type] {
			groups = append(groups, []*item{it})
			continue
		}
		k := key{it.channel, it.env.Type}
		if last[k] != i {
			pending[k] = append(pending[k], it)
			continue
		}
		groups = append(groups, append(pending[k], it))
		delete(pending, k)
	}
	return groups
}

// encoder builds the data string of an event within Pusher's size limit.
type encoder struct {
	limit int // bytes
	buf   bytes.Buffer
	zw    *gzip.Writer
	out   []byte // reused for the envelope JSON; each event copies it once
}

func newEncoder(limitKB int) *encoder {
	return &encoder{limit: limitKB * 1024}
}

// event builds the Pusher event of a group: the newest change's envelope,
// with the group's count, plain when it fits, else gzip+base64, else a
// reference the client fetches from the poller.
func (enc *encoder) event(group []*item) *outEvent {
	n := group[len(group)-1]
	env := n.env
	if len(group) > 1 {
		env.Coalesced = len(group)
	}
	ev := &outEvent{items: group, channel: n.channel, name: env.Type, socketID: sharedSocketID(group)}
	enc.out = env.AppendJSON(enc.out[:0])
	if len(enc.out) <= enc.limit {
		ev.data = string(enc.out)
		return ev
	}
	if z, ok := enc.compress(env.Data); ok {
		cenv := env
		cenv.Enc = wire.EncGzipBase64
		cenv.Data = z
		if enc.out = cenv.AppendJSON(enc.out[:0]); len(enc.out) <= enc.limit {
			ev.data, ev.shape = string(enc.out), shapeCompressed
			return ev
		}
	}
	env.Ref, env.Data = true, nil
	enc.out = env.AppendJSON(enc.out[:0])
	ev.data, ev.shape = string(enc.out), shapeReference
	return ev
}

// compress returns the data gzipped and base64-encoded as a JSON string, or
// false when that cannot fit the limit anyway.
func (enc *encoder) compress(data []byte) ([]byte, bool) {
	enc.buf.Reset()
	if enc.zw == nil {
		enc.zw, _ = gzip.NewWriterLevel(&enc.buf, gzip.BestCompression) // the level is valid
	} else {
		enc.zw.Reset(&enc.buf)
	}
	// Writes to a bytes.Buffer do not fail.
	_, _ = enc.zw.Write(data)
	_ = enc.zw.Close()
	n := base64.StdEncoding.EncodedLen(enc.buf.Len())
	if n+2 > enc.limit {
		return nil, false
	}
	out := make([]byte, n+2)
	out[0], out[n+1] = '"', '"'
	base64.StdEncoding.Encode(out[1:n+1], enc.buf.Bytes())
	return out, true
}

// sharedSocketID is the socket id to exclude for a group: the newest's,
// only if every change in it came from that socket; otherwise none, so
// nobody misses a change.
func sharedSocketID(group []*item) string {
	s := group[len(group)-1].socketID
	for _, it := range group {
		if it.socketID != s {
			return ""
		}
	}
	return s
}

// dlqID is the dedup id of a change's dead letter: one per stream seq, so
// replicas that dead-letter the same change store it once.
func dlqID(seq uint64) string { return "dlq-" + strconv.FormatUint(seq, 10) }
