package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Commit writes the whole batch in one transaction, so the batch shares
// one fsync at COMMIT (with synchronous_commit on, the default). Repeated
// idempotency keys are found inside the transaction: a key being committed
// by another sidecar makes this one wait for it, then see it.
func (s *Store) Commit(ctx context.Context, batch []*outbox.Ingest) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return pgErr("starting the ingest transaction", err)
	}
	defer tx.Rollback(context.Background())

	if err := s.checkIdempotency(ctx, tx, batch); err != nil {
		return err
	}

	var (
		evID, evApp, evType []string
		evTrace, evState    []string
		evAt                []time.Time
		evBody              [][]byte

		ds deliveryColumns
	)
	for _, in := range batch {
		if in.Result.Duplicate {
			continue
		}
		ev := in.Event
		body := []byte(ev.Body)
		if body == nil {
			body = []byte{}
		}
		evID, evApp, evType = append(evID, ev.ID), append(evApp, ev.AppID), append(evType, ev.Type)
		evAt, evBody = append(evAt, ev.ReceivedAt), append(evBody, body)
		evTrace, evState = append(evTrace, ev.TraceParent), append(evState, ev.TraceState)
		for _, d := range in.Deliveries {
			if err := ds.add(d); err != nil {
				return err
			}
		}
	}
	if len(evID) > 0 {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO events (id, app_id, type, received_at, body, expires_at, trace_parent, trace_state)
			SELECT u.id, u.app_id, u.type, u.received_at, u.body, now() + $6 * interval '1 microsecond',
				u.trace_parent, u.trace_state
			FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[], $7::text[], $8::text[])
				AS u(id, app_id, type, received_at, body, trace_parent, trace_state)`,
			evID, evApp, evType, evAt, evBody, micros(time.Duration(s.events.Load())), evTrace, evState)
		if len(ds.id) > 0 {
			// A delivery whose webhook was deleted since the ingest listed
			// it is dropped, as the embedded store drops it when claimed.
			// The KEY SHARE lock makes a concurrent delete wait for this
			// commit (and cascade to these rows) instead of racing it.
			b.Queue(`INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at,
					next_attempt_at, round, resend, pending_since, attempts, expires_at)
				SELECT u.id, u.app_id, u.webhook_id, u.event_id, u.event, u.status, u.created_at,
					u.next_attempt_at, u.round, u.resend,
					CASE WHEN u.status = 'pending' THEN u.created_at END,
					u.attempts::jsonb,
					CASE WHEN u.status <> 'pending' THEN now() + $12 * interval '1 microsecond' END
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
					$7::timestamptz[], $8::timestamptz[], $9::int4[], $10::bool[], $11::text[])
					AS u(id, app_id, webhook_id, event_id, event, status, created_at,
						next_attempt_at, round, resend, attempts)
				WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = u.webhook_id FOR KEY SHARE)`,
				ds.id, ds.app, ds.hook, ds.event, ds.typ, ds.status, ds.created, ds.next, ds.round, ds.resend, ds.attempts,
				micros(time.Duration(s.history.Load())))
			// Wakes idle sidecars when the commit lands.
			b.Queue(`SELECT pg_notify($1, 'work')`, s.channel)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return pgErr("writing events", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return pgErr("committing events", err)
	}
	return nil
}

// checkIdempotency claims the batch's idempotency keys and marks the
// ingests whose key is taken as duplicates. The statements run in batch
// order, so a key repeated within the batch is a duplicate of its first
// use, as in the embedded store.
func (s *Store) checkIdempotency(ctx context.Context, tx pgx.Tx, batch []*outbox.Ingest) error {
	for _, in := range batch {
		in.Result = outbox.IngestResult{ID: in.Event.ID, Deliveries: len(in.Deliveries)}
	}
	var keyed []*outbox.Ingest
	b := &pgx.Batch{}
	for _, in := range batch {
		if in.IdempotencyKey == "" {
			continue
		}
		keyed = append(keyed, in)
		// An expired key still in the table (cleanup runs every minute)
		// counts as absent: the new event takes it over.
		b.Queue(`INSERT INTO idempotency (app_id, key, event_id, deliveries, expires_at, body_hash)
			VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond', $6)
			ON CONFLICT (app_id, key) DO UPDATE
				SET event_id = excluded.event_id, deliveries = excluded.deliveries, expires_at = excluded.expires_at,
					body_hash = excluded.body_hash
				WHERE idempotency.expires_at <= now()
			RETURNING event_id`,
			in.Event.AppID, in.IdempotencyKey, in.Event.ID, len(in.Deliveries), micros(outbox.IdempotencyWindow), in.BodyHash)
	}
	if len(keyed) == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, b)
	var taken []*outbox.Ingest
	for _, in := range keyed {
		var id string
		err := br.QueryRow().Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			taken = append(taken, in)
			continue
		}
		if err != nil {
			br.Close()
			return pgErr("checking idempotency keys", err)
		}
	}
	if err := br.Close(); err != nil {
		return pgErr("checking idempotency keys", err)
	}
	if len(taken) == 0 {
		return nil
	}
	// A statement of its own sees the row of a sidecar whose commit the
	// INSERT above waited for (READ COMMITTED takes a new snapshot).
	b = &pgx.Batch{}
	for _, in := range taken {
		b.Queue(`SELECT event_id, deliveries, body_hash FROM idempotency WHERE app_id = $1 AND key = $2`, in.Event.AppID, in.IdempotencyKey)
	}
	br = tx.SendBatch(ctx, b)
	defer br.Close()
	for _, in := range taken {
		var (
			res  outbox.IngestResult
			hash []byte
		)
		if err := br.QueryRow().Scan(&res.ID, &res.Deliveries, &hash); err != nil {
			return pgErr("reading idempotency key", err)
		}
		res.Duplicate, res.KeyReused = true, !in.SameBody(hash)
		in.Result = res
	}
	return nil
}

// deliveryColumns holds new deliveries column by column, for an INSERT
// from unnest.
type deliveryColumns struct {
	id, app, hook, event, typ, status, attempts []string
	created                                     []time.Time
	next                                        []pgtype.Timestamptz
	round                                       []int32
	resend                                      []bool
}

func (c *deliveryColumns) add(d *outbox.Delivery) error {
	a, err := attemptsJSON(d.Attempts)
	if err != nil {
		return fmt.Errorf("encoding delivery %s: %w", d.ID, err)
	}
	c.id, c.app, c.hook = append(c.id, d.ID), append(c.app, d.AppID), append(c.hook, d.WebhookID)
	c.event, c.typ, c.status = append(c.event, d.EventID), append(c.typ, d.Event), append(c.status, string(d.Status))
	c.attempts, c.created = append(c.attempts, a), append(c.created, d.CreatedAt)
	c.next, c.round, c.resend = append(c.next, nullTime(timeOrZero(d.NextAttemptAt))), append(c.round, int32(d.Round)), append(c.resend, d.Resend)
	return nil
}
