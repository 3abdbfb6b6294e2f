package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
)

func openPostgres(t testing.TB, dsn string, opts PostgresOptions) *PostgresStore {
	t.Helper()
	s, err := OpenPostgres(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("opening the Postgres store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgresStore runs the store behaviour suite on the fleet store.
func TestPostgresStore(t *testing.T) {
	runStoreSuite(t, func(t *testing.T) Store {
		return openPostgres(t, pgtest.DSN(t), PostgresOptions{})
	})
}

// Sidecars starting at once migrate the schema once, and a restart finds
// nothing to do.
func TestPostgresMigrationsConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenPostgres(context.Background(), dsn, PostgresOptions{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
	s := openPostgres(t, dsn, PostgresOptions{})
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	files, _ := pgMigrations.ReadDir("migrations")
	if n != len(files) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(files))
	}
}

// Two sidecars claiming from one database never hold the same delivery at
// once, and between them deliver everything exactly once.
func TestPostgresConcurrentClaims(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := openPostgres(t, dsn, PostgresOptions{})
	b := openPostgres(t, dsn, PostgresOptions{})
	ctx := context.Background()
	w := suiteHook(t, a, "a")
	const total = 400
	for i := 0; i < total; i += 100 {
		var batch []*Ingest
		for k := range 100 {
			batch = append(batch, newIngest("a", "job_created", eventBody("a", "job_created", i+k), "", w))
		}
		if err := a.Commit(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu       sync.Mutex
		inFlight = map[string]string{} // delivery -> claimer
		attempts = map[string]int{}
		byStore  = map[string]int{}
		done     atomic.Int64
	)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i, s := range []*PostgresStore{a, b, a, b} {
		store := string(rune('a' + i%2))
		name := fmt.Sprintf("claimer %d (store %s)", i, store)
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(30 * time.Second)
			for done.Load() < total && time.Now().Before(deadline) {
				jobs, _, err := s.Claim(ctx, time.Now(), 7, admitAll)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, j := range jobs {
					if other, ok := inFlight[j.Delivery.ID]; ok {
						mu.Unlock()
						errs <- fmt.Errorf("delivery %s claimed by %s while %s holds it", j.Delivery.ID, name, other)
						return
					}
					inFlight[j.Delivery.ID] = name
					attempts[j.Delivery.ID]++
					byStore[store]++
				}
				mu.Unlock()
				time.Sleep(time.Millisecond) // the attempt
				for _, j := range jobs {
					mu.Lock()
					delete(inFlight, j.Delivery.ID)
					mu.Unlock()
					j.Delivery.Status, j.Delivery.NextAttemptAt = StatusSucceeded, nil
					if err := s.Save(ctx, j); err != nil {
						errs <- err
						return
					}
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(attempts) != total {
		t.Fatalf("%d deliveries attempted, want %d", len(attempts), total)
	}
	for id, n := range attempts {
		if n != 1 {
			t.Fatalf("delivery %s attempted %d times", id, n)
		}
	}
	if st := stats(t, a); st.Pending != 0 {
		t.Fatalf("pending %d after all were delivered", st.Pending)
	}
	t.Logf("claims per store: %v", byStore)
}

// A sidecar that dies mid-attempt holds its deliveries until its lease runs
// out; then another sidecar takes them over, and a late save by the first
// is refused.
func TestPostgresLeaseTakeover(t *testing.T) {
	dsn := pgtest.DSN(t)
	const lease = 500 * time.Millisecond
	dying := openPostgres(t, dsn, PostgresOptions{Lease: lease})
	other := openPostgres(t, dsn, PostgresOptions{Lease: lease, PollInterval: time.Minute})
	ctx := context.Background()
	w := suiteHook(t, dying, "a")
	in := commitOne(t, dying, "a", "job_created", w)

	jobs := claim(t, dying, time.Now(), 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d", len(jobs))
	}
	claimedAt := time.Now()
	stale := jobs[0]

	got, next, err := other.Claim(ctx, time.Now(), 10, admitAll)
	if err != nil || len(got) != 0 {
		t.Fatalf("another sidecar claimed %v %v a leased delivery", jobIDs(got), err)
	}
	if next.IsZero() || next.After(claimedAt.Add(lease+100*time.Millisecond)) {
		t.Fatalf("next %v, want about when the lease runs out (%v)", next, claimedAt.Add(lease))
	}
	time.Sleep(time.Until(claimedAt.Add(lease + 100*time.Millisecond)))

	got = claim(t, other, time.Now(), 10)
	if len(got) != 1 || got[0].Delivery.ID != in.Deliveries[0].ID || got[0].Event == nil {
		t.Fatalf("after the lease ran out the other sidecar claimed %v", jobIDs(got))
	}
	// The first sidecar's attempt ends late: its save must not overwrite.
	stale.Delivery.Status, stale.Delivery.NextAttemptAt = StatusFailed, nil
	if err := dying.Save(ctx, stale); !errors.Is(err, errLeaseLost) {
		t.Fatalf("save after losing the lease: %v, want errLeaseLost", err)
	}
	finish(t, other, got[0], StatusSucceeded, 200)
	d, _, err := other.Delivery(ctx, "a", w.ID, in.Deliveries[0].ID)
	if err != nil || d.Status != StatusSucceeded || len(d.Attempts) != 1 {
		t.Fatalf("delivery after takeover %+v %v", d, err)
	}
}

// The ingest path's webhook list may lag another sidecar's writes by the
// cache TTL, never this store's own; single reads are never cached.
func TestPostgresWebhookCache(t *testing.T) {
	dsn := pgtest.DSN(t)
	const ttl = 300 * time.Millisecond
	a := openPostgres(t, dsn, PostgresOptions{WebhookCacheTTL: ttl})
	b := openPostgres(t, dsn, PostgresOptions{WebhookCacheTTL: ttl})
	ctx := context.Background()
	if list, _ := a.ListWebhooks(ctx, "app"); len(list) != 0 {
		t.Fatalf("list %v", list)
	}
	w := suiteHook(t, b, "app")
	if _, err := a.GetWebhook(ctx, "app", w.ID); err != nil {
		t.Fatalf("GetWebhook of another sidecar's new webhook: %v", err)
	}
	waitFor(t, "the other sidecar's webhook in the list", func() bool {
		list, _ := a.ListWebhooks(ctx, "app")
		return len(list) == 1
	})
	start := time.Now()
	mine := suiteHook(t, a, "app")
	list, _ := a.ListWebhooks(ctx, "app")
	if len(list) != 2 || list[1].ID != mine.ID {
		t.Fatalf("this store's own new webhook is not listed at once: %v", list)
	}
	if _, err := b.UpdateWebhook(ctx, "app", w.ID, func(w *Webhook) error { w.Name = "changed"; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other sidecar's change", func() bool {
		list, _ := a.ListWebhooks(ctx, "app")
		return list[0].Name == "changed"
	})
	if took := time.Since(start); took > ttl+time.Second {
		t.Fatalf("a change took %v to be seen, want within the TTL %v", took, ttl)
	}
}

// Finished deliveries and events expire; pending ones never do.
func TestPostgresRetention(t *testing.T) {
	s := openPostgres(t, pgtest.DSN(t), PostgresOptions{})
	ctx := context.Background()
	s.SetRetention(time.Millisecond, time.Hour)
	w := suiteHook(t, s, "a")
	done := newIngest("a", "job_created", eventBody("a", "job_created", 1), "key", w)
	waiting := newIngest("a", "job_created", eventBody("a", "job_created", 2), "", w)
	if err := s.Commit(ctx, []*Ingest{done}); err != nil {
		t.Fatal(err)
	}
	jobs := claim(t, s, time.Now(), 10)
	finish(t, s, jobs[0], StatusSucceeded, 200)
	s.SetRetention(time.Millisecond, time.Millisecond)
	if err := s.Commit(ctx, []*Ingest{waiting}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)

	ds, _, _ := s.Deliveries(ctx, "a", w.ID, DeliveryFilter{Limit: 10})
	if len(ds) != 1 || ds[0].ID != waiting.Deliveries[0].ID {
		t.Fatalf("history %v, want only the pending delivery", ds)
	}
	n, err := s.deleteExpired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The finished delivery and the second event (whose retention was 1ms).
	if n != 2 {
		t.Fatalf("deleted %d rows, want 2", n)
	}
	var rows int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM idempotency`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("idempotency keys %d %v, want the one within its window", rows, err)
	}
	jobs = claim(t, s, time.Now(), 10)
	if len(jobs) != 1 || jobs[0].Event != nil {
		t.Fatalf("a pending delivery whose event expired: %+v", jobs)
	}
	// A repeated key whose row expired counts as new.
	if _, err := s.pool.Exec(ctx, `UPDATE idempotency SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	again := newIngest("a", "job_created", eventBody("a", "job_created", 3), "key", w)
	if err := s.Commit(ctx, []*Ingest{again}); err != nil || again.Result.Duplicate {
		t.Fatalf("a key past its window: %+v %v", again.Result, err)
	}
}

// The outbox runs on the fleet store unchanged.
func TestPostgresOutboxDelivers(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer srv.Close()
	s := openPostgres(t, pgtest.DSN(t), PostgresOptions{})
	o := New(s, Options{AllowDestinations: loopback, RetrySchedule: []time.Duration{10 * time.Millisecond}})
	o.Start()
	t.Cleanup(func() { o.Close() })
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := o.Ingest(ctx, eventBody("app1", "job_created", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "20 deliveries", func() bool {
		ds, _, _ := o.Deliveries(ctx, "app1", w.ID, DeliveryFilter{Status: StatusSucceeded, Limit: 100})
		return len(ds) == 20
	})
	if n := got.Load(); n != 20 {
		t.Fatalf("receiver got %d requests, want 20", n)
	}
}

// BenchmarkPostgresCommit measures durable ingest through the fleet store:
// one transaction (one fsync at COMMIT) per batch, one delivery per event,
// about 1 KiB each, like BenchmarkCommitBatch for Badger.
func BenchmarkPostgresCommit(b *testing.B) {
	benchCommit(b, func(b *testing.B) Store {
		return openPostgres(b, pgtest.DSN(b), PostgresOptions{})
	})
}
