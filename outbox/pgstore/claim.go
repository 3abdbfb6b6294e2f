package pgstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
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

// asyncCommit makes the statements of a batch (an implicit transaction)
// commit without waiting for the WAL flush. It is the batch's first
// statement, so it costs no round trip. Leases and attempt records need
// no fsync: lost in a crash, a lease only makes its delivery claimable
// again, and a lost attempt record makes the delivery be attempted again
// (at least once, as with the embedded store).
const asyncCommit = `SELECT set_config('synchronous_commit', 'off', true)`

// claimSQL locks due candidates with FOR UPDATE SKIP LOCKED, so sidecars
// claiming at once split them instead of waiting on each other, keeps per
// webhook only as many as the request leaves room for, leases those and
// returns them with their webhooks and event bodies: a claim is one
// statement, not a query per delivery. Every row carries the number of
// candidates scanned.
var claimSQL = `WITH cand AS (
		SELECT id, webhook_id, next_attempt_at FROM deliveries
		WHERE status = 'pending' AND next_attempt_at <= $1
			AND (lease_until IS NULL OR lease_until < clock_timestamp() OR lease_owner = $2)
			AND id <> ALL($3) AND webhook_id <> ALL($4)
		ORDER BY next_attempt_at
		LIMIT $5
		FOR UPDATE SKIP LOCKED
	), ranked AS (
		SELECT c.id, c.next_attempt_at,
			coalesce(b.n, 0) + row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at, c.id) AS slot
		FROM cand c LEFT JOIN unnest($6::text[], $7::int4[]) AS b(webhook_id, n) ON b.webhook_id = c.webhook_id
	), pick AS (
		SELECT id FROM ranked WHERE slot <= $8 ORDER BY next_attempt_at, id LIMIT $9
	), d AS (
		UPDATE deliveries SET lease_owner = $2,
			lease_until = clock_timestamp() + $10 * interval '1 microsecond'
		FROM pick WHERE deliveries.id = pick.id
		RETURNING deliveries.*
	)
	SELECT (SELECT count(*) FROM cand), ` + pgDeliveryCols + `, ` + pgWebhookColsW + `, ` + pgEventCols + `
	FROM d JOIN webhooks w ON w.id = d.webhook_id
		LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()`

// nextDueSQL says when Claim may next find work: the next pending
// delivery falling due and the next lease running out.
const nextDueSQL = `SELECT
		(SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending' AND next_attempt_at > $1),
		(SELECT extract(epoch FROM min(lease_until) - clock_timestamp())::float8 FROM deliveries
			WHERE lease_until > clock_timestamp())`

// Claim leases due deliveries to this sidecar. One scan (one round trip:
// the claim and the next due time in one pipelined batch) is the common
// case. When a scan's candidates filled its page and some webhook ran out
// of room, that webhook is left out of a further scan, so a backlog behind
// one slow endpoint cannot hide the others' due deliveries. The request
// admits every job in the end; the store leases at most the request's
// MaxInFlight less what is in flight per webhook, and releases at once any
// job Admit refuses.
func (s *Store) Claim(ctx context.Context, req *outbox.ClaimRequest) ([]*outbox.Job, time.Time, error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	now, limit := req.Now, req.Limit
	fail := func(what string, err error) ([]*outbox.Job, time.Time, error) {
		return nil, time.Time{}, pgErr(what, err)
	}
	// Never nil: pgx sends a nil slice as NULL, and "<> ALL (NULL)" is
	// never true.
	exclude := s.heldIDs()
	full := []string{}
	for hook, n := range req.InFlight {
		if n >= req.MaxInFlight {
			full = append(full, hook)
		}
	}
	var jobs, refused []*outbox.Job
	var next time.Time
	page := max(limit, claimPage)
	for len(jobs) < limit {
		hooks, busy := []string{}, []int32{}
		for hook, n := range req.InFlight {
			hooks, busy = append(hooks, hook), append(busy, int32(n))
		}
		b := &pgx.Batch{}
		b.Queue(asyncCommit)
		b.Queue(claimSQL, now, s.owner, exclude, full, page, hooks, busy, req.MaxInFlight, limit-len(jobs), micros(s.opts.Lease))
		b.Queue(nextDueSQL, now)
		got, scanned, due, err := s.claimBatch(ctx, b)
		if err != nil {
			// The leases of this scan were not committed, or may have
			// been: either way, they are this sidecar's and not held, so
			// the next claim takes them again.
			return fail("claiming deliveries", err)
		}
		next = due
		slices.SortFunc(got, func(a, b *outbox.Job) int { return a.Due.Compare(b.Due) })
		for _, j := range got {
			exclude = append(exclude, j.Delivery.ID)
			if req.Admit(j.Delivery.WebhookID) {
				jobs = append(jobs, j)
			} else {
				refused = append(refused, j)
			}
		}
		if scanned < int64(page) {
			break
		}
		grew := false
		for hook, n := range req.InFlight {
			if n >= req.MaxInFlight && !slices.Contains(full, hook) {
				full, grew = append(full, hook), true
			}
		}
		if !grew && len(got) == 0 {
			break
		}
	}
	if len(refused) > 0 {
		ids := make([]string, len(refused))
		for i, j := range refused {
			ids[i] = j.Delivery.ID
		}
		if _, err := s.pool.Exec(ctx, `UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
			WHERE id = ANY($1) AND lease_owner = $2`, ids, s.owner); err != nil {
			// Not held: the next claim takes them again.
			s.opts.Logger.Warn("releasing refused claims", zap.Error(err))
		}
	}
	held := make([]string, len(jobs))
	for i, j := range jobs {
		held[i] = j.Delivery.ID
	}
	s.hold(held)
	bound := s.opts.PollInterval
	if s.listening.Load() {
		// Other sidecars' new work is announced; the poll is a safety net.
		bound = listeningPoll
	}
	if len(jobs) >= limit || next.IsZero() || next.After(now.Add(bound)) {
		next = now.Add(bound)
	}
	if len(jobs) >= limit {
		next = now
	}
	return jobs, next, nil
}

// claimBatch runs a claim batch and reads its jobs, how many candidates
// it scanned, and the next due time (zero when nothing is pending ahead).
func (s *Store) claimBatch(ctx context.Context, b *pgx.Batch) ([]*outbox.Job, int64, time.Time, error) {
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, 0, time.Time{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	var jobs []*outbox.Job
	var scanned int64
	for rows.Next() {
		var ds deliveryScan
		var ws webhookScan
		var es eventScan
		if err := rows.Scan(slices.Concat([]any{&scanned}, ds.targets(), ws.targets(), es.targets())...); err != nil {
			rows.Close()
			return nil, 0, time.Time{}, err
		}
		d, since, err := ds.result()
		if err != nil {
			rows.Close()
			return nil, 0, time.Time{}, err
		}
		jobs = append(jobs, &outbox.Job{Delivery: d, Event: es.result(), Webhook: ws.result(), Due: timeOrZero(d.NextAttemptAt),
			PendingSince: since, EventExpires: timeOrZero(es.expiresAt)})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, time.Time{}, err
	}
	var due *time.Time
	var leaseLeft *float64
	if err := br.QueryRow().Scan(&due, &leaseLeft); err != nil {
		return nil, 0, time.Time{}, err
	}
	if err := br.Close(); err != nil {
		return nil, 0, time.Time{}, err
	}
	var next time.Time
	if due != nil {
		next = *due
	}
	if leaseLeft != nil {
		if t := time.Now().Add(time.Duration(*leaseLeft * float64(time.Second))); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return jobs, scanned, next, nil
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
}

func (x *webhookScan) targets() []any {
	return []any{&x.id, &x.appID, &x.name, &x.url, &x.events, &x.enabled, &x.secret, &x.prev,
		&x.prevUntil, &x.failingSince, &x.reason, &x.created, &x.updated}
}

func (x *webhookScan) result() *outbox.Webhook {
	if x.id == nil {
		return nil
	}
	return &outbox.Webhook{
		ID: *x.id, AppID: *x.appID, Name: *x.name, URL: *x.url, Events: x.events, Enabled: *x.enabled,
		Secret: *x.secret, PreviousSecret: *x.prev, PreviousSecretUntil: timeOrZero(x.prevUntil),
		FailingSince: timeOrZero(x.failingSince), DisabledReason: *x.reason,
		CreatedAt: timeOrZero(x.created), UpdatedAt: timeOrZero(x.updated),
	}
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
