package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/dgraph-io/badger/v4"
)

// Claim visits the queues whose head is due, in random order, and takes
// their due entries until the request refuses or its limit is reached.
func (s *Store) Claim(ctx context.Context, req *outbox.ClaimRequest) ([]*outbox.Job, time.Time, error) {
	now, limit := req.Now, req.Limit
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	var jobs []*outbox.Job
	err := s.db.View(func(txn *badger.Txn) error {
		for whID, head := range s.heads {
			if len(jobs) >= limit {
				return nil
			}
			if head.After(now) {
				continue
			}
			w := s.cachedWebhook(whID)
			if w == nil {
				delete(s.heads, whID)
				continue
			}
			var err error
			jobs, err = s.claimQueue(txn, w, req, jobs)
			if err != nil {
				return err
			}
		}
		return nil
	})
	var next time.Time
	for _, h := range s.heads {
		if h.After(now) && (next.IsZero() || h.Before(next)) {
			next = h
		}
	}
	if len(jobs) >= limit {
		// More may be due right away.
		next = now
	}
	return jobs, next, err
}

// claimQueue takes due entries from one webhook's queue and moves its head
// to the first entry it left.
func (s *Store) claimQueue(txn *badger.Txn, w *outbox.Webhook, req *outbox.ClaimRequest, jobs []*outbox.Job) ([]*outbox.Job, error) {
	prefix := queuePrefix(w.ID)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	empty, head := true, time.Time{}
	// Seeking to the head skips the tombstones of entries already
	// delivered, which an LSM keeps until compaction; scanning from the
	// start of the queue would pass over all of them on every claim.
	for it.Seek(slices.Concat(prefix, be64(s.heads[w.ID]))); it.Valid(); it.Next() {
		due, id, ok := parseQueueEntry(it.Item().Key()[len(prefix):])
		if !ok {
			continue
		}
		if empty {
			empty, head = false, due
		}
		if s.claimed[id] {
			continue
		}
		if due.After(req.Now) || len(jobs) >= req.Limit || !req.Admit(w.ID) {
			break
		}
		j := s.takeFresh(w, due, id)
		if j == nil {
			var err error
			if j, err = loadJob(txn, w, due, id); err != nil {
				return jobs, err
			}
		}
		s.claimed[id] = true
		jobs = append(jobs, j)
	}
	if empty {
		delete(s.heads, w.ID)
	} else {
		s.heads[w.ID] = head
	}
	return jobs, nil
}

// loadJob reads a queued delivery and its event. A delivery whose record
// is gone comes back Gone, for the caller to release.
func loadJob(txn *badger.Txn, w *outbox.Webhook, due time.Time, id string) (*outbox.Job, error) {
	j := &outbox.Job{Webhook: w, Due: due}
	d, since, err := getDelivery(txn, w.ID, id)
	if errors.Is(err, outbox.ErrNotFound) {
		j.Delivery, j.Gone = &outbox.Delivery{ID: id, WebhookID: w.ID}, true
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading delivery %s: %w", id, err)
	}
	j.Delivery, j.PendingSince = d, since
	j.Event, j.EventExpires, err = getEventExpiry(txn, d.EventID)
	if err != nil && !errors.Is(err, outbox.ErrNotFound) {
		return nil, fmt.Errorf("reading event %s: %w", d.EventID, err)
	}
	return j, nil
}

// queued records that a webhook's queue has an entry due at due.
func (s *Store) queued(webhookID string, due time.Time) {
	// Queue keys hold the wall clock. Two times read by concurrent
	// goroutines can be ordered one way by the wall clock and the other
	// by the monotonic one, which Before prefers; an entry ordered before
	// the head by its key but not by Before would be passed over for good.
	due = due.Round(0)
	if h, ok := s.heads[webhookID]; !ok || due.Before(h) {
		s.heads[webhookID] = due
	}
}

// dropQueue deletes a deleted webhook's queue and pending entries.
func (s *Store) dropQueue(webhookID string) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	var dropped int64
	prefix := queuePrefix(webhookID)
	_ = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && !s.closing(); it.Next() {
			_, id, ok := parseQueueEntry(it.Item().Key()[len(prefix):])
			if !ok || s.claimed[id] {
				// A claimed entry is dropped by Save when its attempt ends.
				continue
			}
			_ = wb.Delete(it.Item().KeyCopy(nil))
			s.dropFresh(id)
			_ = it.Item().Value(func(v []byte) error {
				if len(v) == 8 {
					_ = wb.Delete(slices.Concat(prefixPending, v, []byte(id)))
				}
				return nil
			})
			dropped++
		}
		return nil
	})
	if wb.Flush() == nil {
		s.pending.Add(-dropped)
	}
}

// Save writes the delivery after an attempt, moves or removes its queue
// entry, and ends the claim.
func (s *Store) Save(ctx context.Context, j *outbox.Job) error {
	d := j.Delivery
	defer s.unclaim(d.ID)
	since := j.PendingSince
	finished := d.Status != outbox.StatusPending
	// Looked up once: the write and the count below must agree even if
	// the webhook is deleted meanwhile (dropQueue counts what it drops).
	gone := s.cachedWebhook(d.WebhookID) == nil
	err := s.update(func(txn *badger.Txn) error {
		if err := txn.Delete(queueKey(j.Due, d.WebhookID, d.ID)); err != nil {
			return err
		}
		if gone {
			// Deleted while in flight: drop it with the rest of its history.
			if err := txn.Delete(pendingKey(since, d.ID)); err != nil {
				return err
			}
			return txn.Delete(deliveryKey(d.WebhookID, d.ID))
		}
		var e *badger.Entry
		if finished {
			if err := txn.Delete(pendingKey(since, d.ID)); err != nil {
				return err
			}
			v, err := encodeDelivery(d, time.Time{})
			if err != nil {
				return err
			}
			e = badger.NewEntry(deliveryKey(d.WebhookID, d.ID), v).WithTTL(time.Duration(s.history.Load()))
		} else {
			v, err := encodeDelivery(d, since)
			if err != nil {
				return err
			}
			e = badger.NewEntry(deliveryKey(d.WebhookID, d.ID), v)
			if err := txn.Set(queueKey(*d.NextAttemptAt, d.WebhookID, d.ID), be64(since)); err != nil {
				return err
			}
		}
		if err := s.keepEvent(txn, j); err != nil {
			return err
		}
		return txn.SetEntry(e)
	})
	if err != nil {
		return fmt.Errorf("saving delivery %s: %w", d.ID, unavailable(err))
	}
	if finished || gone {
		s.pending.Add(-1)
	} else {
		s.claimMu.Lock()
		s.queued(d.WebhookID, *d.NextAttemptAt)
		s.claimMu.Unlock()
	}
	return nil
}

// keepEvent rewrites the job's event with a longer TTL when the delivery
// is to outlive it.
func (s *Store) keepEvent(txn *badger.Txn, j *outbox.Job) error {
	if j.Event == nil || j.EventExpires.IsZero() {
		return nil
	}
	now := time.Now()
	history := time.Duration(s.history.Load())
	until := j.KeepEventUntil(now, history)
	if !j.EventExpires.Before(until) {
		return nil
	}
	v, err := encodeEvent(j.Event)
	if err != nil {
		return err
	}
	// As long as an event ingested at the delivery's next attempt keeps.
	ttl := until.Sub(now) - history + time.Duration(s.events.Load())
	return txn.SetEntry(badger.NewEntry(eventKey(j.Event.ID), v).WithTTL(ttl))
}

// Release ends a claim without an attempt. A claim whose delivery record
// is gone also loses its queue entry.
func (s *Store) Release(ctx context.Context, j *outbox.Job) error {
	defer s.unclaim(j.Delivery.ID)
	if j.Delivery.EventID != "" {
		return nil
	}
	return s.update(func(txn *badger.Txn) error {
		return txn.Delete(queueKey(j.Due, j.Delivery.WebhookID, j.Delivery.ID))
	})
}

func (s *Store) unclaim(id string) {
	s.claimMu.Lock()
	delete(s.claimed, id)
	// A commit can keep its delivery fresh after a claim already read it
	// from Badger (the webhook's head was due through another entry): the
	// claim that ends here made that copy stale.
	s.dropFresh(id)
	s.claimMu.Unlock()
}
