package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// replayPool shares in-process replay caches across config reloads, so a
// reload does not forget which deliveries were already forwarded.
var replayPool = caddy.NewUsagePool()

// replayCapacity bounds the ids one cache remembers; beyond it the oldest
// are forgotten first. Entries have a fixed size, so this also bounds the
// cache's memory: about 110 bytes an entry, 11 MB in all.
const replayCapacity = 100_000

// maxDeliveryID is the longest delivery id accepted while a replay window
// is on. Senders use ids of a few dozen bytes (a UUID, a ULID, msg_...);
// a longer one is more likely an attempt to make the window expensive.
const maxDeliveryID = 256

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

// replayKey is what a replay window remembers of a delivery: a hash of its
// normalised host and path and of its id. Hashing gives every entry the
// same size whatever a sender puts in those, and keeps delivery ids out of
// the cache and the database in the clear.
type replayKey [sha256.Size]byte

// newReplayKey keys a delivery. Host and path are part of it because one
// event reaches every endpoint subscribed to it under the same id, and
// those endpoints may share a window; they are normalised so that spelling
// them another way does not make a second delivery of the same one.
func newReplayKey(host, urlPath, id string) replayKey {
	h := sha256.New()
	// Length prefixes keep the parts apart: no host, path and id run
	// together into the key of another split.
	for _, part := range []string{normalHost(host), normalPath(urlPath), id} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	var k replayKey
	h.Sum(k[:0])
	return k
}

// normalHost returns the host of a Host header as the window sees it: lower
// case, without port, brackets or trailing dots, an IP address in its
// canonical form. Whatever does not parse as a host is kept, lower case, so
// the result is stable when normalised again.
func normalHost(host string) string {
	host = strings.TrimRight(strings.ToLower(host), ".")
	if rest, ok := strings.CutPrefix(host, "["); ok {
		inside, port, _ := strings.Cut(rest, "]")
		if (port == "" || (port[0] == ':' && allDigits(port[1:]))) && strings.HasSuffix(rest, "]"+port) {
			if a, err := netip.ParseAddr(inside); err == nil {
				return a.WithZone("").Unmap().String()
			}
		}
		return host
	}
	// One colon separates a port; more make an IPv6 address without
	// brackets, which has none.
	if name, port, ok := strings.Cut(host, ":"); ok && !strings.Contains(port, ":") && allDigits(port) {
		host = strings.TrimRight(name, ".")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.WithZone("").Unmap().String()
	}
	return host
}

// normalPath returns a request path as the window sees it: without ;
// parameters in any segment, lower case, and cleaned of ., .. and empty
// segments, as the servers behind a proxy commonly read it. Parameters go
// first so that "..;x" counts as "..".
func normalPath(p string) string {
	if strings.IndexByte(p, ';') >= 0 {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		p = strings.Join(segs, "/")
	}
	return path.Clean("/" + strings.ToLower(p))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

type replayState int

const (
	replayNew replayState = iota
	replaySeen
	replayInFlight
)

// replayStore is the memory of a replay window: in this process, or in a
// database that a fleet of receivers shares.
type replayStore interface {
	// begin claims key for a delivery about to be forwarded, unless it was
	// already answered 2xx within the window or is being handled now. A
	// claim (state replayNew) must be finished.
	begin(ctx context.Context, key replayKey, now time.Time) (replayState, replayClaim, error)
}

// replayClaim is a delivery being forwarded.
type replayClaim interface {
	// finish ends the claim; a delivery the backend accepted is
	// remembered until now plus window, any other is forgotten so the
	// sender's retry goes through.
	finish(ctx context.Context, delivered bool, now time.Time, window time.Duration) error
}

type replayItem struct {
	key     replayKey
	expires int64 // Unix nanoseconds
}

// replayCache remembers delivery keys that were answered 2xx, each until
// its window ends, and the keys being handled right now.
type replayCache struct {
	mu       sync.Mutex
	capacity int
	done     map[replayKey]int64 // key to the end of its window, Unix ns
	inflight map[replayKey]struct{}
	// order lists done entries oldest first; windows are mostly equal, so
	// this is also expiry order. Entries replaced since are skipped when
	// popped.
	order []replayItem
	head  int
}

func newReplayCache(capacity int) *replayCache {
	return &replayCache{
		capacity: capacity,
		done:     make(map[replayKey]int64),
		inflight: make(map[replayKey]struct{}),
	}
}

func (c *replayCache) begin(_ context.Context, key replayKey, now time.Time) (replayState, replayClaim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.done[key]; ok {
		if now.UnixNano() < exp {
			return replaySeen, nil, nil
		}
		delete(c.done, key)
	}
	if _, ok := c.inflight[key]; ok {
		return replayInFlight, nil, nil
	}
	c.inflight[key] = struct{}{}
	return replayNew, memoryClaim{c: c, key: key}, nil
}

// memoryClaim is a claim on an in-process cache.
type memoryClaim struct {
	c   *replayCache
	key replayKey
}

func (m memoryClaim) finish(_ context.Context, delivered bool, now time.Time, window time.Duration) error {
	m.c.finish(m.key, delivered, now, window)
	return nil
}

func (c *replayCache) finish(key replayKey, delivered bool, now time.Time, window time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, key)
	if !delivered {
		return
	}
	c.evict(now)
	exp := now.Add(window).UnixNano()
	c.done[key] = exp
	c.order = append(c.order, replayItem{key: key, expires: exp})
}

// evict drops expired entries and, at capacity, the oldest one.
func (c *replayCache) evict(now time.Time) {
	ns := now.UnixNano()
	for c.head < len(c.order) {
		it := c.order[c.head]
		if ns < it.expires && len(c.done) < c.capacity {
			break
		}
		c.order[c.head] = replayItem{}
		c.head++
		if exp, ok := c.done[it.key]; ok && exp == it.expires {
			delete(c.done, it.key)
		}
	}
	// Reclaim the popped prefix once it is most of the slice.
	if c.head > len(c.order)/2 && c.head > 1024 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// len returns how many delivered keys are remembered.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.done)
}

// Destruct implements caddy.Destructor; the cache holds only memory.
func (c *replayCache) Destruct() error { return nil }

// Interface guards
var (
	_ replayStore      = (*replayCache)(nil)
	_ caddy.Destructor = (*replayCache)(nil)
)
