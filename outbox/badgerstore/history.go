package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Deliveries pages through a webhook's history, newest first, reading
// each delivery's event in the same transaction.
func (s *Store) Deliveries(ctx context.Context, appID, webhookID string, f outbox.DeliveryFilter) ([]*outbox.Delivery, string, error) {
	var out []*outbox.Delivery
	var cursor string
	prefix := deliveryPrefix(webhookID)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: false})
		defer it.Close()
		start := slices.Concat(prefix, []byte{0xff})
		if f.Cursor != "" {
			start = deliveryKey(webhookID, f.Cursor)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			if f.Cursor != "" && bytes.Equal(it.Item().Key(), start) {
				continue
			}
			var d *outbox.Delivery
			err := it.Item().Value(func(v []byte) error {
				var err error
				d, _, err = decodeDelivery(v)
				return err
			})
			if err != nil {
				return err
			}
			if d.AppID != appID || (f.Status != "" && d.Status != f.Status) || (f.Event != "" && d.Event != f.Event) {
				continue
			}
			if len(out) == f.Limit {
				cursor = out[len(out)-1].ID
				return nil
			}
			ev, err := getEvent(txn, d.EventID)
			switch {
			case err == nil:
				d.RequestBody = ev.Body
			case !errors.Is(err, outbox.ErrNotFound):
				return fmt.Errorf("reading event %s: %w", d.EventID, err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, cursor, err
}

// Delivery returns one delivery and its event (nil once expired).
func (s *Store) Delivery(ctx context.Context, appID, webhookID, id string) (*outbox.Delivery, *outbox.Event, error) {
	var d *outbox.Delivery
	var ev *outbox.Event
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		d, _, err = getDelivery(txn, webhookID, id)
		if err != nil {
			return err
		}
		if d.AppID != appID {
			return outbox.ErrNotFound
		}
		ev, err = getEvent(txn, d.EventID)
		if errors.Is(err, outbox.ErrNotFound) {
			err = nil
		}
		return err
	})
	return d, ev, err
}

func getDelivery(txn *badger.Txn, webhookID, id string) (*outbox.Delivery, time.Time, error) {
	item, err := txn.Get(deliveryKey(webhookID, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, time.Time{}, outbox.ErrNotFound
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	var d *outbox.Delivery
	var since time.Time
	err = item.Value(func(v []byte) error {
		d, since, err = decodeDelivery(v)
		return err
	})
	return d, since, err
}

func getEvent(txn *badger.Txn, id string) (*outbox.Event, error) {
	ev, _, err := getEventExpiry(txn, id)
	return ev, err
}

// getEventExpiry is getEvent that also tells when the event expires.
func getEventExpiry(txn *badger.Txn, id string) (*outbox.Event, time.Time, error) {
	item, err := txn.Get(eventKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, time.Time{}, outbox.ErrNotFound
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	var ev *outbox.Event
	err = item.Value(func(v []byte) error {
		ev, err = decodeEvent(v)
		return err
	})
	var exp time.Time
	if e := item.ExpiresAt(); e != 0 {
		exp = time.Unix(int64(e), 0)
	}
	return ev, exp, err
}

// Requeue makes finished deliveries pending again, due now.
func (s *Store) Requeue(ctx context.Context, appID, webhookID string, ids []string, now time.Time, check func(*outbox.Delivery) error) ([]*outbox.Delivery, error) {
	if w := s.cachedWebhook(webhookID); w == nil || w.AppID != appID {
		return nil, outbox.ErrNotFound
	}
	if err := s.checkSpace(); err != nil {
		return nil, err
	}
	var out []*outbox.Delivery
	evTTL := time.Duration(s.events.Load())
	err := s.update(func(txn *badger.Txn) error {
		for _, id := range ids {
			d, _, err := getDelivery(txn, webhookID, id)
			if err != nil {
				return err
			}
			if d.AppID != appID {
				return outbox.ErrNotFound
			}
			if err := check(d); err != nil {
				return err
			}
			ev, err := getEvent(txn, d.EventID)
			if errors.Is(err, outbox.ErrNotFound) {
				return fmt.Errorf("the event of delivery %s is no longer retained: %w", id, outbox.ErrConflict)
			} else if err != nil {
				return err
			}
			// The event must outlive the delivery's new attempt.
			evv, err := encodeEvent(ev)
			if err != nil {
				return err
			}
			d.Status, d.NextAttemptAt, d.Resend, d.Round = outbox.StatusPending, &now, true, 0
			v, err := encodeDelivery(d, now)
			if err != nil {
				return err
			}
			for _, e := range []*badger.Entry{
				badger.NewEntry(eventKey(ev.ID), evv).WithTTL(evTTL),
				badger.NewEntry(deliveryKey(webhookID, id), v),
				badger.NewEntry(queueKey(now, webhookID, id), be64(now)),
				badger.NewEntry(pendingKey(now, id), nil),
			} {
				if err := txn.SetEntry(e); err != nil {
					return err
				}
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, outbox.ErrNotFound) || errors.Is(err, outbox.ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("requeueing: %w", unavailable(err))
	}
	if err := s.db.Sync(); err != nil {
		return nil, fmt.Errorf("syncing: %w", unavailable(err))
	}
	s.pending.Add(int64(len(out)))
	if len(out) > 0 {
		s.claimMu.Lock()
		s.queued(webhookID, now)
		s.claimMu.Unlock()
	}
	return out, nil
}

// FailedSince lists a webhook's failed deliveries created since a time.
func (s *Store) FailedSince(ctx context.Context, appID, webhookID string, since time.Time) ([]string, error) {
	if w := s.cachedWebhook(webhookID); w == nil || w.AppID != appID {
		return nil, outbox.ErrNotFound
	}
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: deliveryPrefix(webhookID), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				d, _, err := decodeDelivery(v)
				if err == nil && d.Status == outbox.StatusFailed && !d.CreatedAt.Before(since) {
					ids = append(ids, d.ID)
				}
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return ids, err
}

// Stats reads the pending count and the oldest pending delivery.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	st := outbox.Stats{Pending: s.pending.Load(), StoreBytes: s.diskBytes()}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixPending})
		defer it.Close()
		// New pending entries are stamped with the current time, so the
		// oldest only moves forward: seeking to the last one found skips
		// the tombstones of everything delivered since.
		s.oldestMu.Lock()
		defer s.oldestMu.Unlock()
		it.Seek(slices.Concat(prefixPending, s.oldest))
		if it.Valid() {
			k := it.Item().Key()[len(prefixPending):]
			if len(k) >= 8 {
				s.oldest = slices.Clone(k[:8])
				st.OldestPending = time.Unix(0, int64(binary.BigEndian.Uint64(k)))
			}
		}
		return nil
	})
	return st, err
}

// badgerLogger passes Badger's warnings and errors to zap.
type badgerLogger struct{ l *zap.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	if b.l != nil {
		b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)))
	}
}

func (b badgerLogger) Warningf(f string, a ...any) {
	if b.l != nil {
		b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)))
	}
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
