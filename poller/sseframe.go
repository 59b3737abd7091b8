package poller

import (
	"bytes"
	"sync/atomic"
)

// sseFrames caches each recent change's encoded frame, so a change sent to
// thousands of streams of one eventId is encoded (and scanned for line
// breaks) once, not once per stream. A slot holds the frame of one seq;
// a miss, or a slot taken by a later seq, encodes again, so its size only
// bounds how far behind a stream may be and still share.
const sseFrameSlots = 1024

type sseFrame struct {
	seq uint64
	b   []byte
}

type frameCache struct {
	slots [sseFrameSlots]atomic.Pointer[sseFrame]
}

// frame returns it's encoded SSE frame ("id:", "event:", "data:" lines and
// the blank line), shared by every stream; callers must not modify it.
// Two streams missing at once both encode: the frames are equal bytes.
func (fc *frameCache) frame(it item) []byte {
	slot := &fc.slots[it.seq%sseFrameSlots]
	if f := slot.Load(); f != nil && f.seq == it.seq {
		return f.b
	}
	b := appendEvent(make([]byte, 0, len(it.json)+len(it.typ)+40), it.seq, it.typ, it.json)
	slot.Store(&sseFrame{seq: it.seq, b: b})
	return b
}

// appendEvent appends one event's frame, with the data split at every line
// break (CRLF, CR or LF, as the SSE spec reads them) so no field ends early.
func appendEvent(b []byte, seq uint64, typ string, data []byte) []byte {
	b = append(b, "id: "...)
	b = formatSeq(b, seq)
	b = append(b, "\nevent: "...)
	b = append(b, typ...)
	b = append(b, '\n')
	for {
		b = append(b, "data: "...)
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n')
}

// addFrame adds a held change's shared frame.
func (p *Poller) addFrame(sw *sseWriter, it item) {
	if p.sseBaseline.Load() {
		sw.addEvent(it.seq, it.typ, it.json)
		return
	}
	sw.add(p.frames.frame(it))
}
