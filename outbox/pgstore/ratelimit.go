package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TakeSlot implements outbox.RateLimiter for the whole fleet: each
// webhook's next free slot is a row, taken by one atomic upsert that
// moves it on by the slot interval only if it has come. Times are the
// database's, so sidecars' clocks need not agree.
func (s *Store) TakeSlot(ctx context.Context, webhookID string, perSecond int) (time.Duration, error) {
	interval := micros(time.Second / time.Duration(perSecond))
	var taken bool
	var waitMicros int64
	err := s.pool.QueryRow(ctx, `WITH taken AS (
			INSERT INTO webhook_rate_slots AS r (webhook_id, next_slot)
			VALUES ($1, clock_timestamp() + $2 * interval '1 microsecond')
			ON CONFLICT (webhook_id) DO UPDATE SET next_slot = clock_timestamp() + $2 * interval '1 microsecond'
				WHERE r.next_slot <= clock_timestamp()
			RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM taken),
			coalesce((SELECT ceil(extract(epoch FROM next_slot - clock_timestamp()) * 1e6)::bigint
				FROM webhook_rate_slots WHERE webhook_id = $1), 0)`,
		webhookID, interval).Scan(&taken, &waitMicros)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		// The webhook was deleted: there is nothing left to limit.
		return 0, nil
	}
	if err != nil {
		return 0, pgErr("taking a rate limit slot", err)
	}
	if taken {
		return 0, nil
	}
	if waitMicros <= 0 {
		// Not taken, yet the slot read as free: a concurrent upsert that
		// this statement's snapshot predates took it. Ask again shortly.
		waitMicros = 1000
	}
	return time.Duration(waitMicros) * time.Microsecond, nil
}
