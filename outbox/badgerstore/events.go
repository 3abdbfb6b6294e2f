package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/dgraph-io/badger/v4"
)

// The event log's keys, beside those of store.go. Event keys are global
// (e/<eventId>), so each app has an index of its events, newest last, and
// one per event type; both expire with the event.
//
//	l/<appId>\x00<eventId>               logRecord: type, receivedAt, deliveries
//	k/<appId>\x00<type>\x00<eventId>     (empty): the app's events of one type
//	r/<webhookId>                        failing period reported (since, 8)
var (
	prefixLog      = []byte("l/")
	prefixLogType  = []byte("k/")
	prefixReported = []byte("r/")
)

// eventLogState serializes the writers of log records (replays) and of
// failing reports, which read a record and write it back.
type eventLogState struct {
	replayMu sync.Mutex
	reportMu sync.Mutex
}

// logRecord is an event as its app's log lists it, with the deliveries
// made of it (so a listing counts them and an event shows them without
// reading every webhook's history).
type logRecord struct {
	Type       string        `json:"t"`
	ReceivedAt time.Time     `json:"r"`
	Deliveries []deliveryRef `json:"d,omitempty"`
}

// deliveryRef is a delivery of an event: webhook id, delivery id.
type deliveryRef [2]string

func logPrefix(appID string) []byte { return slices.Concat(prefixLog, []byte(appID), []byte{0}) }

func logKey(appID, eventID string) []byte { return slices.Concat(logPrefix(appID), []byte(eventID)) }

func logTypePrefix(appID, evType string) []byte {
	return slices.Concat(prefixLogType, []byte(appID), []byte{0}, []byte(evType), []byte{0})
}

func reportedKey(webhookID string) []byte { return slices.Concat(prefixReported, []byte(webhookID)) }

// logEntries are the event-log entries of an ingest, written with it.
func logEntries(in *outbox.Ingest, ttl time.Duration) ([]*badger.Entry, error) {
	ev := in.Event
	rec := logRecord{Type: ev.Type, ReceivedAt: ev.ReceivedAt}
	for _, d := range in.Deliveries {
		rec.Deliveries = append(rec.Deliveries, deliveryRef{d.WebhookID, d.ID})
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return []*badger.Entry{
		badger.NewEntry(logKey(ev.AppID, ev.ID), v).WithTTL(ttl),
		badger.NewEntry(slices.Concat(logTypePrefix(ev.AppID, ev.Type), []byte(ev.ID)), nil).WithTTL(ttl),
	}, nil
}

func getLogRecord(txn *badger.Txn, appID, eventID string) (*logRecord, uint64, error) {
	item, err := txn.Get(logKey(appID, eventID))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, 0, outbox.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	var rec logRecord
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
		return nil, 0, fmt.Errorf("reading the log record of event %s: %w", eventID, err)
	}
	return &rec, item.ExpiresAt(), nil
}

// liveDeliveries counts the deliveries of rec whose webhook still exists.
func (s *Store) liveDeliveries(rec *logRecord) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range rec.Deliveries {
		if _, ok := s.webhooks[r[0]]; ok {
			n++
		}
	}
	return n
}

// Events pages through an app's log (or its index of one type) from the
// newest event, within the id range of the window.
func (s *Store) Events(ctx context.Context, appID string, f outbox.EventFilter) (outbox.EventPage, error) {
	var page outbox.EventPage
	prefix := logPrefix(appID)
	byType := f.Type != ""
	if byType {
		prefix = logTypePrefix(appID, f.Type)
	}
	lower, upper := outbox.EventIDRange(f.Since, f.Until)
	start := slices.Concat(prefix, []byte{0xff})
	if upper != "" {
		start = slices.Concat(prefix, []byte(upper))
	}
	if f.Cursor != "" {
		if c := slices.Concat(prefix, []byte(f.Cursor)); bytes.Compare(c, start) < 0 {
			start = c
		}
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: !byType, PrefetchSize: 64})
		defer it.Close()
		scanned, examined := 0, ""
		for it.Seek(start); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			if id == f.Cursor {
				continue
			}
			if lower != "" && id < lower {
				break
			}
			var rec *logRecord
			var err error
			if byType {
				rec, _, err = getLogRecord(txn, appID, id)
				if errors.Is(err, outbox.ErrNotFound) {
					continue
				}
			} else {
				rec = new(logRecord)
				err = it.Item().Value(func(v []byte) error { return json.Unmarshal(v, rec) })
			}
			if err != nil {
				return err
			}
			if !outbox.InWindow(rec.ReceivedAt, f.Since, f.Until) {
				continue
			}
			if len(page.Events) == f.Limit {
				page.Next = page.Events[len(page.Events)-1].Event.ID
				return nil
			}
			if f.Match != nil && f.MaxScan > 0 && scanned == f.MaxScan {
				page.Partial, page.Next = true, examined
				return nil
			}
			ev, err := getEvent(txn, id)
			if errors.Is(err, outbox.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading event %s: %w", id, err)
			}
			examined = id
			if f.Match != nil {
				scanned++
				if !f.Match(ev) {
					continue
				}
			}
			page.Events = append(page.Events, &outbox.EventEntry{Event: ev, Deliveries: s.liveDeliveries(rec)})
		}
		return nil
	})
	return page, err
}

// Event returns a logged event of the app and its deliveries.
func (s *Store) Event(ctx context.Context, appID, id string) (*outbox.Event, []*outbox.Delivery, error) {
	var ev *outbox.Event
	var out []*outbox.Delivery
	err := s.db.View(func(txn *badger.Txn) error {
		rec, _, err := getLogRecord(txn, appID, id)
		if err != nil {
			return err
		}
		if ev, err = getEvent(txn, id); err != nil {
			return err
		}
		for _, r := range rec.Deliveries {
			d, _, err := getDelivery(txn, r[0], r[1])
			if errors.Is(err, outbox.ErrNotFound) {
				continue // its webhook was deleted, or its history expired
			}
			if err != nil {
				return err
			}
			d.Attempts = nil
			out = append(out, d)
		}
		return nil
	})
	return ev, out, err
}

// replayCandidate is an event of the window to replay to the webhook.
type replayCandidate struct {
	ev      *outbox.Event
	rec     *logRecord
	expires uint64
}

// replayChunk is how many events one replay transaction covers.
const replayChunk = 200

// Replay finds the window's events the webhook lacks, then writes their
// deliveries, each with its event's log record, a chunk of events per
// transaction. Replays are serialized, and they are the only writers of
// existing log records, so no event gets two deliveries to one webhook.
func (s *Store) Replay(ctx context.Context, appID, webhookID string, req *outbox.ReplayRequest) (int, error) {
	if w := s.cachedWebhook(webhookID); w == nil || w.AppID != appID {
		return 0, outbox.ErrNotFound
	}
	if err := s.checkSpace(); err != nil {
		return 0, err
	}
	s.logState.replayMu.Lock()
	defer s.logState.replayMu.Unlock()

	var cands []replayCandidate
	lower, upper := outbox.EventIDRange(req.Since, req.Until)
	prefix := logPrefix(appID)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		window := 0
		for it.Seek(slices.Concat(prefix, []byte(lower))); it.Valid(); it.Next() {
			item := it.Item()
			id := string(item.Key()[len(prefix):])
			if upper != "" && id >= upper {
				break
			}
			var rec logRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return err
			}
			if !outbox.InWindow(rec.ReceivedAt, req.Since, req.Until) {
				continue
			}
			if window++; window > req.MaxEvents {
				return outbox.ErrWindowTooLarge
			}
			if slices.ContainsFunc(rec.Deliveries, func(r deliveryRef) bool { return r[0] == webhookID }) {
				continue
			}
			ev, err := getEvent(txn, id)
			if errors.Is(err, outbox.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if !req.Match(ev) {
				continue
			}
			ev.Body = nil // not needed to write the delivery
			cands = append(cands, replayCandidate{ev: ev, rec: &rec, expires: item.ExpiresAt()})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}

	n := 0
	historyTTL := time.Duration(s.history.Load())
	for chunk := range slices.Chunk(cands, replayChunk) {
		var made []*outbox.Delivery
		err := s.update(func(txn *badger.Txn) error {
			made = made[:0]
			for _, c := range chunk {
				ttl := time.Until(time.Unix(int64(c.expires), 0))
				if c.expires != 0 && ttl <= 0 {
					continue // expired since it was read
				}
				d := req.NewDelivery(c.ev)
				rec := *c.rec
				rec.Deliveries = append(slices.Clone(rec.Deliveries), deliveryRef{d.WebhookID, d.ID})
				v, err := json.Marshal(rec)
				if err != nil {
					return err
				}
				e := badger.NewEntry(logKey(appID, c.ev.ID), v)
				if c.expires != 0 {
					e = e.WithTTL(ttl)
				}
				entries, err := appendDeliveryEntries([]*badger.Entry{e}, d, historyTTL)
				if err != nil {
					return err
				}
				if err := setAll(txn, entries); err != nil {
					return err
				}
				made = append(made, d)
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("writing replayed deliveries: %w", unavailable(err))
		}
		n += len(made)
		s.claimMu.Lock()
		for _, d := range made {
			if d.Status == outbox.StatusPending {
				s.pending.Add(1)
				s.queued(d.WebhookID, *d.NextAttemptAt)
			}
		}
		s.claimMu.Unlock()
	}
	if n > 0 {
		if err := s.db.Sync(); err != nil {
			return n, fmt.Errorf("syncing replayed deliveries: %w", unavailable(err))
		}
	}
	return n, nil
}

// FinishedSince lists a webhook's deliveries in the statuses created since a time.
func (s *Store) FinishedSince(ctx context.Context, appID, webhookID string, since time.Time, statuses []outbox.Status) ([]string, error) {
	if w := s.cachedWebhook(webhookID); w == nil || w.AppID != appID {
		return nil, outbox.ErrNotFound
	}
	var ids []string
	prefix := deliveryPrefix(webhookID)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		// Delivery ids are made at creation, so none before since's
		// millisecond was created at or after since.
		for it.Seek(slices.Concat(prefix, []byte(outbox.IDTimePrefix(since.UnixMilli())))); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				d, _, err := decodeDelivery(v)
				if err == nil && slices.Contains(statuses, d.Status) && !d.CreatedAt.Before(since) {
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

// MarkFailingReported records the webhook's failing period as reported.
func (s *Store) MarkFailingReported(ctx context.Context, webhookID string, since time.Time) (bool, error) {
	s.logState.reportMu.Lock()
	defer s.logState.reportMu.Unlock()
	first := false
	err := s.update(func(txn *badger.Txn) error {
		item, err := txn.Get(reportedKey(webhookID))
		if err == nil {
			var same bool
			if err := item.Value(func(v []byte) error { same = bytes.Equal(v, be64(since)); return nil }); err != nil {
				return err
			}
			if same {
				return nil
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		first = true
		return txn.Set(reportedKey(webhookID), be64(since))
	})
	if err != nil {
		return false, fmt.Errorf("marking failing report: %w", unavailable(err))
	}
	return first, nil
}

// ClearFailingReported removes the webhook's failing report, if any.
func (s *Store) ClearFailingReported(ctx context.Context, webhookID string) (time.Time, error) {
	s.logState.reportMu.Lock()
	defer s.logState.reportMu.Unlock()
	var since time.Time
	err := s.update(func(txn *badger.Txn) error {
		item, err := txn.Get(reportedKey(webhookID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error {
			if len(v) == 8 {
				since = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			}
			return nil
		}); err != nil {
			return err
		}
		return txn.Delete(reportedKey(webhookID))
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("clearing failing report: %w", unavailable(err))
	}
	return since, nil
}

// sweepEventLog writes tombstones over the log keys that expired before
// deadline, visiting in each index only the ids older than before (log keys
// expire with their event, which outlives its id's time by the event
// retention).
func (s *Store) sweepEventLog(wb *badger.WriteBatch, deadline uint64, before time.Time) (int, error) {
	swept := 0
	err := s.db.View(func(txn *badger.Txn) error {
		// All versions, as in sweep: a plain iterator hides expired keys.
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		var last []byte
		for _, prefix := range [][]byte{prefixLog, prefixLogType} {
			for it.Seek(prefix); it.ValidForPrefix(prefix) && !s.closing(); {
				item := it.Item()
				k := item.Key()
				if bytes.Equal(k, last) {
					it.Next()
					continue
				}
				last = append(last[:0], k...)
				cut := bytes.LastIndexByte(k, 0)
				if t, ok := idTime(k[cut+1:]); ok && !t.Before(before) {
					// The rest of this index is newer: on to the next one.
					it.Seek(slices.Concat(k[:cut], []byte{1}))
					continue
				}
				if exp := item.ExpiresAt(); exp != 0 && exp <= deadline {
					if err := wb.Delete(item.KeyCopy(nil)); err != nil {
						return err
					}
					swept++
				}
				it.Next()
			}
		}
		return nil
	})
	return swept, err
}
