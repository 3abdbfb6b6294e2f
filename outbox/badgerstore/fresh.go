package badgerstore

import (
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// maxFreshBytes bounds the memory that just-committed deliveries waiting
// for their first claim may hold. Past it, deliveries are read back from
// Badger as any other.
const maxFreshBytes = 8 << 20

// freshOverhead is what one kept delivery costs beside its event's body.
const freshOverhead = 256

// freshJob is a pending delivery this process committed and has not yet
// claimed: everything its first claim would read back from Badger. It is
// exact because a pending delivery that was never claimed changes only by
// being claimed (Requeue takes finished ones, and a deleted webhook's are
// dropped with its queue).
type freshJob struct {
	delivery outbox.Delivery
	event    *outbox.Event // shared by the deliveries of one event; read only
	expires  time.Time
	size     int
}

// keepFresh remembers a pending delivery about to be written, while there
// is room; share is its part of the event's body, which its n deliveries
// share. claimMu must be held, and the delivery not yet written, so no
// claim can have read it before.
func (s *Store) keepFresh(d *outbox.Delivery, ev *outbox.Event, share int, expires time.Time) {
	size := freshOverhead + share
	if s.freshBytes+size > maxFreshBytes {
		return
	}
	s.fresh[d.ID] = &freshJob{delivery: *d, event: ev, expires: expires, size: size}
	s.freshBytes += size
}

// takeFresh returns the job of a delivery kept by keepFresh and forgets
// it. claimMu must be held.
func (s *Store) takeFresh(w *outbox.Webhook, due time.Time, id string) *outbox.Job {
	f := s.fresh[id]
	if f == nil {
		return nil
	}
	s.dropFresh(id)
	if f.delivery.NextAttemptAt == nil || !f.delivery.NextAttemptAt.Equal(due) {
		// Not the entry it was committed with: it was claimed from Badger
		// before the commit kept it, attempted and queued again since.
		return nil
	}
	d := f.delivery
	j := &outbox.Job{Webhook: w, Due: due, Delivery: &d, Event: f.event, EventExpires: f.expires, PendingSince: d.CreatedAt}
	if !time.Now().Before(f.expires) {
		// Badger has dropped the event by now: the memory copy must not
		// outlive it, or a late first attempt would send what the
		// history no longer holds.
		j.Event = nil
	}
	return j
}

// dropFresh forgets a delivery. claimMu must be held.
func (s *Store) dropFresh(id string) {
	if f := s.fresh[id]; f != nil {
		s.freshBytes -= f.size
		delete(s.fresh, id)
	}
}
