package pgstore

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

func (s *Store) cleanupLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CleanupInterval)
		go func() {
			// Stop interrupts a long cleanup instead of holding up Close.
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, err := s.deleteExpired(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("deleting expired webhook history", zap.Error(err))
		}
		cancel()
	}
}

// deleteExpired deletes what has outlived its retention, a thousand rows a
// transaction so no delete holds locks for long. SKIP LOCKED lets the
// sidecars of a fleet share the work instead of queueing on the same rows.
func (s *Store) deleteExpired(ctx context.Context) (int64, error) {
	var total int64
	for _, table := range []string{"deliveries", "events", "idempotency"} {
		for {
			tag, err := s.pool.Exec(ctx, `DELETE FROM `+table+` WHERE ctid IN (
				SELECT ctid FROM `+table+` WHERE expires_at <= now() LIMIT 1000 FOR UPDATE SKIP LOCKED)`)
			if err != nil {
				return total, fmt.Errorf("deleting expired %s: %w", table, err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < 1000 {
				break
			}
		}
	}
	return total, nil
}
