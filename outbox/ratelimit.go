package outbox

import (
	"context"
	"sync"
	"time"
)

// MaxRateLimit bounds a webhook's rateLimit (attempts per second).
const MaxRateLimit = 10_000

// RateLimiter hands out the attempt slots of rate-limited webhooks: a
// token bucket holding one token, refilled every 1/perSecond, so attempts
// are spaced evenly and never more than perSecond fall in one second.
// A Store that several sidecars share implements it, so the limit holds
// for the whole fleet; otherwise the outbox keeps the slots in memory.
type RateLimiter interface {
	// TakeSlot takes the webhook's slot if it is free and returns 0, or
	// returns how long until it frees without taking it.
	TakeSlot(ctx context.Context, webhookID string, perSecond int) (time.Duration, error)
}

// SlotInterval is the spacing of a webhook's attempts at perSecond.
func SlotInterval(perSecond int) time.Duration { return time.Second / time.Duration(perSecond) }

// memoryRateLimiter is the RateLimiter of a store no other process shares.
type memoryRateLimiter struct {
	mu   sync.Mutex
	next map[string]time.Time
}

func (m *memoryRateLimiter) TakeSlot(_ context.Context, webhookID string, perSecond int) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if next, ok := m.next[webhookID]; ok && now.Before(next) {
		return next.Sub(now), nil
	}
	if m.next == nil || len(m.next) >= 10_000 {
		// A slot in the past limits nothing: forget those.
		fresh := make(map[string]time.Time, len(m.next))
		for id, t := range m.next {
			if now.Before(t) {
				fresh[id] = t
			}
		}
		m.next = fresh
	}
	m.next[webhookID] = now.Add(SlotInterval(perSecond))
	return 0, nil
}
