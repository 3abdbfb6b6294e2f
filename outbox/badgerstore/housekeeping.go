package badgerstore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

const (
	// housekeepEvery is how often the embedded store returns the space of
	// expired history to the disk.
	housekeepEvery = time.Minute

	// sweepMargin keeps the sweep off entries that expired only just now.
	// A resend reads an event and then renews its TTL; a tombstone based on
	// a read from before the renewal must not land after it, and no resend
	// takes this long between its read and its write.
	sweepMargin = 10 * time.Second

	// quietIngest is the most events a housekeeping pass may have seen
	// ingested for the store to flush its memtables: beyond it they fill
	// and flush soon enough by themselves, and a flush would stall ingest.
	quietIngest = 10_000

	// gcDiscardRatio is the share of a value-log file that must be dead
	// before GC rewrites it. Files of expired history are wholly dead.
	gcDiscardRatio = 0.5
)

// housekeepLoop runs housekeep until Close.
func (s *Store) housekeepLoop() {
	defer close(s.housekept)
	t := time.NewTicker(s.housekeepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		start := time.Now()
		swept, err := s.housekeep(start)
		if err != nil {
			s.log.Warn("housekeeping the store", zap.Int("swept", swept), zap.Error(err))
			continue
		}
		s.log.Debug("housekeeping done",
			zap.Int("swept", swept),
			zap.Duration("took", time.Since(start)),
			zap.Int64("store_bytes", s.diskBytes()))
	}
}

// housekeep makes disk use follow retention.
//
// Badger drops an expired entry only when compaction rewrites the table
// that holds it, and learns which value-log files hold dead bodies only
// from those compactions. Event and delivery keys are ordered by time, so
// new writes land past every old table and nothing would ever rewrite the
// old ones: expired history would stay on disk for good. So the sweep
// writes a tombstone over each expired key, which puts new writes in the
// old key ranges; on a quiet store the memtables holding the tombstones
// are flushed; flattening the tree merges the tombstones into the tables
// below, which drops both and counts the bodies they pointed to; value-log
// GC then deletes the files that are dead.
//
// It returns the number of keys swept.
func (s *Store) housekeep(now time.Time) (int, error) {
	ingested := s.ingested.Load()
	quiet := ingested-s.lastIngested <= quietIngest
	s.lastIngested = ingested
	swept, err := s.sweep(now)
	if err != nil {
		return swept, fmt.Errorf("sweeping expired entries: %w", err)
	}
	// A compaction writes its new tables before it drops the old ones, so
	// it is left to Badger's own compactors when the disk is nearly full.
	if swept > 0 && s.checkSpace() == nil && !s.closing() {
		if quiet {
			if err := s.flush(); err != nil {
				return swept, fmt.Errorf("flushing memtables: %w", err)
			}
		}
		if err := s.db.Flatten(1); err != nil {
			return swept, fmt.Errorf("compacting: %w", err)
		}
	}
	for !s.closing() {
		if err := s.db.RunValueLogGC(gcDiscardRatio); err != nil {
			break // ErrNoRewrite: nothing left worth rewriting
		}
	}
	return swept, nil
}

// prefixFlush holds the one key flush drops.
var prefixFlush = []byte("z/")

// flush writes the memtables out as tables. Badger does that by itself
// only when a memtable is full, which on a quiet store can take hours, and
// tombstones in a memtable reach no compaction. Its only way to flush on
// demand is DropPrefix, which refuses writes while it runs, so it runs
// only when no writer holds flushMu, and otherwise waits for the next pass.
func (s *Store) flush() error {
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(prefixFlush, nil) }); err != nil {
		return err
	}
	if !s.flushMu.TryLock() {
		return nil
	}
	defer s.flushMu.Unlock()
	return s.db.DropPrefix(prefixFlush)
}

// sweep deletes the keys of events and deliveries that expired more than
// sweepMargin ago. It visits only entries old enough to have expired: an
// id is a UUIDv7 whose time is no later than its record's first write,
// and every record expires at least its retention after that.
func (s *Store) sweep(now time.Time) (int, error) {
	deadline := uint64(now.Add(-s.sweepMargin).Unix())
	events := now.Add(-time.Duration(s.events.Load()))
	history := now.Add(-time.Duration(s.history.Load()))

	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	swept := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		var last []byte
		// visit walks keys from start while their ids are older than
		// before, and returns the key it stopped at (nil at the end of
		// prefix).
		visit := func(start, prefix []byte, before time.Time) ([]byte, error) {
			for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
				item := it.Item()
				k := item.Key()
				if bytes.Equal(k, last) {
					continue // an older version of a key already decided
				}
				last = append(last[:0], k...)
				if s.closing() {
					return nil, nil
				}
				if t, ok := idTime(k[bytes.LastIndexByte(k, '/')+1:]); ok && !t.Before(before) {
					return k, nil
				}
				// A tombstone (already swept) has no expiry.
				if exp := item.ExpiresAt(); exp != 0 && exp <= deadline {
					if err := wb.Delete(item.KeyCopy(nil)); err != nil {
						return nil, err
					}
					swept++
				}
			}
			return nil, nil
		}
		if _, err := visit(prefixEvent, prefixEvent, events); err != nil {
			return err
		}
		// Deliveries are in time order within each webhook: sweep the old
		// end of each and jump to the next webhook.
		for start := prefixDelivery; start != nil; {
			k, err := visit(start, prefixDelivery, history)
			if err != nil || k == nil {
				return err
			}
			wh, _, _ := bytes.Cut(k[len(prefixDelivery):], []byte{'/'})
			start = slices.Concat(prefixDelivery, wh, []byte{'/' + 1})
		}
		return nil
	})
	if err != nil {
		return swept, err
	}
	logSwept, err := s.sweepEventLog(wb, deadline, events)
	swept += logSwept
	if err != nil {
		return swept, err
	}
	return swept, wb.Flush()
}

// idTime reads the creation time out of a UUIDv7 string id.
func idTime(id []byte) (time.Time, bool) {
	if len(id) != 36 || id[8] != '-' || id[14] != '7' {
		return time.Time{}, false
	}
	var ms [8]byte
	if _, err := hex.Decode(ms[2:6], id[:8]); err != nil {
		return time.Time{}, false
	}
	if _, err := hex.Decode(ms[6:8], id[9:13]); err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(ms[:]))), true
}
