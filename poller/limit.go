package poller

import (
	"hash/maphash"
	"sync"
)

// limiter is a per-client token bucket over a bounded, sharded map. It also
// remembers when each client was last seen, for the active-clients gauge.
// Times are unix nanoseconds so the hot path allocates nothing.
type limiter struct {
	rate     float64 // tokens per second; <= 0 means unlimited
	burst    float64
	perShard int
	seed     maphash.Seed
	shards   [limiterShards]limShard
}

const limiterShards = 32

type limShard struct {
	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	last   int64 // unix nanos of the last refill
}

func newLimiter(rate float64, burst, maxClients int) *limiter {
	l := &limiter{rate: rate, burst: float64(burst), perShard: max(1, maxClients/limiterShards), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*bucket)
	}
	return l
}

// allow takes one token for client at now. When none is left it returns
// false and how many seconds until one is.
func (l *limiter) allow(client string, now int64) (bool, float64) {
	s := &l.shards[maphash.String(l.seed, client)%limiterShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[client]
	if b == nil {
		if len(s.m) >= l.perShard {
			l.shrink(s, now)
		}
		b = &bucket{tokens: l.burst, last: now}
		s.m[client] = b
	}
	if l.rate <= 0 {
		b.last = now
		return true, 0
	}
	if now > b.last {
		b.tokens = min(l.burst, b.tokens+float64(now-b.last)/1e9*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, (1 - b.tokens) / l.rate
}

// shrink makes room in a full shard: first it forgets clients whose bucket
// has refilled (forgetting them changes nothing), then, if the shard is
// still full (a flood of distinct clients), an eighth of the rest.
func (l *limiter) shrink(s *limShard, now int64) {
	full := int64(1e9 * 60)
	if l.rate > 0 {
		full = int64(l.burst / l.rate * 1e9)
	}
	for k, b := range s.m {
		if now-b.last >= full {
			delete(s.m, k)
		}
	}
	if len(s.m) < l.perShard {
		return
	}
	n := len(s.m)/8 + 1
	for k := range s.m {
		if n == 0 {
			break
		}
		delete(s.m, k)
		n--
	}
}

// active counts clients seen since the given unix nanos.
func (l *limiter) active(since int64) int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for _, b := range s.m {
			if b.last >= since {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}
