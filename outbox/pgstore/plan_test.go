package pgstore

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// The claim, the next-due query and the save read a few index pages, not
// the history: with 1,000,000 finished deliveries beside 1,000 due ones,
// none of them scans the deliveries table, and each touches a bounded
// number of buffers.
func TestPostgresClaimPlanSkipsFinishedRows(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1,000,000 rows")
	}
	s := openPostgres(t, pgtest.DSN(t), Options{})
	ctx := context.Background()
	w := storetest.CreateWebhook(t, s, "plan")
	start := time.Now()
	for _, q := range []string{
		`INSERT INTO events (id, app_id, type, received_at, body, expires_at)
			SELECT 'e' || lpad(i::text, 8, '0'), 'plan', 'job_created', now(), '{}', now() + interval '1 day'
			FROM generate_series(1, 1001000) i`,
		`INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at, attempts, expires_at)
			SELECT 'd' || lpad(i::text, 8, '0'), 'plan', $1, 'e' || lpad(i::text, 8, '0'), 'job_created', 'succeeded',
				now() - interval '1 hour', '[{"sentAt":"2026-01-01T00:00:00Z","responseStatusCode":200,"durationMs":1}]',
				now() + interval '1 day'
			FROM generate_series(1, 1000000) i`,
		`INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at, next_attempt_at, pending_since)
			SELECT 'd' || lpad(i::text, 8, '0'), 'plan', $1, 'e' || lpad(i::text, 8, '0'), 'job_created', 'pending',
				now(), now() - interval '1 second', now()
			FROM generate_series(1000001, 1001000) i`,
		`ANALYZE deliveries`, `ANALYZE events`,
	} {
		args := []any{}
		if strings.Contains(q, "$1") {
			args = append(args, w.ID)
		}
		if _, err := s.pool.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Logf("1,001,000 deliveries written in %v", time.Since(start).Round(time.Second))

	explain := func(name, sql string, args ...any) {
		t.Helper()
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		// As in the store's batches.
		if _, err := tx.Exec(ctx, asyncCommit); err != nil {
			t.Fatal(err)
		}
		var plan []byte
		if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+sql, args...).Scan(&plan); err != nil {
			t.Fatalf("explaining %s: %v", name, err)
		}
		var text strings.Builder
		rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
		if err == nil {
			var line string
			_, _ = pgx.ForEachRow(rows, []any{&line}, func() error { text.WriteString(line + "\n"); return nil })
		}
		t.Logf("%s:\n%s", name, text.String())
		var root []struct {
			Plan map[string]any `json:"Plan"`
		}
		if err := json.Unmarshal(plan, &root); err != nil {
			t.Fatal(err)
		}
		var walk func(n map[string]any)
		buffers := 0.0
		walk = func(n map[string]any) {
			if n["Node Type"] == "Seq Scan" && n["Relation Name"] == "deliveries" {
				t.Errorf("%s scans the deliveries table:\n%s", name, text.String())
			}
			if kids, ok := n["Plans"].([]any); ok {
				for _, k := range kids {
					walk(k.(map[string]any))
				}
			}
		}
		walk(root[0].Plan)
		for _, k := range []string{"Shared Hit Blocks", "Shared Read Blocks"} {
			v, _ := root[0].Plan[k].(float64)
			buffers += v
		}
		// The whole table is tens of thousands of pages; a claim of 64
		// reads about a page per delivery and its event, and the index.
		if buffers > 2000 {
			t.Errorf("%s touched %.0f buffers, want a few hundred", name, buffers)
		}
	}
	now := time.Now()
	explain("claim of 64", claimSQL, now, s.owner, []string{}, []string{}, 128, []string{}, []int32{}, 64, 64, micros(time.Minute))
	explain("next due", nextDueSQL, now)
	explain("history page", `SELECT id FROM deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT 20`, w.ID)
	explain("stats", `SELECT count(*), min(pending_since) FROM deliveries WHERE status = 'pending'`)
}
