package pgstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// maxSaveBatch bounds how many attempt records share one statement.
const maxSaveBatch = 256

// maxSaveCommits is how many save batches may be in the database at once:
// while one commits, the next fills.
const maxSaveCommits = 1

type pendingSave struct {
	job  *outbox.Job
	done chan error
}

// Save writes the delivery back after an attempt and ends the lease,
// provided this sidecar still holds it. Saves of concurrent attempts are
// group-committed: one statement and one commit for every save that
// arrived while the previous batch was written, as ingest does.
func (s *Store) Save(ctx context.Context, j *outbox.Job) error {
	p := &pendingSave{job: j, done: make(chan error, 1)}
	select {
	case s.saves <- p:
	case <-s.stop:
		s.unhold(j.Delivery.ID)
		return fmt.Errorf("saving delivery %s: %w", j.Delivery.ID, outbox.ErrClosed)
	case <-ctx.Done():
		s.unhold(j.Delivery.ID)
		return ctx.Err()
	}
	// The batch answers every save it took, even while the store closes.
	return <-p.done
}

func (s *Store) saveLoop() {
	defer close(s.savesDone)
	outbox.GroupCommit(s.stop, s.saves, maxSaveBatch, maxSaveCommits, s.commitSaves, func(p *pendingSave) {
		s.unhold(p.job.Delivery.ID)
		p.done <- fmt.Errorf("saving delivery %s: %w", p.job.Delivery.ID, outbox.ErrClosed)
	})
}

// commitSaves writes a batch of saves and answers each. It is not
// cancelled by Close: a batch taken is written whole or reported as
// failed.
func (s *Store) commitSaves(batch []*pendingSave) {
	errs := s.saveBatch(context.Background(), batch)
	for i, p := range batch {
		s.unhold(p.job.Delivery.ID)
		p.done <- errs[i]
	}
}

// saveBatch writes a batch of attempt records in one implicit transaction
// (one round trip) and returns each save's error.
func (s *Store) saveBatch(ctx context.Context, batch []*pendingSave) []error {
	errs := make([]error, len(batch))
	fail := func(err error) []error {
		for i, p := range batch {
			errs[i] = pgErr(fmt.Sprintf("saving delivery %s", p.job.Delivery.ID), err)
		}
		return errs
	}
	n := len(batch)
	var (
		ids, statuses, attempts = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		nexts                   = make([]pgtype.Timestamptz, 0, n)
		rounds                  = make([]int32, 0, n)
		resends                 = make([]bool, 0, n)
		keepIDs                 []string
		keepUntil               []time.Time
		retry                   bool
	)
	now, history, events := time.Now(), time.Duration(s.history.Load()), time.Duration(s.events.Load())
	for i, p := range batch {
		d := p.job.Delivery
		a, err := attemptsJSON(d.Attempts)
		if err != nil {
			errs[i] = fmt.Errorf("encoding delivery %s: %w", d.ID, err)
			continue
		}
		ids, statuses, attempts = append(ids, d.ID), append(statuses, string(d.Status)), append(attempts, a)
		nexts = append(nexts, nullTime(timeOrZero(d.NextAttemptAt)))
		rounds, resends = append(rounds, int32(d.Round)), append(resends, d.Resend)
		if d.Status == outbox.StatusPending {
			retry = true
		}
		// A delivery that is to outlive its event keeps the event as long
		// as one ingested at its next attempt.
		if j := p.job; j.Event != nil && !j.EventExpires.IsZero() {
			if until := j.KeepEventUntil(now, history); j.EventExpires.Before(until) {
				keepIDs, keepUntil = append(keepIDs, j.Event.ID), append(keepUntil, until.Add(events-history))
			}
		}
	}
	if len(ids) == 0 {
		return errs
	}
	b := &pgx.Batch{}
	b.Queue(asyncCommit)
	// A finished delivery leaves the pending set and starts its retention;
	// a pending one keeps the pending_since it had.
	b.Queue(`UPDATE deliveries d SET status = u.status, next_attempt_at = u.next_attempt_at, round = u.round,
			resend = u.resend, attempts = u.attempts::jsonb, lease_owner = NULL, lease_until = NULL,
			pending_since = CASE WHEN u.status = 'pending' THEN d.pending_since END,
			expires_at = CASE WHEN u.status <> 'pending' THEN now() + $7 * interval '1 microsecond' END
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int4[], $5::bool[], $6::text[])
			AS u(id, status, next_attempt_at, round, resend, attempts)
		WHERE d.id = u.id AND d.lease_owner = $8
		RETURNING d.id`,
		ids, statuses, nexts, rounds, resends, attempts, micros(history), s.owner)
	if len(keepIDs) > 0 {
		b.Queue(`UPDATE events e SET expires_at = u.until
			FROM unnest($1::text[], $2::timestamptz[]) AS u(id, until)
			WHERE e.id = u.id AND e.expires_at < u.until`, keepIDs, keepUntil)
	}
	if retry {
		// A retry may fall due before an idle sidecar's next look.
		b.Queue(`SELECT pg_notify($1, 'work')`, s.channel)
	}
	br := s.pool.SendBatch(ctx, b)
	saved := map[string]bool{}
	err := func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var id string
		_, err = pgx.ForEachRow(rows, []any{&id}, func() error { saved[id] = true; return nil })
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if len(saved) == len(ids) {
		return errs
	}
	var missing []string
	for _, id := range ids {
		if !saved[id] {
			missing = append(missing, id)
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM deliveries WHERE id = ANY($1)`, missing)
	if err != nil {
		return fail(err)
	}
	exists, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fail(err)
	}
	for i, p := range batch {
		if errs[i] == nil && !saved[p.job.Delivery.ID] && slices.Contains(exists, p.job.Delivery.ID) {
			// A delivery that no longer exists had its webhook deleted
			// while the attempt ran; its history went with it, as in the
			// embedded store. One that exists was taken over.
			errs[i] = fmt.Errorf("saving delivery %s: %w", p.job.Delivery.ID, errLeaseLost)
		}
	}
	return errs
}
