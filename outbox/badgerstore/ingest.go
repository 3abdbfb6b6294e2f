package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/dgraph-io/badger/v4"
)

// checkSpace refuses a write when the disk is nearly full.
func (s *Store) checkSpace() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return nil // no answer is no reason to refuse
	}
	if free := int64(st.Bavail) * st.Bsize; free < s.minFree {
		return fmt.Errorf("%w: %d MiB free in %s, below the %d MiB reserve", outbox.ErrUnavailable, free>>20, s.dir, s.minFree>>20)
	}
	return nil
}

// Commit writes the batch and fsyncs once for all of it. Each ingest is
// atomic; when the batch outgrows one transaction, what fits is committed
// and the rest goes on in another, all before the one fsync that makes the
// batch durable.
func (s *Store) Commit(ctx context.Context, batch []*outbox.Ingest) error {
	if err := s.checkSpace(); err != nil {
		return err
	}
	expires := s.eventExpiry()
	// A claim sees the entries as soon as they are written, before the
	// fsync: the copies must be there first, or a busy queue's claims read
	// every new delivery back from Badger.
	s.keepBatchFresh(batch, expires)
	seq, err := s.write(batch)
	if err != nil {
		s.dropBatchFresh(batch, func(*outbox.Ingest) bool { return true })
		return err
	}
	s.dropBatchFresh(batch, func(in *outbox.Ingest) bool { return in.Result.Duplicate })
	if err := s.syncTo(seq); err != nil {
		return fmt.Errorf("syncing events: %w", unavailable(err))
	}
	s.account(batch)
	return nil
}

// keepBatchFresh keeps a copy of each pending delivery of the batch for
// its first claim.
func (s *Store) keepBatchFresh(batch []*outbox.Ingest, expires time.Time) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	for _, in := range batch {
		share := len(in.Event.Body) / max(len(in.Deliveries), 1)
		for _, d := range in.Deliveries {
			if d.Status == outbox.StatusPending {
				s.keepFresh(d, in.Event, share, expires)
			}
		}
	}
}

// dropBatchFresh forgets the copies of the ingests that were not written
// (a duplicate's deliveries, or the batch whose write failed).
func (s *Store) dropBatchFresh(batch []*outbox.Ingest, unwritten func(*outbox.Ingest) bool) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	for _, in := range batch {
		if unwritten(in) {
			for _, d := range in.Deliveries {
				s.dropFresh(d.ID)
			}
		}
	}
}

// eventExpiry is when an event written from now on expires at the
// earliest, as Badger counts it (in whole seconds).
func (s *Store) eventExpiry() time.Time {
	return time.Unix(time.Now().Add(time.Duration(s.events.Load())).Unix(), 0)
}

// syncTo returns once every write up to seq is on disk.
func (s *Store) syncTo(seq uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.syncedSeq >= seq {
		return nil
	}
	target := s.writeSeq.Load()
	if err := s.db.Sync(); err != nil {
		return err
	}
	s.syncedSeq = target
	return nil
}

// write puts the batch in Badger's memtable and log, not yet synced, and
// returns its sequence number.
func (s *Store) write(batch []*outbox.Ingest) (uint64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	var inTxn []*badger.Entry // entries of the ingests set in txn so far
	evTTL := time.Duration(s.events.Load())
	for i, in := range batch {
		if in.IdempotencyKey != "" {
			k := idemKey(in.Event.AppID, in.IdempotencyKey)
			item, err := txn.Get(k)
			if err == nil {
				var first idemRecord
				if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &first) }); err != nil {
					return 0, fmt.Errorf("reading idempotency key: %w", err)
				}
				in.Result = outbox.IngestResult{ID: first.ID, Deliveries: first.Deliveries, Duplicate: true, KeyReused: !in.SameBody(first.BodyHash)}
				continue
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return 0, fmt.Errorf("reading idempotency key: %w", unavailable(err))
			}
		}
		in.Result = outbox.IngestResult{ID: in.Event.ID, Deliveries: len(in.Deliveries)}
		entries, err := ingestEntries(in, evTTL, time.Duration(s.history.Load()))
		if err != nil {
			return 0, err
		}
		if err := setAll(txn, entries); err != nil {
			if !errors.Is(err, badger.ErrTxnTooBig) {
				return 0, fmt.Errorf("writing event: %w", unavailable(err))
			}
			// The failed set may have left part of this ingest in txn, so
			// txn is redone with the earlier ingests alone and committed.
			txn.Discard()
			if len(inTxn) > 0 {
				txn = s.db.NewTransaction(true)
				if err := setAll(txn, inTxn); err != nil {
					return 0, fmt.Errorf("writing events: %w", unavailable(err))
				}
				if err := txn.Commit(); err != nil {
					return 0, fmt.Errorf("committing events: %w", unavailable(err))
				}
			}
			txn, inTxn = s.db.NewTransaction(true), nil
			if err := setAll(txn, entries); err != nil {
				// Too big alone. The batch fails, but what was committed
				// before it is queued, so it is delivered all the same.
				s.account(batch[:i])
				return 0, fmt.Errorf("writing event %s: %w", in.Event.ID, unavailable(err))
			}
		}
		inTxn = append(inTxn, entries...)
	}
	if err := txn.Commit(); err != nil {
		return 0, fmt.Errorf("committing events: %w", unavailable(err))
	}
	return s.writeSeq.Add(1), nil
}

// account counts and queues the pending deliveries of committed ingests.
func (s *Store) account(batch []*outbox.Ingest) {
	s.ingested.Add(int64(len(batch)))
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	for _, in := range batch {
		if in.Result.Duplicate {
			continue
		}
		for _, d := range in.Deliveries {
			if d.Status == outbox.StatusPending {
				s.pending.Add(1)
				s.queued(d.WebhookID, *d.NextAttemptAt)
			}
		}
	}
}

func setAll(txn *badger.Txn, entries []*badger.Entry) error {
	for _, e := range entries {
		if err := txn.SetEntry(e); err != nil {
			return err
		}
	}
	return nil
}

func ingestEntries(in *outbox.Ingest, evTTL, historyTTL time.Duration) ([]*badger.Entry, error) {
	ev, err := encodeEvent(in.Event)
	if err != nil {
		return nil, err
	}
	entries := []*badger.Entry{badger.NewEntry(eventKey(in.Event.ID), ev).WithTTL(evTTL)}
	logged, err := logEntries(in, evTTL)
	if err != nil {
		return nil, err
	}
	entries = append(entries, logged...)
	if in.IdempotencyKey != "" {
		res, _ := json.Marshal(idemRecord{ID: in.Result.ID, Deliveries: in.Result.Deliveries, BodyHash: in.BodyHash})
		entries = append(entries, badger.NewEntry(idemKey(in.Event.AppID, in.IdempotencyKey), res).WithTTL(outbox.IdempotencyWindow))
	}
	for _, d := range in.Deliveries {
		if entries, err = appendDeliveryEntries(entries, d, historyTTL); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// appendDeliveryEntries appends a new delivery's entries: for a pending one
// its queue and pending-index entries, then the delivery itself.
func appendDeliveryEntries(entries []*badger.Entry, d *outbox.Delivery, historyTTL time.Duration) ([]*badger.Entry, error) {
	var since time.Time
	if d.Status == outbox.StatusPending {
		since = d.CreatedAt
		entries = append(entries,
			badger.NewEntry(queueKey(*d.NextAttemptAt, d.WebhookID, d.ID), be64(since)),
			badger.NewEntry(pendingKey(since, d.ID), nil))
	}
	v, err := encodeDelivery(d, since)
	if err != nil {
		return nil, err
	}
	e := badger.NewEntry(deliveryKey(d.WebhookID, d.ID), v)
	if d.Status != outbox.StatusPending {
		// Skipped: finished on arrival, kept as long as any history.
		e = e.WithTTL(historyTTL)
	}
	return append(entries, e), nil
}

// unavailable marks storage failures (disk full, I/O) as ErrUnavailable.
func unavailable(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return err
	}
	return errors.Join(outbox.ErrUnavailable, err)
}
