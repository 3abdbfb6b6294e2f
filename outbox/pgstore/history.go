package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
)

// Deliveries pages through a webhook's history, newest first; the cursor
// is the id of the last delivery of the previous page.
func (s *Store) Deliveries(ctx context.Context, appID, webhookID string, f outbox.DeliveryFilter) ([]*outbox.Delivery, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 20
	}
	rows, err := s.pool.Query(ctx, `SELECT `+pgDeliveryCols+`, e.body FROM deliveries d
			LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()
		WHERE d.webhook_id = $1 AND d.app_id = $2
			AND (d.expires_at IS NULL OR d.expires_at > now())
			AND ($3 = '' OR d.status = $3)
			AND ($4 = '' OR d.event = $4)
			AND ($5 = '' OR d.id < $5)
		ORDER BY d.id DESC
		LIMIT $6`, webhookID, appID, string(f.Status), f.Event, f.Cursor, limit+1)
	if err != nil {
		return nil, "", pgErr("listing deliveries", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*outbox.Delivery, error) {
		var ds deliveryScan
		var body []byte
		if err := r.Scan(append(ds.targets(), &body)...); err != nil {
			return nil, err
		}
		d, _, err := ds.result()
		if err != nil {
			return nil, err
		}
		d.RequestBody = body
		return d, nil
	})
	if err != nil {
		return nil, "", pgErr("listing deliveries", err)
	}
	var cursor string
	if len(out) > limit {
		out = out[:limit]
		cursor = out[limit-1].ID
	}
	return out, cursor, nil
}

// Delivery returns one delivery and its event (nil once expired).
func (s *Store) Delivery(ctx context.Context, appID, webhookID, id string) (*outbox.Delivery, *outbox.Event, error) {
	var ds deliveryScan
	var es eventScan
	err := s.pool.QueryRow(ctx, `SELECT `+pgDeliveryCols+`, `+pgEventCols+` FROM deliveries d
			LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()
		WHERE d.id = $1 AND d.webhook_id = $2 AND d.app_id = $3
			AND (d.expires_at IS NULL OR d.expires_at > now())`,
		id, webhookID, appID).Scan(slices.Concat(ds.targets(), es.targets())...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, outbox.ErrNotFound
	}
	if err != nil {
		return nil, nil, pgErr("reading delivery", err)
	}
	d, _, err := ds.result()
	if err != nil {
		return nil, nil, err
	}
	return d, es.result(), nil
}

func (s *Store) webhookExists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, appID, webhookID string) error {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1 AND app_id = $2)`,
		webhookID, appID).Scan(&exists); err != nil {
		return pgErr("reading webhook", err)
	}
	if !exists {
		return outbox.ErrNotFound
	}
	return nil
}

// Requeue makes finished deliveries pending again, due now, all or none:
// the first unknown id or refusal of check aborts the whole call.
func (s *Store) Requeue(ctx context.Context, appID, webhookID string, ids []string, now time.Time, check func(*outbox.Delivery) error) ([]*outbox.Delivery, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, pgErr("requeueing", err)
	}
	defer tx.Rollback(context.Background())
	if err := s.webhookExists(ctx, tx, appID, webhookID); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT `+pgDeliveryCols+`, e.id IS NOT NULL FROM deliveries d
			LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()
		WHERE d.webhook_id = $1 AND d.id = ANY($2)
			AND (d.expires_at IS NULL OR d.expires_at > now())
		FOR UPDATE OF d`, webhookID, ids)
	if err != nil {
		return nil, pgErr("requeueing", err)
	}
	type found struct {
		d        *outbox.Delivery
		hasEvent bool
	}
	byID := map[string]found{}
	for rows.Next() {
		var ds deliveryScan
		var hasEvent bool
		if err := rows.Scan(append(ds.targets(), &hasEvent)...); err != nil {
			rows.Close()
			return nil, pgErr("requeueing", err)
		}
		d, _, err := ds.result()
		if err != nil {
			rows.Close()
			return nil, err
		}
		byID[d.ID] = found{d, hasEvent}
	}
	if err := rows.Err(); err != nil {
		return nil, pgErr("requeueing", err)
	}
	var out []*outbox.Delivery
	var eventIDs []string
	for _, id := range ids {
		f, ok := byID[id]
		if !ok || f.d.AppID != appID {
			return nil, outbox.ErrNotFound
		}
		d := f.d
		if err := check(d); err != nil {
			return nil, err
		}
		if !f.hasEvent {
			return nil, fmt.Errorf("the event of delivery %s is no longer retained: %w", id, outbox.ErrConflict)
		}
		// d is shared by a repeated id, which check then sees pending.
		n := now
		d.Status, d.NextAttemptAt, d.Resend, d.Round = outbox.StatusPending, &n, true, 0
		out = append(out, d)
		eventIDs = append(eventIDs, d.EventID)
	}
	if len(out) > 0 {
		reqIDs := make([]string, len(out))
		for i, d := range out {
			reqIDs[i] = d.ID
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE deliveries SET status = 'pending', next_attempt_at = $2, resend = true, round = 0,
				pending_since = $2, expires_at = NULL, lease_owner = NULL, lease_until = NULL
			WHERE id = ANY($1)`, reqIDs, now)
		// The event must outlive the delivery's new attempt.
		b.Queue(`UPDATE events SET expires_at = greatest(expires_at, now() + $2 * interval '1 microsecond')
			WHERE id = ANY($1)`, eventIDs, micros(time.Duration(s.events.Load())))
		b.Queue(`SELECT pg_notify($1, 'work')`, s.channel)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, pgErr("requeueing", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, pgErr("committing requeue", err)
	}
	return out, nil
}

// FailedSince lists a webhook's failed deliveries created since a time,
// oldest first.
func (s *Store) FailedSince(ctx context.Context, appID, webhookID string, since time.Time) ([]string, error) {
	if err := s.webhookExists(ctx, s.pool, appID, webhookID); err != nil {
		return nil, err
	}
	// The database keeps microseconds; truncating since the same way keeps
	// a delivery created at exactly since.
	rows, err := s.pool.Query(ctx, `SELECT id FROM deliveries
		WHERE webhook_id = $1 AND status = 'failed' AND created_at >= $2
			AND (expires_at IS NULL OR expires_at > now())
		ORDER BY id`, webhookID, since.Truncate(time.Microsecond))
	if err != nil {
		return nil, pgErr("listing failed deliveries", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgErr("listing failed deliveries", err)
	}
	return ids, nil
}

// Stats counts pending deliveries (in flight included) across the fleet.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(pending_since), pg_database_size(current_database()) FROM deliveries WHERE status = 'pending'`).
		Scan(&st.Pending, &oldest, &st.StoreBytes); err != nil {
		return outbox.Stats{}, pgErr("counting pending deliveries", err)
	}
	st.OldestPending = timeOrZero(oldest)
	return st, nil
}
