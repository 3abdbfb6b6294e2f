package badgerstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

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

// Options configure the embedded store.
type Options struct {
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

	// MappedReleaseEvery is how often the resident pages of Badger's
	// memory-mapped files (tables, value log, memtable logs) are handed
	// back to the kernel (Linux), so that the file-backed part of the RSS
	// is what the store touched since, instead of growing with the data
	// on disk; default 5s, negative never (the kernel then reclaims them
	// only under memory pressure). Released pages are read again from the
	// page cache or the disk when needed.
	MappedReleaseEvery time.Duration

	// Overridden by tests, which cannot wait for the defaults.
	valueLogFileSize int64         // default 64 MiB
	housekeepEvery   time.Duration // default housekeepEvery
	sweepMargin      time.Duration // default sweepMargin
}

// Store is the embedded Store: one Badger directory, owned by one
// process. Claims are held in memory, since no other process can read the
// directory while it is open.
type Store struct {
	db      *badger.DB
	dir     string
	mapDir  string // dir as /proc/self/maps spells it
	minFree int64
	log     *zap.Logger

	housekeepEvery time.Duration
	sweepMargin    time.Duration

	history atomic.Int64 // retention of finished deliveries, ns
	events  atomic.Int64 // retention of events, ns

	mu       sync.Mutex // serializes webhook writes and guards the cache
	webhooks map[string]*outbox.Webhook
	byApp    map[string][]*outbox.Webhook

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
	// fresh holds just-committed deliveries until their first claim (see
	// fresh.go), freshBytes what they hold.
	fresh      map[string]*freshJob
	freshBytes int

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

	logState eventLogState

	pending   atomic.Int64
	oldestMu  sync.Mutex
	oldest    []byte        // pending-set position of the oldest entry last seen
	stop      chan struct{} // closed by Close
	housekept chan struct{} // closed when housekeepLoop returns
	bg        sync.WaitGroup
}

// Sizes returns the memtable size and the free-space reserve Open uses
// for the given ones, where zero or less means the default (see Options).
func Sizes(memTable, minFree int64) (int64, int64) {
	if memTable <= 0 {
		memTable = 16 << 20
	}
	if minFree <= 0 {
		// Room for the writes still in flight once ingest stops, the
		// two memtables' logs among them.
		minFree = 2*memTable + 32<<20
	}
	return memTable, minFree
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	opts.MemTableSize, opts.MinFreeBytes = Sizes(opts.MemTableSize, opts.MinFreeBytes)
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
	if opts.MappedReleaseEvery == 0 {
		opts.MappedReleaseEvery = releaseMappedEvery
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
	s := &Store{
		db:             db,
		dir:            dir,
		minFree:        opts.MinFreeBytes,
		log:            opts.Logger,
		housekeepEvery: opts.housekeepEvery,
		sweepMargin:    opts.sweepMargin,
		webhooks:       map[string]*outbox.Webhook{},
		byApp:          map[string][]*outbox.Webhook{},
		claimed:        map[string]bool{},
		heads:          map[string]time.Time{},
		fresh:          map[string]*freshJob{},
		stop:           make(chan struct{}),
		housekept:      make(chan struct{}),
	}
	s.SetRetention(720*time.Hour, 720*time.Hour)
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	go s.housekeepLoop()
	s.mapDir = dir
	if abs, err := filepath.Abs(dir); err == nil {
		s.mapDir = abs
	}
	if real, err := filepath.EvalSymlinks(s.mapDir); err == nil {
		s.mapDir = real
	}
	if opts.MappedReleaseEvery > 0 {
		s.background(func() { s.releaseLoop(opts.MappedReleaseEvery) })
	}
	return s, nil
}

// load fills the webhook cache and counts pending deliveries.
func (s *Store) load() error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixWebhook, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var w outbox.Webhook
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
func (s *Store) loadHeads(txn *badger.Txn) error {
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
func (s *Store) SetRetention(history, events time.Duration) {
	s.history.Store(int64(history))
	s.events.Store(int64(events))
}

// background runs cleanup work that Close waits for. The work stops early
// once Close has begun: what it leaves is found again at the next start
// (queues of unknown webhooks) or expires (finished history has a TTL).
func (s *Store) background(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// closing reports whether Close has begun.
func (s *Store) closing() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// Close stops housekeeping and background cleanups and closes Badger.
func (s *Store) Close() error {
	close(s.stop)
	<-s.housekept
	s.bg.Wait()
	return s.db.Close()
}

// diskBytes is the disk space of the store's files. Badger's logs are
// sparse files far larger than what they hold, so blocks are counted, not
// sizes.
func (s *Store) diskBytes() int64 {
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
func (s *Store) update(fn func(*badger.Txn) error) error {
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	return s.db.Update(fn)
}

var _ outbox.Store = (*Store)(nil)
