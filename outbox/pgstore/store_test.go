package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

func openPostgres(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("opening the Postgres store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgresStore runs the store behaviour suite on the fleet store.
func TestPostgresStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) outbox.Store {
		return openPostgres(t, pgtest.DSN(t), Options{})
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
			s, err := Open(context.Background(), dsn, Options{})
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
	s := openPostgres(t, dsn, Options{})
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
	a := openPostgres(t, dsn, Options{})
	b := openPostgres(t, dsn, Options{})
	ctx := context.Background()
	w := storetest.CreateWebhook(t, a, "a")
	const total = 400
	for i := 0; i < total; i += 100 {
		var batch []*outbox.Ingest
		for k := range 100 {
			batch = append(batch, storetest.NewIngest("a", "job_created", storetest.EventBody("a", "job_created", i+k), "", w))
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
	for i, s := range []*Store{a, b, a, b} {
		store := string(rune('a' + i%2))
		name := fmt.Sprintf("claimer %d (store %s)", i, store)
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(30 * time.Second)
			for done.Load() < total && time.Now().Before(deadline) {
				jobs, _, err := s.Claim(ctx, &outbox.ClaimRequest{Now: time.Now(), Limit: 7, MaxInFlight: 7})
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
					j.Delivery.Status, j.Delivery.NextAttemptAt = outbox.StatusSucceeded, nil
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
	if st := storetest.Stats(t, a); st.Pending != 0 {
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
	dying := openPostgres(t, dsn, Options{Lease: lease})
	other := openPostgres(t, dsn, Options{Lease: lease, PollInterval: time.Minute})
	ctx := context.Background()
	w := storetest.CreateWebhook(t, dying, "a")
	in := storetest.CommitOne(t, dying, "a", "job_created", w)

	jobs := storetest.Claim(t, dying, time.Now(), 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d", len(jobs))
	}
	claimedAt := time.Now()
	stale := jobs[0]

	got, next, err := other.Claim(ctx, &outbox.ClaimRequest{Now: time.Now(), Limit: 10, MaxInFlight: 10})
	if err != nil || len(got) != 0 {
		t.Fatalf("another sidecar claimed %v %v a leased delivery", storetest.JobIDs(got), err)
	}
	if next.IsZero() || next.After(claimedAt.Add(lease+100*time.Millisecond)) {
		t.Fatalf("next %v, want about when the lease runs out (%v)", next, claimedAt.Add(lease))
	}
	time.Sleep(time.Until(claimedAt.Add(lease + 100*time.Millisecond)))

	got = storetest.Claim(t, other, time.Now(), 10)
	if len(got) != 1 || got[0].Delivery.ID != in.Deliveries[0].ID || got[0].Event == nil {
		t.Fatalf("after the lease ran out the other sidecar claimed %v", storetest.JobIDs(got))
	}
	// The first sidecar's attempt ends late: its save must not overwrite.
	stale.Delivery.Status, stale.Delivery.NextAttemptAt = outbox.StatusFailed, nil
	if err := dying.Save(ctx, stale); !errors.Is(err, errLeaseLost) {
		t.Fatalf("save after losing the lease: %v, want errLeaseLost", err)
	}
	storetest.Finish(t, other, got[0], outbox.StatusSucceeded, 200)
	d, _, err := other.Delivery(ctx, "a", w.ID, in.Deliveries[0].ID)
	if err != nil || d.Status != outbox.StatusSucceeded || len(d.Attempts) != 1 {
		t.Fatalf("delivery after takeover %+v %v", d, err)
	}
}

// A webhook written through one sidecar reaches another's ingest list at
// once through NOTIFY, not after a TTL; with the notification connection
// lost, the list is read from the database, and the connection comes back
// by itself.
func TestPostgresWebhookCoherence(t *testing.T) {
	dsn := pgtest.DSN(t) + "&application_name=coherence-test"
	a := openPostgres(t, dsn, Options{})
	b := openPostgres(t, dsn, Options{})
	ctx := context.Background()
	wait.Until(t, "both listening", func() bool { return a.listening.Load() && b.listening.Load() })
	if list, _ := a.ListWebhooks(ctx, "app"); len(list) != 0 {
		t.Fatalf("list %v", list)
	}
	seen := func(what string, cond func([]*outbox.Webhook) bool) time.Duration {
		t.Helper()
		start := time.Now()
		wait.Until(t, what, func() bool {
			list, err := a.ListWebhooks(ctx, "app")
			return err == nil && cond(list)
		})
		took := time.Since(start)
		t.Logf("%s: seen by the other sidecar after %v", what, took.Round(time.Millisecond))
		// The fleet's promise is 250 ms; the bound leaves room for a
		// loaded machine.
		if took > 5*time.Second {
			t.Errorf("%s took %v to reach the other sidecar's ingest", what, took)
		}
		return took
	}
	w := storetest.CreateWebhook(t, b, "app")
	seen("a created webhook", func(l []*outbox.Webhook) bool { return len(l) == 1 })
	if _, err := b.UpdateWebhook(ctx, "app", w.ID, func(w *outbox.Webhook) error { w.Name = "changed"; return nil }); err != nil {
		t.Fatal(err)
	}
	seen("an edit", func(l []*outbox.Webhook) bool { return len(l) == 1 && l[0].Name == "changed" })
	// A change made in the database by hand is announced too (trigger).
	if _, err := b.pool.Exec(ctx, `UPDATE webhooks SET enabled = false`); err != nil {
		t.Fatal(err)
	}
	seen("a change by hand", func(l []*outbox.Webhook) bool { return len(l) == 1 && !l[0].Enabled })
	if err := b.DeleteWebhook(ctx, "app", w.ID); err != nil {
		t.Fatal(err)
	}
	seen("a delete", func(l []*outbox.Webhook) bool { return len(l) == 0 })

	// New work wakes the other sidecar.
	for len(a.Notifications()) > 0 {
		<-a.Notifications()
	}
	hook := storetest.CreateWebhook(t, b, "app")
	storetest.CommitOne(t, b, "app", "job_created", hook)
	select {
	case <-a.Notifications():
	case <-time.After(30 * time.Second):
		t.Fatal("an event committed by one sidecar did not wake the other")
	}

	// The notification connection dies: reads go to the database until it
	// is back, which it is by itself.
	var killed int
	if err := b.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'coherence-test' AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`).Scan(&killed); err != nil || killed != 2 {
		t.Fatalf("terminated %d listening backends (%v), want 2", killed, err)
	}
	if _, err := b.UpdateWebhook(ctx, "app", hook.ID, func(w *outbox.Webhook) error { w.Name = "while deaf"; return nil }); err != nil {
		t.Fatal(err)
	}
	if list, err := a.ListWebhooks(ctx, "app"); err != nil || len(list) != 1 || list[0].Name != "while deaf" {
		t.Fatalf("list after the notification connection was lost: %v %v, want the change at once", list, err)
	}
	wait.Until(t, "the notification connections back", func() bool {
		var n int
		err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'coherence-test' AND query LIKE 'LISTEN%'`).Scan(&n)
		return err == nil && n == 2 && a.listening.Load() && b.listening.Load()
	})
	if _, err := b.UpdateWebhook(ctx, "app", hook.ID, func(w *outbox.Webhook) error { w.Name = "heard again"; return nil }); err != nil {
		t.Fatal(err)
	}
	seen("an edit after the reconnect", func(l []*outbox.Webhook) bool { return len(l) == 1 && l[0].Name == "heard again" })
}

// Finished deliveries and events expire; pending ones never do.
func TestPostgresRetention(t *testing.T) {
	s := openPostgres(t, pgtest.DSN(t), Options{})
	ctx := context.Background()
	s.SetRetention(time.Millisecond, time.Hour)
	w := storetest.CreateWebhook(t, s, "a")
	done := storetest.NewIngest("a", "job_created", storetest.EventBody("a", "job_created", 1), "key", w)
	waiting := storetest.NewIngest("a", "job_created", storetest.EventBody("a", "job_created", 2), "", w)
	if err := s.Commit(ctx, []*outbox.Ingest{done}); err != nil {
		t.Fatal(err)
	}
	jobs := storetest.Claim(t, s, time.Now(), 10)
	storetest.Finish(t, s, jobs[0], outbox.StatusSucceeded, 200)
	s.SetRetention(time.Millisecond, time.Millisecond)
	if err := s.Commit(ctx, []*outbox.Ingest{waiting}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)

	ds, _, _ := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 10})
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
	jobs = storetest.Claim(t, s, time.Now(), 10)
	if len(jobs) != 1 || jobs[0].Event != nil {
		t.Fatalf("a pending delivery whose event expired: %+v", jobs)
	}
	// A repeated key whose row expired counts as new.
	if _, err := s.pool.Exec(ctx, `UPDATE idempotency SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	again := storetest.NewIngest("a", "job_created", storetest.EventBody("a", "job_created", 3), "key", w)
	if err := s.Commit(ctx, []*outbox.Ingest{again}); err != nil || again.Result.Duplicate {
		t.Fatalf("a key past its window: %+v %v", again.Result, err)
	}
}

// The outbox runs on the fleet store unchanged.
func TestPostgresOutboxDelivers(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := openPostgres(t, pgtest.DSN(t), Options{})
	o := outbox.New(s, outbox.Options{AllowDestinations: loopback, RetrySchedule: []time.Duration{10 * time.Millisecond}})
	o.Start()
	t.Cleanup(func() { o.Close() })
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr(rc.URL("")), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := o.Ingest(ctx, storetest.EventBody("app1", "job_created", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	wait.Until(t, "20 deliveries", func() bool {
		ds, _, _ := o.Deliveries(ctx, "app1", w.ID, outbox.DeliveryFilter{Status: outbox.StatusSucceeded, Limit: 100})
		return len(ds) == 20
	})
	if n := rc.Count(""); n != 20 {
		t.Fatalf("receiver got %d requests, want 20", n)
	}
}

// BenchmarkPostgresCommit measures durable ingest through the fleet store:
// one transaction (one fsync at COMMIT) per batch, one delivery per event,
// about 1 KiB each, like BenchmarkCommitBatch for Badger.
func BenchmarkPostgresCommit(b *testing.B) {
	storetest.BenchCommit(b, func(b *testing.B) outbox.Store {
		return openPostgres(b, pgtest.DSN(b), Options{})
	})
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func ptr[T any](v T) *T { return &v }
