package receiver

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// replayPool shares replay caches across config reloads, so a reload does
// not forget which deliveries were already forwarded.
var replayPool = caddy.NewUsagePool()

// replayCapacity bounds the ids one cache remembers; beyond it the oldest
// are forgotten first.
const replayCapacity = 100_000

// replayPoolKey identifies a cache by scheme and keys: handlers verifying
// the same sender share one, and a reload that keeps the secrets keeps it.
// The keys are hashed so the pool never holds them in the clear.
func replayPoolKey(scheme string, keys [][]byte) string {
	h := sha256.New()
	h.Write([]byte(scheme))
	for _, k := range keys {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		h.Write(n[:])
		h.Write(k)
	}
	return "webhook_verify:" + hex.EncodeToString(h.Sum(nil))
}

type replayState int

const (
	replayNew replayState = iota
	replaySeen
	replayInFlight
)

type replayItem struct {
	key     string
	expires time.Time
}

// replayCache remembers delivery ids that were answered 2xx, each until its
// window ends, and the ids being handled right now.
type replayCache struct {
	mu       sync.Mutex
	capacity int
	done     map[string]time.Time // id key to the end of its window
	inflight map[string]struct{}
	// order lists done entries oldest first; windows are mostly equal, so
	// this is also expiry order. Entries replaced since are skipped when
	// popped.
	order []replayItem
	head  int
}

func newReplayCache(capacity int) *replayCache {
	return &replayCache{
		capacity: capacity,
		done:     make(map[string]time.Time),
		inflight: make(map[string]struct{}),
	}
}

// begin reports whether key was seen or is in flight; if neither, it marks
// key in flight and the caller must call finish.
func (c *replayCache) begin(key string, now time.Time) replayState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.done[key]; ok {
		if now.Before(exp) {
			return replaySeen
		}
		delete(c.done, key)
	}
	if _, ok := c.inflight[key]; ok {
		return replayInFlight
	}
	c.inflight[key] = struct{}{}
	return replayNew
}

// finish ends the flight of key and, if the backend accepted the delivery,
// remembers it for window.
func (c *replayCache) finish(key string, delivered bool, now time.Time, window time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, key)
	if !delivered {
		return
	}
	c.evict(now)
	exp := now.Add(window)
	c.done[key] = exp
	c.order = append(c.order, replayItem{key: key, expires: exp})
}

// evict drops expired entries and, at capacity, the oldest one.
func (c *replayCache) evict(now time.Time) {
	for c.head < len(c.order) {
		it := c.order[c.head]
		if now.Before(it.expires) && len(c.done) < c.capacity {
			break
		}
		c.order[c.head] = replayItem{}
		c.head++
		if exp, ok := c.done[it.key]; ok && exp.Equal(it.expires) {
			delete(c.done, it.key)
		}
	}
	// Reclaim the popped prefix once it is most of the slice.
	if c.head > len(c.order)/2 && c.head > 1024 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// len returns how many delivered ids are remembered.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.done)
}

// Destruct implements caddy.Destructor; the cache holds only memory.
func (c *replayCache) Destruct() error { return nil }
