package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// missing counts the events of ids (by webhook-id) the endpoint never got.
func missing(ep *testkit.Recorder, ids []string) int {
	got := map[string]bool{}
	for _, r := range ep.Requests("") {
		got[r.Header.Get("webhook-id")] = true
	}
	n := 0
	for _, id := range ids {
		if !got[id] {
			n++
		}
	}
	return n
}

// poster ingests events in a loop and keeps the ids of those acknowledged.
type poster struct {
	o      *outbox.Outbox
	mu     sync.Mutex
	acked  []string
	ok     atomic.Int64
	failed atomic.Int64
	other  atomic.Value // the last error that was not ErrUnavailable
	stop   chan struct{}
	done   sync.WaitGroup
}

func startPoster(o *outbox.Outbox, app string, workers int) *poster {
	p := &poster{o: o, stop: make(chan struct{})}
	for w := range workers {
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res, err := o.Ingest(ctx, storetest.EventBody(app, "job_created", w*1_000_000+i), "")
				cancel()
				if err != nil {
					p.failed.Add(1)
					if !errors.Is(err, outbox.ErrUnavailable) {
						p.other.Store(err.Error())
					}
					time.Sleep(20 * time.Millisecond)
					continue
				}
				p.ok.Add(1)
				p.mu.Lock()
				p.acked = append(p.acked, res.ID)
				p.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return p
}

func (p *poster) finish() []string {
	close(p.stop)
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...)
}

// While the database is stopped, fast or immediately, ingest fails with
// ErrUnavailable (the 503 of the HTTP layer) and never succeeds; once it
// is started again on the same port the outbox resumes by itself, and
// every event acknowledged before, during or after is delivered.
func TestPostgresSurvivesDatabaseRestart(t *testing.T) {
	db := pgtest.NewInstance(t)
	ep := testkit.NewRecorder(t)
	s := openPostgres(t, db.DSN(), Options{Lease: 5 * time.Second})
	o := outbox.New(s, outbox.Options{AllowDestinations: loopback, RetrySchedule: []time.Duration{time.Second}, Timeout: 2 * time.Second})
	o.Start()
	t.Cleanup(func() { o.Close() })
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr(ep.URL("")), Events: &[]string{"job_created"}}); err != nil {
		t.Fatal(err)
	}
	p := startPoster(o, "app1", 4)
	wait.Until(t, "events acknowledged before the stop", func() bool { return p.ok.Load() > 50 })

	for _, mode := range []string{"fast", "immediate"} {
		db.Stop(mode)
		okAtStop := p.ok.Load()
		failedAtStop := p.failed.Load()
		wait.Until(t, "ingest to fail while the database is stopped", func() bool { return p.failed.Load() > failedAtStop+20 })
		if _, err := o.ListWebhooks(ctx, "app1"); !errors.Is(err, outbox.ErrUnavailable) {
			t.Fatalf("listing webhooks with the database stopped (%s): %v, want ErrUnavailable", mode, err)
		}
		// An ingest under way when the stop began may still have
		// committed; none may after.
		okDown := p.ok.Load()
		time.Sleep(time.Second)
		if n := p.ok.Load(); n != okDown {
			t.Fatalf("%d ingests succeeded with the database stopped (-m %s)", n-okDown, mode)
		}
		db.Start()
		back := time.Now()
		wait.Until(t, "ingest to resume", func() bool { return p.ok.Load() > okDown+20 })
		t.Logf("-m %s: %d acknowledged before the stop, %d refused meanwhile; ingest resumed %v after the start",
			mode, okAtStop, p.failed.Load()-failedAtStop, time.Since(back).Round(10*time.Millisecond))
		if took := time.Since(back); took > 10*time.Second {
			t.Errorf("ingest resumed %v after the database came back, want within 10s", took)
		}
	}
	acked := p.finish()
	if v := p.other.Load(); v != nil {
		t.Fatalf("an ingest failed with something else than ErrUnavailable: %v", v)
	}
	wait.Until(t, fmt.Sprintf("all %d acknowledged events delivered", len(acked)), func() bool { return missing(ep, acked) == 0 })
}

// A backend killed with pg_terminate_backend in the middle of a claim or
// of an ingest commit costs nothing acknowledged: the outbox retries, and
// every event acknowledged is delivered.
func TestPostgresBackendKilledMidStatement(t *testing.T) {
	dsn := pgtest.DSN(t) + "&application_name=killed-backends-test"
	ep := testkit.NewRecorder(t)
	s := openPostgres(t, dsn, Options{Lease: 3 * time.Second})
	o := outbox.New(s, outbox.Options{AllowDestinations: loopback, RetrySchedule: []time.Duration{time.Second}, Timeout: 2 * time.Second})
	o.Start()
	t.Cleanup(func() { o.Close() })
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr(ep.URL("")), Events: &[]string{"job_created"}}); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	p := startPoster(o, "app1", 8)
	killed := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for killed["claim"] < 3 || killed["commit"] < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("caught only %v backends mid-statement in 60s", killed)
		}
		// A claim is a batch: its lock-and-lease statement, then the next
		// due time, then the commit; a backend killed in either statement
		// dies with the leases uncommitted.
		for what, like := range map[string]string{"claim": "%(FOR UPDATE SKIP LOCKED|min\\(next_attempt_at\\))%", "commit": "%INSERT INTO (events|deliveries)%"} {
			if killed[what] >= 3 {
				continue
			}
			var n int
			err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = 'killed-backends-test' AND state = 'active' AND query SIMILAR TO $1`, like).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			killed[what] += n
		}
	}
	time.Sleep(500 * time.Millisecond)
	acked := p.finish()
	t.Logf("terminated %v backends mid-statement; %d events acknowledged, %d refused", killed, len(acked), p.failed.Load())
	if v := p.other.Load(); v != nil {
		t.Fatalf("an ingest failed with something else than ErrUnavailable: %v", v)
	}
	wait.Until(t, fmt.Sprintf("all %d acknowledged events delivered", len(acked)), func() bool { return missing(ep, acked) == 0 })
}
