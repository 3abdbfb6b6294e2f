package pgstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
)

func (s *Store) hold(ids []string) {
	s.heldMu.Lock()
	for _, id := range ids {
		s.held[id] = true
	}
	s.heldMu.Unlock()
}

func (s *Store) unhold(id string) {
	s.heldMu.Lock()
	delete(s.held, id)
	s.heldMu.Unlock()
}

func (s *Store) heldIDs() []string {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	ids := make([]string, 0, len(s.held))
	for id := range s.held {
		ids = append(ids, id)
	}
	return ids
}

// claimPage is how many candidates one scan of Claim locks at least.
const claimPage = 32

// Claim leases due deliveries to this sidecar. Candidates are locked with
// FOR UPDATE SKIP LOCKED, so sidecars claiming at once split them instead
// of waiting on each other, and are leased only once the request admits
// them. A webhook it refuses is left out of the following scans, so a
// backlog behind one slow endpoint cannot hide the others' due deliveries.
func (s *Store) Claim(ctx context.Context, req *outbox.ClaimRequest) ([]*outbox.Job, time.Time, error) {
	now, limit := req.Now, req.Limit
	type pick struct{ id, webhookID string }
	var picked []pick
	// Nothing is leased unless the transaction commits.
	fail := func(what string, err error) ([]*outbox.Job, time.Time, error) {
		return nil, time.Time{}, pgErr(what, err)
	}

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fail("claiming deliveries", err)
	}
	defer tx.Rollback(context.Background())
	// A lease lost in a crash only makes the delivery claimable again.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fail("claiming deliveries", err)
	}

	// Never nil: pgx sends a nil slice as NULL, and "<> ALL (NULL)" is
	// never true.
	exclude := s.heldIDs()
	refused := []string{}
	refusedSet := map[string]bool{}
	page := max(limit, claimPage)
	for len(picked) < limit {
		rows, err := tx.Query(ctx, `SELECT id, webhook_id FROM deliveries
			WHERE status = 'pending' AND next_attempt_at <= $1
				AND (lease_until IS NULL OR lease_until < clock_timestamp())
				AND id <> ALL($2) AND webhook_id <> ALL($3)
			ORDER BY next_attempt_at
			LIMIT $4
			FOR UPDATE SKIP LOCKED`, now, exclude, refused, page)
		if err != nil {
			return fail("claiming deliveries", err)
		}
		var n int
		var id, hook string
		_, err = pgx.ForEachRow(rows, []any{&id, &hook}, func() error {
			n++
			if len(picked) >= limit || refusedSet[hook] {
				return nil
			}
			if req.Admit(hook) {
				picked = append(picked, pick{id, hook})
				exclude = append(exclude, id)
			} else {
				refusedSet[hook] = true
				refused = append(refused, hook)
			}
			return nil
		})
		if err != nil {
			return fail("claiming deliveries", err)
		}
		if n < page {
			break
		}
	}

	var jobs []*outbox.Job
	if len(picked) > 0 {
		ids := make([]string, len(picked))
		for i, p := range picked {
			ids[i] = p.id
		}
		rows, err := tx.Query(ctx, `WITH d AS (
				UPDATE deliveries SET lease_owner = $2,
					lease_until = clock_timestamp() + $3 * interval '1 microsecond'
				WHERE id = ANY($1)
				RETURNING *)
			SELECT `+pgDeliveryCols+`, `+pgWebhookColsW+`, `+pgEventCols+`
			FROM d JOIN webhooks w ON w.id = d.webhook_id
				LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()`,
			ids, s.owner, micros(s.opts.Lease))
		if err != nil {
			return fail("leasing deliveries", err)
		}
		byID := make(map[string]*outbox.Job, len(ids))
		for rows.Next() {
			var ds deliveryScan
			var ws webhookScan
			var es eventScan
			if err := rows.Scan(slices.Concat(ds.targets(), ws.targets(), es.targets())...); err != nil {
				rows.Close()
				return fail("reading claimed deliveries", err)
			}
			d, since, err := ds.result()
			if err != nil {
				rows.Close()
				return fail("reading claimed deliveries", err)
			}
			byID[d.ID] = &outbox.Job{Delivery: d, Event: es.result(), Webhook: ws.result(), Due: timeOrZero(d.NextAttemptAt), PendingSince: since,
				EventExpires: timeOrZero(es.expiresAt)}
		}
		if err := rows.Err(); err != nil {
			return fail("leasing deliveries", err)
		}
		jobs = make([]*outbox.Job, len(picked))
		for i, p := range picked {
			if j := byID[p.id]; j != nil {
				jobs[i] = j
			} else {
				// Cannot happen while the row is locked; be safe anyway.
				jobs[i] = &outbox.Job{Delivery: &outbox.Delivery{ID: p.id, WebhookID: p.webhookID}, Gone: true}
			}
		}
	}

	next, err := s.nextDue(ctx, tx, now)
	if err != nil {
		return fail("finding the next due delivery", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("committing claims", err)
	}
	held := make([]string, 0, len(jobs))
	for _, j := range jobs {
		if !j.Gone {
			held = append(held, j.Delivery.ID)
		}
	}
	s.hold(held)
	if len(jobs) >= limit {
		next = now
	}
	return jobs, next, nil
}

// nextDue says when Claim may next find work: the next pending delivery
// falling due, the next lease running out, and at the latest PollInterval
// from now, since other sidecars queue work this one is not told about.
func (s *Store) nextDue(ctx context.Context, tx pgx.Tx, now time.Time) (time.Time, error) {
	var due *time.Time
	var leaseLeft *float64
	err := tx.QueryRow(ctx, `SELECT
			(SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending' AND next_attempt_at > $1),
			(SELECT extract(epoch FROM min(lease_until) - clock_timestamp())::float8 FROM deliveries
				WHERE lease_until > clock_timestamp())`, now).Scan(&due, &leaseLeft)
	if err != nil {
		return time.Time{}, err
	}
	next := now.Add(s.opts.PollInterval)
	if due != nil && due.Before(next) {
		next = *due
	}
	if leaseLeft != nil {
		if t := now.Add(time.Duration(*leaseLeft * float64(time.Second))); t.Before(next) {
			next = t
		}
	}
	return next, nil
}

// webhookScan holds the scan targets of pgWebhookCols when a join may
// find no webhook.
type webhookScan struct {
	id, appID, name, url    *string
	events                  []string
	enabled                 *bool
	secret, prev            *string
	prevUntil, failingSince *time.Time
	reason                  *string
	created, updated        *time.Time
	options                 []byte
}

func (x *webhookScan) targets() []any {
	return []any{&x.id, &x.appID, &x.name, &x.url, &x.events, &x.enabled, &x.secret, &x.prev,
		&x.prevUntil, &x.failingSince, &x.reason, &x.created, &x.updated, &x.options}
}

func (x *webhookScan) result() *outbox.Webhook {
	if x.id == nil {
		return nil
	}
	w := &outbox.Webhook{
		ID: *x.id, AppID: *x.appID, Name: *x.name, URL: *x.url, Events: x.events, Enabled: *x.enabled,
		Secret: *x.secret, PreviousSecret: *x.prev, PreviousSecretUntil: timeOrZero(x.prevUntil),
		FailingSince: timeOrZero(x.failingSince), DisabledReason: *x.reason,
		CreatedAt: timeOrZero(x.created), UpdatedAt: timeOrZero(x.updated),
	}
	// A damaged options document leaves the app's defaults in force.
	_ = decodeOptions(x.options, w)
	return w
}

// Save writes the delivery back after an attempt and ends the lease,
// provided this sidecar still holds it.
func (s *Store) Save(ctx context.Context, j *outbox.Job) error {
	d := j.Delivery
	defer s.unhold(d.ID)
	attempts, err := attemptsJSON(d.Attempts)
	if err != nil {
		return fmt.Errorf("encoding delivery %s: %w", d.ID, err)
	}
	var next time.Time
	if d.NextAttemptAt != nil {
		next = *d.NextAttemptAt
	}
	// An attempt's record need not wait for the WAL flush: lost in a
	// crash, the delivery is attempted again (at least once, as with the
	// embedded store), so each save does not pay an fsync.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	// A finished delivery leaves the pending set and starts its retention;
	// a pending one keeps the pending_since it had.
	tag, err := tx.Exec(ctx, `UPDATE deliveries SET status = $3, next_attempt_at = $4, round = $5,
			resend = $6, attempts = $7::jsonb, lease_owner = NULL, lease_until = NULL,
			pending_since = CASE WHEN $3 = 'pending' THEN pending_since END,
			expires_at = CASE WHEN $3 <> 'pending' THEN now() + $8 * interval '1 microsecond' END
		WHERE id = $1 AND lease_owner = $2`,
		d.ID, s.owner, string(d.Status), nullTime(next), int32(d.Round), d.Resend, attempts,
		micros(time.Duration(s.history.Load())))
	if err == nil && tag.RowsAffected() == 1 && j.Event != nil && !j.EventExpires.IsZero() {
		// The delivery is to outlive its event: keep the event as long as
		// one ingested at the next attempt.
		now, history := time.Now(), time.Duration(s.history.Load())
		if until := j.KeepEventUntil(now, history); j.EventExpires.Before(until) {
			_, err = tx.Exec(ctx, `UPDATE events SET expires_at = $2 WHERE id = $1 AND expires_at < $2`,
				j.Event.ID, until.Add(time.Duration(s.events.Load())-history))
		}
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1)`, d.ID).Scan(&exists); err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	if !exists {
		// Its webhook was deleted while the attempt ran; the history went
		// with it, as in the embedded store.
		return nil
	}
	return fmt.Errorf("saving delivery %s: %w", d.ID, errLeaseLost)
}

// Release ends this sidecar's lease without an attempt; the delivery is
// due again at once.
func (s *Store) Release(ctx context.Context, j *outbox.Job) error {
	defer s.unhold(j.Delivery.ID)
	if _, err := s.pool.Exec(ctx, `UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2`, j.Delivery.ID, s.owner); err != nil {
		return pgErr(fmt.Sprintf("releasing delivery %s", j.Delivery.ID), err)
	}
	return nil
}
