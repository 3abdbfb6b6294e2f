package pgstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// An idempotency key is stored to expire 24 h after the event was
// accepted, on the database's clock; a repeat a minute before that is a
// duplicate, and one at 24 h is a new event.
func TestPostgresIdempotencyKeyExpiresAfter24h(t *testing.T) {
	s := openPostgres(t, pgtest.DSN(t), Options{CleanupInterval: time.Hour})
	ctx := context.Background()
	w := storetest.CreateWebhook(t, s, "a")
	body := storetest.EventBody("a", "job_created", 1)
	dbNow := func() time.Time {
		t.Helper()
		var now time.Time
		if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			t.Fatal(err)
		}
		return now
	}
	commit := func() *outbox.Ingest {
		t.Helper()
		in := storetest.NewIngest("a", "job_created", body, "key-1", w)
		if err := s.Commit(ctx, []*outbox.Ingest{in}); err != nil {
			t.Fatal(err)
		}
		return in
	}
	expiry := func() time.Time {
		t.Helper()
		var at time.Time
		if err := s.pool.QueryRow(ctx, `SELECT expires_at FROM idempotency WHERE app_id = 'a' AND key = 'key-1'`).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	// Time passing, as the key's row sees it: its expiry comes nearer.
	advance := func(d time.Duration) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, `UPDATE idempotency SET expires_at = expires_at - $1 * interval '1 microsecond'`, micros(d)); err != nil {
			t.Fatal(err)
		}
	}

	before := dbNow()
	first := commit()
	after := dbNow()
	if at := expiry(); at.Before(before.Add(24*time.Hour)) || at.After(after.Add(24*time.Hour)) {
		t.Fatalf("the key expires at %v, want 24 h after its acceptance (between %v and %v)", at, before.Add(24*time.Hour), after.Add(24*time.Hour))
	}

	advance(24*time.Hour - time.Minute)
	if again := commit(); !again.Result.Duplicate || again.Result.ID != first.Event.ID {
		t.Fatalf("a repeat a minute before 24 h: %+v, want a duplicate of %s", again.Result, first.Event.ID)
	}
	advance(time.Minute)
	before = dbNow()
	renewed := commit()
	if renewed.Result.Duplicate || renewed.Result.ID != renewed.Event.ID {
		t.Fatalf("a repeat at 24 h: %+v, want a new event", renewed.Result)
	}
	if at := expiry(); at.Before(before.Add(24 * time.Hour)) {
		t.Fatalf("the key taken over by the new event expires at %v, want 24 h after it (%v or later)", at, before.Add(24*time.Hour))
	}
	if repeat := commit(); !repeat.Result.Duplicate || repeat.Result.ID != renewed.Event.ID {
		t.Fatalf("a repeat after the key was taken over: %+v, want a duplicate of %s", repeat.Result, renewed.Event.ID)
	}
}

// Cleanup deletes expired history, events and idempotency keys in
// statements of at most 1,000 rows until none is left, and keeps what has
// not expired. A statement-level trigger on each table records how many
// rows every DELETE statement removed, so the batches are observed in the
// database, not inferred from the code.
func TestPostgresCleanupDeletesInBatches(t *testing.T) {
	s := openPostgres(t, pgtest.DSN(t), Options{CleanupInterval: time.Hour})
	ctx := context.Background()
	w := storetest.CreateWebhook(t, s, "a")
	const expired, kept = 2500, 3
	for _, sql := range []string{
		`CREATE TABLE cleanup_statements (seq serial PRIMARY KEY, tbl text NOT NULL, deleted bigint NOT NULL)`,
		`CREATE FUNCTION count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO cleanup_statements (tbl, deleted) SELECT TG_TABLE_NAME, count(*) FROM gone;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER count_deleted AFTER DELETE ON deliveries REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deleted()`,
		`CREATE TRIGGER count_deleted AFTER DELETE ON events REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deleted()`,
		`CREATE TRIGGER count_deleted AFTER DELETE ON idempotency REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deleted()`,
	} {
		if _, err := s.pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Rows past their expiry and rows within it, in each table.
	for _, when := range []struct {
		n       int
		expires string
	}{{expired, "now() - interval '1 second'"}, {kept, "now() + interval '1 hour'"}} {
		for _, sql := range []string{
			`INSERT INTO events (id, app_id, type, received_at, body, expires_at)
				SELECT gen_random_uuid()::text, 'a', 'job_created', now(), '{}', ` + when.expires + ` FROM generate_series(1, $1)`,
			`INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at, attempts, expires_at)
				SELECT gen_random_uuid()::text, 'a', '` + w.ID + `', gen_random_uuid()::text, 'job_created', 'succeeded', now(), '[]', ` + when.expires + `
				FROM generate_series(1, $1)`,
			`INSERT INTO idempotency (app_id, key, event_id, deliveries, expires_at)
				SELECT 'a', gen_random_uuid()::text, gen_random_uuid()::text, 1, ` + when.expires + ` FROM generate_series(1, $1)`,
		} {
			if _, err := s.pool.Exec(ctx, sql, when.n); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	}

	n, err := s.deleteExpired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3*expired {
		t.Fatalf("cleanup deleted %d rows, want %d", n, 3*expired)
	}
	for _, table := range []string{"deliveries", "events", "idempotency"} {
		var left, stale int
		if err := s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE expires_at <= now()) FROM `+table).Scan(&left, &stale); err != nil {
			t.Fatal(err)
		}
		if left != kept || stale != 0 {
			t.Errorf("%s after cleanup: %d rows, %d of them expired; want the %d within their expiry", table, left, stale, kept)
		}
		rows, err := s.pool.Query(ctx, `SELECT deleted FROM cleanup_statements WHERE tbl = $1 ORDER BY seq`, table)
		if err != nil {
			t.Fatal(err)
		}
		var batches []int64
		for rows.Next() {
			var d int64
			if err := rows.Scan(&d); err != nil {
				t.Fatal(err)
			}
			batches = append(batches, d)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if want := []int64{1000, 1000, 500}; !slices.Equal(batches, want) {
			t.Errorf("%s: DELETE statements removed %v rows each, want %v", table, batches, want)
		}
	}
}
