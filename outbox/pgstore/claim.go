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

// claimPage is how many due candidates a claim statement reads in due
// order at most: every candidate is a heap fetch, and a claim mostly
// refills the few slots its finished attempts freed. A page taken whole
// is followed by another.
const claimPage = 32

// asyncCommit makes the statements of a batch (an implicit transaction)
// commit without waiting for the WAL flush. It is the batch's first
// statement, so it costs no round trip. Leases and attempt records need
// no fsync: lost in a crash, a lease only makes its delivery claimable
// again, and a lost attempt record makes the delivery be attempted again
// (at least once, as with the embedded store).
//
// It also keeps the planner on the indexes. A queue's statistics lag far
// behind it: right after a burst of ingest, the planner estimates a few
// due rows among thousands and reads every due row through a bitmap scan
// to sort them, where walking deliveries_due in order stops after a page
// (EXPLAIN ANALYZE with a 5,000 backlog: 4,773 rows read to claim 8).
// Every statement of these batches is a walk of an index or a join by
// primary key, so ruling out sequential and bitmap scans and hash and
// merge joins never makes a plan worse, and the generic plans of the
// prepared statements stay good: custom plans cost more to plan than to
// run (8.5 ms of planning for 1.4 ms of execution mid-drain of 100,000,
// the planner probing the due index's ends through dead entries).
const asyncCommit = `SELECT set_config('synchronous_commit', 'off', true),
	set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
	set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)`

// claimCandidates are the deliveries a claim considers, read without
// locks: locking a page of a backlog to lease the few a webhook has room
// for wrote a row lock per candidate. The first part walks deliveries_due
// in due order, which stops after a page. Only when that page is full, the
// second takes, for every other webhook with room left, its first due
// deliveries through deliveries_due_by_webhook, a probe per webhook: a
// backlog behind one slow endpoint cannot hide the others' due deliveries,
// and that costs no second round trip.
const claimCandidates = `page AS (
		SELECT id, webhook_id, next_attempt_at FROM deliveries
		WHERE status = 'pending' AND next_attempt_at <= $1
			AND (lease_until IS NULL OR lease_until < clock_timestamp() OR lease_owner = $2)
			AND id <> ALL($3) AND webhook_id <> ALL($4)
		ORDER BY next_attempt_at
		LIMIT $5
	), cand AS (
		SELECT * FROM page
		UNION ALL
		SELECT c.id, c.webhook_id, c.next_attempt_at FROM webhooks w CROSS JOIN LATERAL (
			SELECT id, webhook_id, next_attempt_at FROM deliveries
			WHERE webhook_id = w.id AND status = 'pending' AND next_attempt_at <= $1
				AND (lease_until IS NULL OR lease_until < clock_timestamp() OR lease_owner = $2)
				AND id <> ALL($3)
			ORDER BY next_attempt_at
			LIMIT $8) c
		WHERE (SELECT count(*) FROM page) = $5
			AND w.id <> ALL($4) AND w.id NOT IN (SELECT webhook_id FROM page)
	)`

// claimSQL keeps per webhook only as many candidates as the request
// leaves room for, locks those with FOR UPDATE SKIP LOCKED (so sidecars
// claiming at once split them instead of waiting on each other; the lock
// re-checks each row, so one another sidecar leased meanwhile is passed
// over), leases them and returns them with their webhooks and event
// bodies: a claim is one statement, not a query per delivery. The rows
// to lock are looked up one id at a time, and their status is checked in
// a form that does not imply the partial indexes' predicate, so that the
// primary key is the only index the planner can use: otherwise it walked
// the whole due index for each id picked (EXPLAIN ANALYZE mid-drain: 2,498
// rows and 11 ms to lease 8; 1,000 rows per id beside a million finished).
var claimSQL = `WITH ` + claimCandidates + `, ranked AS (
		SELECT c.id, c.next_attempt_at,
			coalesce(b.n, 0) + row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at, c.id) AS slot
		FROM cand c LEFT JOIN unnest($6::text[], $7::int4[]) AS b(webhook_id, n) ON b.webhook_id = c.webhook_id
	), pick AS (
		SELECT id FROM ranked WHERE slot <= $8 ORDER BY next_attempt_at, id LIMIT $9
	), locked AS (
		SELECT l.id FROM pick CROSS JOIN LATERAL (
			SELECT x.id FROM deliveries x
			WHERE x.id = pick.id AND coalesce(x.status, '') = 'pending' AND x.next_attempt_at <= $1
				AND (x.lease_until IS NULL OR x.lease_until < clock_timestamp() OR x.lease_owner = $2)
			FOR UPDATE SKIP LOCKED) l
	), d AS (
		UPDATE deliveries SET lease_owner = $2,
			lease_until = clock_timestamp() + $10 * interval '1 microsecond'
		WHERE deliveries.id = ANY (ARRAY(SELECT id FROM locked))
		RETURNING deliveries.*
	)
	SELECT (SELECT count(*) FROM page), ` + pgDeliveryCols + `, ` + pgWebhookColsW + `, ` + pgEventCols + `
	FROM d JOIN webhooks w ON w.id = d.webhook_id
		LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()`

// nextDueSQL says when the next pending delivery falls due.
const nextDueSQL = `SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending' AND next_attempt_at > $1`

// leaseEndSQL says how long until the first lease of a due delivery runs
// out; zero or less when one already has, since the claim before it ran
// (the sidecar wakes at a lease's end, so the claim it makes then can run
// a moment before that end). Asked only by an idle sidecar, whose due
// deliveries are then all leased by others (and few); lease_until has no
// index, so that a lease is a HOT update that writes no index entry.
const leaseEndSQL = `SELECT extract(epoch FROM min(lease_until) - clock_timestamp())::float8 FROM (
		SELECT lease_until FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1
			AND lease_until IS NOT NULL
		ORDER BY next_attempt_at LIMIT 1000) x`

// leaseEndSlack is how long after a lease's end an idle sidecar claims:
// enough that the database's clock has passed it too, and a floor that
// keeps a lease just run out from turning into a busy loop.
const leaseEndSlack = 5 * time.Millisecond

// Claim leases due deliveries to this sidecar in one round trip: the
// claim and the next due time in one pipelined batch. The store leases at
// most each webhook's cap (its own, or the request's MaxInFlight) less
// what it has in flight; the
// request admits every job in the end, and a job it refuses is released
// at once.
func (s *Store) Claim(ctx context.Context, req *outbox.ClaimRequest) ([]*outbox.Job, time.Time, error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	now, limit := req.Now, req.Limit
	fail := func(what string, err error) ([]*outbox.Job, time.Time, error) {
		// The leases of a failed batch were not committed, or may have
		// been: either way they are this sidecar's and not held, so the
		// next claim takes them again.
		return nil, time.Time{}, pgErr(what, err)
	}
	// Never nil: pgx sends a nil slice as NULL, and "<> ALL (NULL)" is
	// never true.
	exclude := s.heldIDs()
	var jobs, refused []*outbox.Job
	var next time.Time
	for {
		// The statement ranks each webhook's candidates after what it has
		// in flight and keeps the slots up to one bound; a webhook with
		// its own cap is shifted by its difference from that bound.
		bound := req.MaxInFlight
		for _, c := range req.MaxInFlightOf {
			bound = max(bound, c)
		}
		hooks, busy, full := []string{}, []int32{}, []string{}
		shift := func(hook string) {
			n, c := req.InFlight[hook], req.MaxInFlight
			if own := req.MaxInFlightOf[hook]; own > 0 {
				c = own
			}
			hooks, busy = append(hooks, hook), append(busy, int32(n+bound-c))
			if n >= c {
				full = append(full, hook)
			}
		}
		for hook := range req.InFlight {
			shift(hook)
		}
		for hook := range req.MaxInFlightOf {
			if _, done := req.InFlight[hook]; !done {
				shift(hook)
			}
		}
		page := min(limit-len(jobs), claimPage)
		b := &pgx.Batch{}
		b.Queue(asyncCommit)
		b.Queue(claimSQL, now, s.owner, exclude, full, page, hooks, busy, bound, limit-len(jobs), micros(s.opts.Lease))
		b.Queue(nextDueSQL, now)
		got, scanned, due, err := s.claimBatch(ctx, b)
		if err != nil {
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
		// A page taken whole may have more due behind it.
		if scanned < int64(page) || len(got) < int(scanned) || len(jobs) >= limit {
			break
		}
	}
	if len(jobs) == 0 && len(req.InFlight) == 0 {
		// Idle: wake when a dead sidecar's lease runs out.
		var left *float64
		if err := s.pool.QueryRow(ctx, leaseEndSQL, now).Scan(&left); err != nil {
			return fail("finding the next lease to run out", err)
		}
		if left != nil {
			wait := max(time.Duration(*left*float64(time.Second)), 0) + leaseEndSlack
			if t := time.Now().Add(wait); next.IsZero() || t.Before(next) {
				next = t
			}
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
	switch {
	case len(jobs) >= limit:
		next = now
	case next.IsZero() || next.After(now.Add(bound)):
		next = now.Add(bound)
	}
	return jobs, next, nil
}

// claimBatch runs a claim batch and reads its jobs, how many candidates
// it read in due order, and the next due time (zero when nothing is
// pending ahead).
func (s *Store) claimBatch(ctx context.Context, b *pgx.Batch) ([]*outbox.Job, int64, time.Time, error) {
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	fail := func(err error) ([]*outbox.Job, int64, time.Time, error) { return nil, 0, time.Time{}, err }
	if _, err := br.Exec(); err != nil {
		return fail(err)
	}
	rows, err := br.Query()
	if err != nil {
		return fail(err)
	}
	var jobs []*outbox.Job
	var scanned int64
	for rows.Next() {
		var ds deliveryScan
		var ws webhookScan
		var es eventScan
		if err := rows.Scan(slices.Concat([]any{&scanned}, ds.targets(), ws.targets(), es.targets())...); err != nil {
			rows.Close()
			return fail(err)
		}
		d, since, err := ds.result()
		if err != nil {
			rows.Close()
			return fail(err)
		}
		jobs = append(jobs, &outbox.Job{Delivery: d, Event: es.result(), Webhook: ws.result(), Due: timeOrZero(d.NextAttemptAt),
			PendingSince: since, EventExpires: timeOrZero(es.expiresAt)})
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	var due *time.Time
	if err := br.QueryRow().Scan(&due); err != nil {
		return fail(err)
	}
	if err := br.Close(); err != nil {
		return fail(err)
	}
	return jobs, scanned, timeOrZero(due), nil
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
