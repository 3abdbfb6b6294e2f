package pgstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// eventQuery builds the WHERE clause of an app's retained events in a
// window, with only the conditions that apply, so the planner sees a plain
// range over events_app (or events_app_type).
type eventQuery struct {
	where []string
	args  []any
}

func (q *eventQuery) add(cond string, arg any) {
	q.args = append(q.args, arg)
	q.where = append(q.where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(q.args))))
}

func newEventQuery(appID, evType string, since, until time.Time) *eventQuery {
	q := &eventQuery{where: []string{"e.expires_at > now()"}}
	q.add("e.app_id = $?", appID)
	if evType != "" {
		q.add("e.type = $?", evType)
	}
	lower, upper := outbox.EventIDRange(since, until)
	if lower != "" {
		q.add("e.id >= $?", lower)
		q.add("e.received_at >= $?", since.Truncate(time.Microsecond))
	}
	if upper != "" {
		q.add("e.id < $?", upper)
		q.add("e.received_at <= $?", until)
	}
	return q
}

func (q *eventQuery) sql() string { return strings.Join(q.where, " AND ") }

// eventScanChunk is how many rows a filtered listing reads per query.
const eventScanChunk = 200

// Events pages through an app's events newest first. With a Match filter
// it reads chunks of rows until the page fills or MaxScan rows were offered.
func (s *Store) Events(ctx context.Context, appID string, f outbox.EventFilter) (outbox.EventPage, error) {
	var page outbox.EventPage
	cursor, scanned := f.Cursor, 0
	for {
		q := newEventQuery(appID, f.Type, f.Since, f.Until)
		if cursor != "" {
			q.add("e.id < $?", cursor)
		}
		want := f.Limit - len(page.Events) + 1
		if f.Match != nil {
			want = eventScanChunk
		}
		q.args = append(q.args, want)
		rows, err := s.pool.Query(ctx, `SELECT e.id, e.app_id, e.type, e.received_at, e.body,
				(SELECT count(*) FROM deliveries d WHERE d.event_id = e.id
					AND (d.expires_at IS NULL OR d.expires_at > now()))
			FROM events e WHERE `+q.sql()+`
			ORDER BY e.id DESC LIMIT $`+strconv.Itoa(len(q.args)), q.args...)
		if err != nil {
			return page, pgErr("listing events", err)
		}
		entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*outbox.EventEntry, error) {
			var ev outbox.Event
			var n int
			if err := r.Scan(&ev.ID, &ev.AppID, &ev.Type, &ev.ReceivedAt, &ev.Body, &n); err != nil {
				return nil, err
			}
			return &outbox.EventEntry{Event: &ev, Deliveries: n}, nil
		})
		if err != nil {
			return page, pgErr("listing events", err)
		}
		for _, e := range entries {
			if len(page.Events) == f.Limit {
				page.Next = page.Events[len(page.Events)-1].Event.ID
				return page, nil
			}
			if f.Match != nil {
				if f.MaxScan > 0 && scanned == f.MaxScan {
					page.Partial, page.Next = true, cursor
					return page, nil
				}
				scanned++
				cursor = e.Event.ID
				if !f.Match(e.Event) {
					continue
				}
			}
			page.Events = append(page.Events, e)
		}
		if len(entries) < want {
			return page, nil // nothing older
		}
	}
}

// Event returns a retained event of the app and its deliveries.
func (s *Store) Event(ctx context.Context, appID, id string) (*outbox.Event, []*outbox.Delivery, error) {
	var ev outbox.Event
	err := s.pool.QueryRow(ctx, `SELECT id, app_id, type, received_at, body FROM events
		WHERE id = $1 AND app_id = $2 AND expires_at > now()`, id, appID).
		Scan(&ev.ID, &ev.AppID, &ev.Type, &ev.ReceivedAt, &ev.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, outbox.ErrNotFound
	}
	if err != nil {
		return nil, nil, pgErr("reading event", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+pgDeliveryCols+` FROM deliveries d
		WHERE d.event_id = $1 AND d.app_id = $2 AND (d.expires_at IS NULL OR d.expires_at > now())
		ORDER BY d.id`, id, appID)
	if err != nil {
		return nil, nil, pgErr("reading the deliveries of an event", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*outbox.Delivery, error) {
		d, _, err := scanDelivery(r)
		if err != nil {
			return nil, err
		}
		d.Attempts = nil
		return d, nil
	})
	if err != nil {
		return nil, nil, pgErr("reading the deliveries of an event", err)
	}
	return &ev, ds, nil
}

// replayChunk is how many events a replay reads per query.
const replayChunk = 500

// Replay holds the webhook's row (FOR NO KEY UPDATE: concurrent replays of
// it, from any sidecar, wait; ingest's KEY SHARE does not) while it counts
// the window, reads the events the webhook has no delivery of, and inserts
// their deliveries, all in one transaction.
func (s *Store) Replay(ctx context.Context, appID, webhookID string, req *outbox.ReplayRequest) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, pgErr("starting a replay", err)
	}
	defer tx.Rollback(context.Background())
	var one int
	err = tx.QueryRow(ctx, `SELECT 1 FROM webhooks WHERE id = $1 AND app_id = $2 FOR NO KEY UPDATE`, webhookID, appID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, outbox.ErrNotFound
	}
	if err != nil {
		return 0, pgErr("locking webhook", err)
	}
	q := newEventQuery(appID, "", req.Since, req.Until)
	var window int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM events e WHERE `+q.sql()+`
		LIMIT `+strconv.Itoa(req.MaxEvents+1)+`) w`, q.args...).Scan(&window); err != nil {
		return 0, pgErr("counting the replay window", err)
	}
	if window > req.MaxEvents {
		return 0, outbox.ErrWindowTooLarge
	}
	var made []*outbox.Delivery
	cursor := ""
	for {
		q := newEventQuery(appID, "", req.Since, req.Until)
		if cursor != "" {
			q.add("e.id > $?", cursor)
		}
		q.add("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.webhook_id = $?)", webhookID)
		rows, err := tx.Query(ctx, `SELECT e.id, e.app_id, e.type, e.received_at, e.body FROM events e
			WHERE `+q.sql()+` ORDER BY e.id LIMIT `+strconv.Itoa(replayChunk), q.args...)
		if err != nil {
			return 0, pgErr("reading the replay window", err)
		}
		evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*outbox.Event, error) {
			var ev outbox.Event
			err := r.Scan(&ev.ID, &ev.AppID, &ev.Type, &ev.ReceivedAt, &ev.Body)
			return &ev, err
		})
		if err != nil {
			return 0, pgErr("reading the replay window", err)
		}
		for _, ev := range evs {
			cursor = ev.ID
			if req.Match(ev) {
				made = append(made, req.NewDelivery(ev))
			}
		}
		if len(evs) < replayChunk {
			break
		}
	}
	if err := s.insertDeliveries(ctx, tx, made); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, pgErr("committing a replay", err)
	}
	return len(made), nil
}

// insertDeliveries writes new deliveries, as Commit does for an ingest.
func (s *Store) insertDeliveries(ctx context.Context, tx pgx.Tx, ds []*outbox.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	var c deliveryColumns
	for _, d := range ds {
		if err := c.add(d); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at,
			next_attempt_at, pending_since, attempts, expires_at)
		SELECT u.id, u.app_id, u.webhook_id, u.event_id, u.event, u.status, u.created_at,
			u.next_attempt_at, CASE WHEN u.status = 'pending' THEN u.created_at END, u.attempts::jsonb,
			CASE WHEN u.status <> 'pending' THEN now() + $10 * interval '1 microsecond' END
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::timestamptz[], $8::timestamptz[], $9::text[])
			AS u(id, app_id, webhook_id, event_id, event, status, created_at, next_attempt_at, attempts)`,
		c.id, c.app, c.hook, c.event, c.typ, c.status, c.created, c.next, c.attempts, micros(time.Duration(s.history.Load())))
	if err != nil {
		return pgErr("writing replayed deliveries", err)
	}
	return nil
}

// FinishedSince lists a webhook's deliveries in the statuses created since
// a time, oldest first.
func (s *Store) FinishedSince(ctx context.Context, appID, webhookID string, since time.Time, statuses []outbox.Status) ([]string, error) {
	if err := s.webhookExists(ctx, s.pool, appID, webhookID); err != nil {
		return nil, err
	}
	names := make([]string, len(statuses))
	for i, st := range statuses {
		names[i] = string(st)
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM deliveries
		WHERE webhook_id = $1 AND status = ANY($2) AND created_at >= $3
			AND (expires_at IS NULL OR expires_at > now())
		ORDER BY id`, webhookID, names, since.Truncate(time.Microsecond))
	if err != nil {
		return nil, pgErr("listing finished deliveries", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgErr("listing finished deliveries", err)
	}
	return ids, nil
}

// MarkFailingReported inserts or moves the webhook's report row; a row
// already holding this period changes nothing and returns no row.
func (s *Store) MarkFailingReported(ctx context.Context, webhookID string, since time.Time) (bool, error) {
	var one int
	err := s.pool.QueryRow(ctx, `INSERT INTO webhook_reports (webhook_id, failing_since) VALUES ($1, $2)
		ON CONFLICT (webhook_id) DO UPDATE SET failing_since = excluded.failing_since
			WHERE webhook_reports.failing_since <> excluded.failing_since
		RETURNING 1`, webhookID, since.Truncate(time.Microsecond)).Scan(&one)
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case errors.As(err, &pe) && pe.Code == "23503":
		return false, nil // the webhook was deleted
	case err != nil:
		return false, pgErr("marking failing report", err)
	}
	return true, nil
}

// ClearFailingReported deletes the webhook's report row, if any.
func (s *Store) ClearFailingReported(ctx context.Context, webhookID string) (time.Time, error) {
	var since time.Time
	err := s.pool.QueryRow(ctx, `DELETE FROM webhook_reports WHERE webhook_id = $1 RETURNING failing_since`, webhookID).Scan(&since)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, pgErr("clearing failing report", err)
	}
	return since, nil
}
