package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"
)

// Key layout. Ids are UUIDv7 strings, so byte order is creation order.
//
//	w/<appId>\x00<webhookId>           webhook record (with its secret)
//	e/<eventId>                        event: meta length, meta JSON, raw body
//	d/<webhookId>/<deliveryId>         delivery record (the history)
//	q/<webhookId>/<due:8><deliveryId>  due queue per webhook; value: pending-since (8)
//	p/<since:8>/<deliveryId>           pending set, oldest first (for metrics)
//	i/<appId>\x00<key>                 idempotency key -> IngestResult, 24h TTL
var (
	prefixWebhook  = []byte("w/")
	prefixEvent    = []byte("e/")
	prefixDelivery = []byte("d/")
	prefixQueue    = []byte("q/")
	prefixPending  = []byte("p/")
	prefixIdem     = []byte("i/")
)

// IdempotencyWindow is how long an idempotency key is remembered.
const IdempotencyWindow = 24 * time.Hour

// BadgerOptions configure the embedded store.
type BadgerOptions struct {
	// Logger receives Badger's own messages at warn and above.
	Logger *zap.Logger
	// EncryptionKey, 16, 24 or 32 bytes, encrypts the data at rest (AES).
	EncryptionKey []byte
	// MemTableSize bounds each of Badger's two memtables; default 16 MiB.
	MemTableSize int64
	// MinFreeBytes is the free disk space below which ingest and other
	// user writes are refused with ErrUnavailable; default twice the
	// memtable size plus 32 MiB. Badger writes its logs through mmap, where
	// a full disk is a SIGBUS rather than an error, so the store stops
	// taking new events while there is still room for the writes in flight.
	MinFreeBytes int64

	// Overridden by tests, which cannot wait for the defaults.
	valueLogFileSize int64         // default 64 MiB
	housekeepEvery   time.Duration // default housekeepEvery
	sweepMargin      time.Duration // default sweepMargin
}

// BadgerStore is the embedded Store: one Badger directory, owned by one
// process. Claims are held in memory, since no other process can read the
// directory while it is open.
type BadgerStore struct {
	db      *badger.DB
	dir     string
	minFree int64
	log     *zap.Logger

	housekeepEvery time.Duration
	sweepMargin    time.Duration

	history atomic.Int64 // retention of finished deliveries, ns
	events  atomic.Int64 // retention of events, ns

	mu       sync.Mutex // serializes webhook writes and guards the cache
	webhooks map[string]*Webhook
	byApp    map[string][]*Webhook

	// claimMu guards claimed and heads. Claim holds it for its whole scan,
	// and writers update heads under it after their commit, so a scan on
	// an older snapshot cannot erase the hint of a newer entry.
	claimMu sync.Mutex
	claimed map[string]bool // delivery ids
	// heads maps a webhook to a time no later than its first queue entry
	// (claimed ones included); no key means its queue is empty. Its times
	// carry no monotonic reading, so they compare as the keys sort. Claim only
	// visits queues whose head is due, so a backlog behind a slow endpoint
	// costs nothing to the others.
	heads map[string]time.Time

	// Commits write one at a time (writeMu, so an idempotency key written
	// by one is seen by the next) but share fsyncs: a commit whose write
	// landed while another's fsync ran waits for the next one, which
	// covers every write before it (writeSeq, syncedSeq).
	writeMu   sync.Mutex
	writeSeq  atomic.Uint64
	syncMu    sync.Mutex
	syncedSeq uint64

	// flushMu is held shared by every writer, and by housekeeping's
	// flush alone: Badger refuses writes while it flushes (see flush).
	flushMu      sync.RWMutex
	ingested     atomic.Int64 // events written, for housekeeping to tell a quiet store
	lastIngested int64        // ingested at the previous housekeeping pass

	pending   atomic.Int64
	oldestMu  sync.Mutex
	oldest    []byte        // pending-set position of the oldest entry last seen
	stop      chan struct{} // closed by Close
	housekept chan struct{} // closed when housekeepLoop returns
	bg        sync.WaitGroup
}

// OpenBadger opens (creating if needed) the store in dir.
func OpenBadger(dir string, opts BadgerOptions) (*BadgerStore, error) {
	if opts.MemTableSize <= 0 {
		opts.MemTableSize = 16 << 20
	}
	if opts.MinFreeBytes <= 0 {
		opts.MinFreeBytes = 2*opts.MemTableSize + 32<<20
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.valueLogFileSize <= 0 {
		opts.valueLogFileSize = 64 << 20
	}
	if opts.housekeepEvery <= 0 {
		opts.housekeepEvery = housekeepEvery
	}
	if opts.sweepMargin <= 0 {
		opts.sweepMargin = sweepMargin
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		// Ingest fsyncs once per group of events (see Commit); other
		// writes are safe to lose in a crash because they are replayed
		// (an attempt is retried) or re-done by the user.
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueThreshold(512).
		WithValueLogFileSize(opts.valueLogFileSize).
		WithNumCompactors(2).
		WithBaseTableSize(1 << 20).
		WithMetricsEnabled(false).
		// Compression buffers of table builds cost more memory than the disk
		// they save on short-lived outbox data.
		WithCompression(options.None)
	if len(opts.EncryptionKey) > 0 {
		bo = bo.WithEncryptionKey(opts.EncryptionKey)
	}
	db, err := badger.Open(bo)
	if err != nil {
		if len(opts.EncryptionKey) > 0 && strings.Contains(err.Error(), "Encryption key mismatch") {
			return nil, fmt.Errorf("opening badger in %s: the encryption key does not match the one the data was written with", dir)
		}
		return nil, fmt.Errorf("opening badger in %s: %w", dir, err)
	}
	s := &BadgerStore{
		db:             db,
		dir:            dir,
		minFree:        opts.MinFreeBytes,
		log:            opts.Logger,
		housekeepEvery: opts.housekeepEvery,
		sweepMargin:    opts.sweepMargin,
		webhooks:       map[string]*Webhook{},
		byApp:          map[string][]*Webhook{},
		claimed:        map[string]bool{},
		heads:          map[string]time.Time{},
		stop:           make(chan struct{}),
		housekept:      make(chan struct{}),
	}
	s.SetRetention(720*time.Hour, 720*time.Hour)
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	go s.housekeepLoop()
	return s, nil
}

// load fills the webhook cache and counts pending deliveries.
func (s *BadgerStore) load() error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixWebhook, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var w Webhook
			if err := it.Item().Value(func(v []byte) error { return decodeWebhook(v, &w) }); err != nil {
				return fmt.Errorf("loading webhook %q: %w", it.Item().Key(), err)
			}
			s.cachePut(&w)
		}
		it.Close()
		if err := s.loadHeads(txn); err != nil {
			return err
		}
		pit := txn.NewIterator(badger.IteratorOptions{Prefix: prefixPending})
		defer pit.Close()
		var n int64
		for pit.Rewind(); pit.Valid(); pit.Next() {
			n++
		}
		s.pending.Store(n)
		return nil
	})
}

// loadHeads reads the first entry of each webhook's queue, jumping from
// queue to queue. Queues of webhooks deleted before a crash finished their
// cleanup are cleaned now.
func (s *BadgerStore) loadHeads(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixQueue})
	defer it.Close()
	for it.Rewind(); it.Valid(); {
		k := it.Item().Key()[len(prefixQueue):]
		whID, rest, ok := strings.Cut(string(k), "/")
		if !ok {
			it.Next()
			continue
		}
		if due, _, ok := parseQueueEntry([]byte(rest)); ok {
			if _, known := s.webhooks[whID]; known {
				s.heads[whID] = due
			} else {
				s.background(func() { s.dropQueue(whID) })
			}
		}
		it.Seek(slices.Concat(prefixQueue, []byte(whID), []byte{'/' + 1}))
	}
	return nil
}

// SetRetention sets how long finished deliveries and events are kept.
func (s *BadgerStore) SetRetention(history, events time.Duration) {
	s.history.Store(int64(history))
	s.events.Store(int64(events))
}

// background runs cleanup work that Close waits for. The work stops early
// once Close has begun: what it leaves is found again at the next start
// (queues of unknown webhooks) or expires (finished history has a TTL).
func (s *BadgerStore) background(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// closing reports whether Close has begun.
func (s *BadgerStore) closing() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// Close stops housekeeping and background cleanups and closes Badger.
func (s *BadgerStore) Close() error {
	close(s.stop)
	<-s.housekept
	s.bg.Wait()
	return s.db.Close()
}

// diskBytes is the disk space of the store's files. Badger's logs are
// sparse files far larger than what they hold, so blocks are counted, not
// sizes.
func (s *BadgerStore) diskBytes() int64 {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(s.dir, e.Name()), &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// update is db.Update for every writer but housekeeping's flush.
func (s *BadgerStore) update(fn func(*badger.Txn) error) error {
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	return s.db.Update(fn)
}

// ---- encoding ----

type webhookRecord struct {
	ID                  string    `json:"id"`
	AppID               string    `json:"appId"`
	Name                string    `json:"name"`
	URL                 string    `json:"url"`
	Events              []string  `json:"events"`
	Enabled             bool      `json:"enabled"`
	CreatedAt           time.Time `json:"createdAt"`
	UpdatedAt           time.Time `json:"updatedAt"`
	Secret              string    `json:"secret,omitempty"`
	PreviousSecret      string    `json:"previousSecret,omitempty"`
	PreviousSecretUntil time.Time `json:"previousSecretUntil,omitzero"`
	FailingSince        time.Time `json:"failingSince,omitzero"`
	DisabledReason      string    `json:"disabledReason,omitempty"`
}

func encodeWebhook(w *Webhook) ([]byte, error) {
	return json.Marshal(webhookRecord(*w))
}

func decodeWebhook(v []byte, w *Webhook) error {
	var r webhookRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return err
	}
	*w = Webhook(r)
	return nil
}

type eventMeta struct {
	ID         string    `json:"id"`
	AppID      string    `json:"appId"`
	Type       string    `json:"event"`
	ReceivedAt time.Time `json:"receivedAt"`
}

// encodeEvent keeps the body outside the JSON so it stays byte for byte.
func encodeEvent(e *Event) ([]byte, error) {
	meta, err := json.Marshal(eventMeta{e.ID, e.AppID, e.Type, e.ReceivedAt})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(meta)+len(e.Body))
	binary.BigEndian.PutUint32(out, uint32(len(meta)))
	out = append(out, meta...)
	return append(out, e.Body...), nil
}

func decodeEvent(v []byte) (*Event, error) {
	if len(v) < 4 {
		return nil, errors.New("short event record")
	}
	n := int(binary.BigEndian.Uint32(v))
	if len(v) < 4+n {
		return nil, errors.New("short event record")
	}
	var m eventMeta
	if err := json.Unmarshal(v[4:4+n], &m); err != nil {
		return nil, err
	}
	return &Event{ID: m.ID, AppID: m.AppID, Type: m.Type, ReceivedAt: m.ReceivedAt, Body: slices.Clone(v[4+n:])}, nil
}

type deliveryRecord struct {
	*Delivery
	Round        int       `json:"round,omitempty"`
	Resend       bool      `json:"resend,omitempty"`
	PendingSince time.Time `json:"pendingSince,omitzero"`
}

func encodeDelivery(d *Delivery, pendingSince time.Time) ([]byte, error) {
	return json.Marshal(deliveryRecord{Delivery: d, Round: d.Round, Resend: d.Resend, PendingSince: pendingSince})
}

func decodeDelivery(v []byte) (*Delivery, time.Time, error) {
	r := deliveryRecord{Delivery: new(Delivery)}
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, time.Time{}, err
	}
	r.Delivery.Round, r.Delivery.Resend = r.Round, r.Resend
	return r.Delivery, r.PendingSince, nil
}

func webhookKey(appID, id string) []byte {
	return slices.Concat(prefixWebhook, []byte(appID), []byte{0}, []byte(id))
}

func eventKey(id string) []byte { return slices.Concat(prefixEvent, []byte(id)) }

func deliveryPrefix(webhookID string) []byte {
	return slices.Concat(prefixDelivery, []byte(webhookID), []byte{'/'})
}

func deliveryKey(webhookID, id string) []byte {
	return slices.Concat(deliveryPrefix(webhookID), []byte(id))
}

func be64(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return b[:]
}

func queuePrefix(webhookID string) []byte {
	return slices.Concat(prefixQueue, []byte(webhookID), []byte{'/'})
}

func queueKey(due time.Time, webhookID, id string) []byte {
	return slices.Concat(queuePrefix(webhookID), be64(due), []byte(id))
}

// parseQueueEntry splits what follows a webhook's queue prefix.
func parseQueueEntry(rest []byte) (due time.Time, id string, ok bool) {
	if len(rest) <= 8 {
		return time.Time{}, "", false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(rest))), string(rest[8:]), true
}

func pendingKey(since time.Time, id string) []byte {
	return slices.Concat(prefixPending, be64(since), []byte(id))
}

func idemKey(appID, key string) []byte {
	return slices.Concat(prefixIdem, []byte(appID), []byte{0}, []byte(key))
}

// ---- ingest ----

// checkSpace refuses a write when the disk is nearly full.
func (s *BadgerStore) checkSpace() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return nil // no answer is no reason to refuse
	}
	if free := int64(st.Bavail) * st.Bsize; free < s.minFree {
		return fmt.Errorf("%w: %d MiB free in %s, below the %d MiB reserve", ErrUnavailable, free>>20, s.dir, s.minFree>>20)
	}
	return nil
}

// Commit writes the batch and fsyncs once for all of it. Each ingest is
// atomic; when the batch outgrows one transaction, what fits is committed
// and the rest goes on in another, all before the one fsync that makes the
// batch durable.
func (s *BadgerStore) Commit(ctx context.Context, batch []*Ingest) error {
	if err := s.checkSpace(); err != nil {
		return err
	}
	seq, err := s.write(batch)
	if err != nil {
		return err
	}
	if err := s.syncTo(seq); err != nil {
		return fmt.Errorf("syncing events: %w", unavailable(err))
	}
	s.account(batch)
	return nil
}

// syncTo returns once every write up to seq is on disk.
func (s *BadgerStore) syncTo(seq uint64) error {
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
func (s *BadgerStore) write(batch []*Ingest) (uint64, error) {
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
				if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &in.Result) }); err != nil {
					return 0, fmt.Errorf("reading idempotency key: %w", err)
				}
				in.Result.Duplicate = true
				continue
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return 0, fmt.Errorf("reading idempotency key: %w", unavailable(err))
			}
		}
		in.Result = IngestResult{ID: in.Event.ID, Deliveries: len(in.Deliveries)}
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
func (s *BadgerStore) account(batch []*Ingest) {
	s.ingested.Add(int64(len(batch)))
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	for _, in := range batch {
		if in.Result.Duplicate {
			continue
		}
		for _, d := range in.Deliveries {
			if d.Status == StatusPending {
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

func ingestEntries(in *Ingest, evTTL, historyTTL time.Duration) ([]*badger.Entry, error) {
	ev, err := encodeEvent(in.Event)
	if err != nil {
		return nil, err
	}
	entries := []*badger.Entry{badger.NewEntry(eventKey(in.Event.ID), ev).WithTTL(evTTL)}
	if in.IdempotencyKey != "" {
		res, _ := json.Marshal(in.Result)
		entries = append(entries, badger.NewEntry(idemKey(in.Event.AppID, in.IdempotencyKey), res).WithTTL(IdempotencyWindow))
	}
	for _, d := range in.Deliveries {
		var since time.Time
		if d.Status == StatusPending {
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
		if d.Status != StatusPending {
			// Skipped: finished on arrival, kept as long as any history.
			e = e.WithTTL(historyTTL)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// unavailable marks storage failures (disk full, I/O) as ErrUnavailable.
func unavailable(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return err
	}
	return errors.Join(ErrUnavailable, err)
}

// ---- webhooks ----

func (s *BadgerStore) cachePut(w *Webhook) {
	s.webhooks[w.ID] = w
	list := s.byApp[w.AppID]
	i := slices.IndexFunc(list, func(x *Webhook) bool { return x.ID == w.ID })
	if i >= 0 {
		list = slices.Clone(list)
		list[i] = w
	} else {
		list = append(slices.Clone(list), w)
	}
	s.byApp[w.AppID] = list
}

func (s *BadgerStore) cacheDelete(w *Webhook) {
	delete(s.webhooks, w.ID)
	list := slices.DeleteFunc(slices.Clone(s.byApp[w.AppID]), func(x *Webhook) bool { return x.ID == w.ID })
	if len(list) == 0 {
		delete(s.byApp, w.AppID)
	} else {
		s.byApp[w.AppID] = list
	}
}

func (s *BadgerStore) writeWebhook(w *Webhook) error {
	if err := s.checkSpace(); err != nil {
		return err
	}
	v, err := encodeWebhook(w)
	if err != nil {
		return err
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(webhookKey(w.AppID, w.ID), v) }); err != nil {
		return fmt.Errorf("writing webhook: %w", unavailable(err))
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("syncing webhook: %w", unavailable(err))
	}
	return nil
}

// CreateWebhook stores a new webhook.
func (s *BadgerStore) CreateWebhook(ctx context.Context, w *Webhook) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeWebhook(w); err != nil {
		return err
	}
	c := *w
	s.cachePut(&c)
	return nil
}

// UpdateWebhook applies fn to a copy of the webhook and stores it.
func (s *BadgerStore) UpdateWebhook(ctx context.Context, appID, id string, fn func(*Webhook) error) (*Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.webhooks[id]
	if !ok || cur.AppID != appID {
		return nil, ErrNotFound
	}
	w := *cur
	w.Events = slices.Clone(cur.Events)
	if err := fn(&w); err != nil {
		return nil, err
	}
	if err := s.writeWebhook(&w); err != nil {
		return nil, err
	}
	s.cachePut(&w)
	c := w
	return &c, nil
}

// DeleteWebhook removes the webhook now and its history in the background.
// Its pending deliveries are dropped as the queue reaches them.
func (s *BadgerStore) DeleteWebhook(ctx context.Context, appID, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.webhooks[id]
	if !ok || w.AppID != appID {
		return ErrNotFound
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete(webhookKey(appID, id)) }); err != nil {
		return fmt.Errorf("deleting webhook: %w", unavailable(err))
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("syncing webhook: %w", unavailable(err))
	}
	s.cacheDelete(w)
	s.background(func() {
		s.dropQueue(id)
		s.dropHistory(id)
	})
	return nil
}

// dropHistory deletes a deleted webhook's finished deliveries; pending ones
// in flight are dropped by Save when their attempt ends.
func (s *BadgerStore) dropHistory(webhookID string) {
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	_ = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: deliveryPrefix(webhookID), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid() && !s.closing(); it.Next() {
			var pending bool
			_ = it.Item().Value(func(v []byte) error {
				d, _, err := decodeDelivery(v)
				pending = err == nil && d.Status == StatusPending
				return nil
			})
			if !pending {
				_ = wb.Delete(it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	_ = wb.Flush()
}

func copyWebhook(w *Webhook) *Webhook {
	c := *w
	c.Events = slices.Clone(w.Events)
	return &c
}

// GetWebhook returns a webhook of the app.
func (s *BadgerStore) GetWebhook(ctx context.Context, appID, id string) (*Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.webhooks[id]
	if !ok || w.AppID != appID {
		return nil, ErrNotFound
	}
	return copyWebhook(w), nil
}

// ListWebhooks returns an app's webhooks, oldest first.
func (s *BadgerStore) ListWebhooks(ctx context.Context, appID string) ([]*Webhook, error) {
	s.mu.Lock()
	list := s.byApp[appID]
	s.mu.Unlock()
	out := make([]*Webhook, len(list))
	for i, w := range list {
		out[i] = copyWebhook(w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ListApps returns the ids of apps with webhooks, sorted.
func (s *BadgerStore) ListApps(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	apps := make([]string, 0, len(s.byApp))
	for a := range s.byApp {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	return apps, nil
}

func (s *BadgerStore) cachedWebhook(id string) *Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.webhooks[id]; ok {
		return copyWebhook(w)
	}
	return nil
}

// ---- dispatch ----

// Claim visits the queues whose head is due, in random order, and takes
// their due entries until admit refuses or limit is reached.
func (s *BadgerStore) Claim(ctx context.Context, now time.Time, limit int, admit func(string) bool) ([]*Job, time.Time, error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	var jobs []*Job
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
			jobs, err = s.claimQueue(txn, w, now, limit, jobs, admit)
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
func (s *BadgerStore) claimQueue(txn *badger.Txn, w *Webhook, now time.Time, limit int, jobs []*Job, admit func(string) bool) ([]*Job, error) {
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
		if due.After(now) || len(jobs) >= limit || !admit(w.ID) {
			break
		}
		j, err := loadJob(txn, w, due, id)
		if err != nil {
			return jobs, err
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
// is gone comes back with an empty EventID, for the caller to release.
func loadJob(txn *badger.Txn, w *Webhook, due time.Time, id string) (*Job, error) {
	j := &Job{Webhook: w, Due: due}
	d, since, err := getDelivery(txn, w.ID, id)
	if errors.Is(err, ErrNotFound) {
		j.Delivery = &Delivery{ID: id, WebhookID: w.ID}
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading delivery %s: %w", id, err)
	}
	j.Delivery, j.PendingSince = d, since
	j.Event, j.EventExpires, err = getEventExpiry(txn, d.EventID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("reading event %s: %w", d.EventID, err)
	}
	return j, nil
}

// queued records that a webhook's queue has an entry due at due.
func (s *BadgerStore) queued(webhookID string, due time.Time) {
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
func (s *BadgerStore) dropQueue(webhookID string) {
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
func (s *BadgerStore) Save(ctx context.Context, j *Job) error {
	d := j.Delivery
	defer s.unclaim(d.ID)
	since := j.PendingSince
	finished := d.Status != StatusPending
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
func (s *BadgerStore) keepEvent(txn *badger.Txn, j *Job) error {
	if j.Event == nil || j.EventExpires.IsZero() {
		return nil
	}
	now := time.Now()
	history := time.Duration(s.history.Load())
	until := eventExpiry(j, now, history)
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
func (s *BadgerStore) Release(ctx context.Context, j *Job) error {
	defer s.unclaim(j.Delivery.ID)
	if j.Delivery.EventID != "" {
		return nil
	}
	return s.update(func(txn *badger.Txn) error {
		return txn.Delete(queueKey(j.Due, j.Delivery.WebhookID, j.Delivery.ID))
	})
}

func (s *BadgerStore) unclaim(id string) {
	s.claimMu.Lock()
	delete(s.claimed, id)
	s.claimMu.Unlock()
}

// ---- history ----

// Deliveries pages through a webhook's history, newest first.
func (s *BadgerStore) Deliveries(ctx context.Context, appID, webhookID string, f DeliveryFilter) ([]*Delivery, string, error) {
	var out []*Delivery
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
			var d *Delivery
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
			out = append(out, d)
		}
		return nil
	})
	return out, cursor, err
}

// Delivery returns one delivery and its event (nil once expired).
func (s *BadgerStore) Delivery(ctx context.Context, appID, webhookID, id string) (*Delivery, *Event, error) {
	var d *Delivery
	var ev *Event
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		d, _, err = getDelivery(txn, webhookID, id)
		if err != nil {
			return err
		}
		if d.AppID != appID {
			return ErrNotFound
		}
		ev, err = getEvent(txn, d.EventID)
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		return err
	})
	return d, ev, err
}

func getDelivery(txn *badger.Txn, webhookID, id string) (*Delivery, time.Time, error) {
	item, err := txn.Get(deliveryKey(webhookID, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, time.Time{}, ErrNotFound
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	var d *Delivery
	var since time.Time
	err = item.Value(func(v []byte) error {
		d, since, err = decodeDelivery(v)
		return err
	})
	return d, since, err
}

func getEvent(txn *badger.Txn, id string) (*Event, error) {
	ev, _, err := getEventExpiry(txn, id)
	return ev, err
}

// getEventExpiry is getEvent that also tells when the event expires.
func getEventExpiry(txn *badger.Txn, id string) (*Event, time.Time, error) {
	item, err := txn.Get(eventKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, time.Time{}, ErrNotFound
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	var ev *Event
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
func (s *BadgerStore) Requeue(ctx context.Context, appID, webhookID string, ids []string, now time.Time, check func(*Delivery) error) ([]*Delivery, error) {
	if w := s.cachedWebhook(webhookID); w == nil || w.AppID != appID {
		return nil, ErrNotFound
	}
	if err := s.checkSpace(); err != nil {
		return nil, err
	}
	var out []*Delivery
	evTTL := time.Duration(s.events.Load())
	err := s.update(func(txn *badger.Txn) error {
		for _, id := range ids {
			d, _, err := getDelivery(txn, webhookID, id)
			if err != nil {
				return err
			}
			if d.AppID != appID {
				return ErrNotFound
			}
			if err := check(d); err != nil {
				return err
			}
			ev, err := getEvent(txn, d.EventID)
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("the event of delivery %s is no longer retained: %w", id, ErrConflict)
			} else if err != nil {
				return err
			}
			// The event must outlive the delivery's new attempt.
			evv, err := encodeEvent(ev)
			if err != nil {
				return err
			}
			d.Status, d.NextAttemptAt, d.Resend, d.Round = StatusPending, &now, true, 0
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
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
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
func (s *BadgerStore) FailedSince(ctx context.Context, appID, webhookID string, since time.Time) ([]string, error) {
	if w := s.cachedWebhook(webhookID); w == nil || w.AppID != appID {
		return nil, ErrNotFound
	}
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: deliveryPrefix(webhookID), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				d, _, err := decodeDelivery(v)
				if err == nil && d.Status == StatusFailed && !d.CreatedAt.Before(since) {
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
func (s *BadgerStore) Stats(ctx context.Context) (Stats, error) {
	st := Stats{Pending: s.pending.Load(), StoreBytes: s.diskBytes()}
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

var _ Store = (*BadgerStore)(nil)
