package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Deep resume. The index holds only the newest changes of each eventId; a
// cursor below an eventId's floor used to be answered "reset" (refetch
// everything) although the stream still held what the client missed. Now
// such a cursor is answered from the stream itself, a page at a time, with
// a batched direct get filtered by the eventId's subjects (allow_direct is
// on LIVE_EVENTS, so any replica of the stream answers). Each page's cursor
// is the last seq it holds, so the client's next poll continues where the
// page ended; the page that reaches the floor is joined with the ring and
// hands out the usual cursor. A page that ends short of the floor without
// proof that its responder was current (a follower may lag the leader by a
// few milliseconds) is confirmed by one request to the leader. "reset"
// remains only for what the stream no
// longer holds: changes removed by its age or size limits (or a purge).

const (
	// deepPageChanges and deepPageBytes bound one page.
	deepPageChanges = 1000
	deepPageBytes   = 4 << 20
	// deepConcurrency bounds the deep reads in flight, so clients far
	// behind cannot turn the poller into a load on JetStream.
	deepConcurrency = 8
	// deepTimeout bounds one page's read.
	deepTimeout = 10 * time.Second
)

// errDeepBehind means the replica that answered a page lagged the leader;
// a retry is answered in full.
var errDeepBehind = errors.New("the stream replica that answered is behind")

// leaderNext returns the seq of the first change of id at or after from,
// asked of the stream leader with the JetStream API (a direct get could be
// answered by a lagging follower).
func (p *Poller) leaderNext(ctx context.Context, id string, from uint64) (uint64, bool, error) {
	prefix := p.js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	if !strings.HasSuffix(prefix, ".") {
		prefix += "."
	}
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{from, wire.EventSubjectFilter(id)})
	if err != nil {
		return 0, false, err
	}
	msg, err := p.js.Conn().RequestWithContext(ctx, prefix+"STREAM.MSG.GET."+p.scfg.Name, req)
	if err != nil {
		return 0, false, fmt.Errorf("msg get %s from seq %d: %w", wire.EventSubjectFilter(id), from, err)
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, false, fmt.Errorf("msg get %s: %w", wire.EventSubjectFilter(id), err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("msg get %s from seq %d: %w", wire.EventSubjectFilter(id), from, resp.Error)
	}
	if resp.Message == nil {
		return 0, false, fmt.Errorf("msg get %s: no message and no error in the answer", wire.EventSubjectFilter(id))
	}
	return resp.Message.Seq, true, nil
}

// errStreamGone means the stream no longer holds every change after a
// cursor: only a reset is honest.
var errStreamGone = errors.New("the stream no longer holds the changes after the cursor")

// deepPage reads the changes of id with seq in (since, floor] from the
// stream, at most a page of them, in seq order. cursor is the last seq the
// page covers: floor when it reached it, else the last seq read.
func (p *Poller) deepPage(ctx context.Context, id string, since, floor uint64) (items []item, cursor uint64, err error) {
	stp := p.st.Load()
	if stp == nil {
		return nil, 0, errors.New("stream not opened yet")
	}
	select {
	case p.deepSem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { <-p.deepSem }()
	ctx, cancel := context.WithTimeout(ctx, deepTimeout)
	defer cancel()

	msgs, err := jetstreamext.GetBatch(ctx, p.js, p.scfg.Name, deepPageChanges,
		jetstreamext.GetBatchSeq(since+1),
		jetstreamext.GetBatchSubject(wire.EventSubjectFilter(id)),
		jetstreamext.GetBatchMaxBytes(deepPageBytes))
	if err != nil {
		return nil, 0, fmt.Errorf("batch get %s from seq %d: %w", wire.EventSubjectFilter(id), since+1, err)
	}
	cursor = floor
	n := 0
	// proven: the responder held the stream up to the floor. Direct gets
	// may be answered by a follower a few milliseconds behind the leader,
	// and a page that merely ends could be such a follower's short view.
	proven := false
	last := since
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("batch get %s from seq %d: %w", wire.EventSubjectFilter(id), since+1, err)
		}
		if m.Sequence > floor {
			cursor, proven = floor, true // everything up to the floor was read; the ring holds the rest
			break
		}
		n++
		last = m.Sequence
		env, _, derr := wire.DecodeMessage(m.Subject, m.Header, m.Data, m.Sequence, m.Time)
		if derr == nil && env.EventID == id {
			items = append(items, item{seq: m.Sequence, typ: env.Type, json: env.AppendJSON(nil)})
		}
		// The page ends early (batch or byte limit) when the server says
		// more match after this one; the cursor then stops here.
		if pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64); n == deepPageChanges || pending > 0 {
			cursor, proven = m.Sequence, true
		} else {
			cursor, proven = floor, m.Sequence == floor
		}
	}
	if !proven {
		// Ask the leader (not a direct get) for the eventId's next change
		// after what was read: one beyond the floor, or none, proves the
		// page; one at or below it means the responder was behind.
		next, found, err := p.leaderNext(ctx, id, last+1)
		if err != nil {
			return nil, 0, err
		}
		if found && next <= floor {
			return nil, 0, fmt.Errorf("%w: direct get ended at seq %d, the leader holds seq %d of %s", errDeepBehind, last, next, id)
		}
	}
	// Checked after the read: the stream loses changes only from its
	// front, so a first seq at or below since+1 now was so during the read,
	// and the read saw every change after the cursor.
	info, err := (*stp).Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("info %s: %w", p.scfg.Name, err)
	}
	if info.State.FirstSeq > since+1 {
		return nil, 0, errStreamGone
	}
	return items, cursor, nil
}

// answerDeep answers a poll whose cursor is below the index's floor from
// the stream. It reports false when only a reset is honest.
func (p *Poller) answerDeep(w http.ResponseWriter, r *http.Request, id string, since, floor uint64) bool {
	items, cursor, err := p.deepPage(r.Context(), id, since, floor)
	if errors.Is(err, errStreamGone) {
		return false
	}
	if err != nil {
		if r.Context().Err() != nil {
			return true // the client left
		}
		p.log.WithError(err).WithField("event_id", id).Warn("deep resume failed")
		w.Header().Set("Retry-After", "1")
		p.fail(w, routeUpdates, outUnavailable, http.StatusServiceUnavailable, wire.CodeUnavailable, "the stream is not reachable; retry shortly")
		return true
	}
	v := view{applied: cursor, items: items, deep: true}
	if cursor == floor {
		// The page reached the floor: the ring has the rest, so the client
		// is caught up in one answer (unless the floor moved meanwhile; the
		// next poll then pages on from floor).
		var buf [16]item
		if rv := p.idx.read(id, readSince(floor, true), buf[:0]); !rv.reset && !rv.behind {
			v.items = append(v.items, rv.items...)
			v.applied = rv.applied
			v.deep, v.newest = false, rv.newest
		}
	}
	p.writeUpdates(w, v, outDeep)
	return true
}
