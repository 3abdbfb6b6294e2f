package pgstore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// A delivery claimed ahead and still waiting when the sidecar stops goes
// back to the database at once: a sidecar started next delivers it well
// before the lease it was claimed with would have run out.
func TestPostgresParkedReleasedAtStop(t *testing.T) {
	dsn := pgtest.DSN(t)
	const lease = 2 * wait.Default
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	arrived := make(chan struct{}, 2)
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(held.Close)

	first := openPostgres(t, dsn, Options{Lease: lease})
	o := outbox.New(first, outbox.Options{AllowDestinations: loopback, Timeout: 5 * time.Second})
	o.Start()
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr(held.URL), Events: &[]string{"job_created"}, MaxInFlight: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := o.Ingest(ctx, storetest.EventBody("app1", "job_created", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	<-arrived
	wait.Until(t, "the second delivery claimed ahead of the held attempt", func() bool {
		var n int
		err := first.pool.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE lease_until > now()`).Scan(&n)
		return err == nil && n == 2
	})
	closed := make(chan struct{})
	go func() { o.Close(); close(closed) }()
	unblock()
	<-closed

	next := testkit.NewRecorder(t)
	second := openPostgres(t, dsn, Options{Lease: lease})
	o2 := outbox.New(second, outbox.Options{AllowDestinations: loopback, Timeout: 5 * time.Second})
	o2.Start()
	t.Cleanup(func() { o2.Close() })
	if _, err := o2.UpdateWebhook(ctx, "app1", w.ID, outbox.WebhookInput{URL: ptr(next.URL("/next"))}); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "both deliveries finished, long before the lease would have run out", func() bool {
		ds, _, err := o2.Deliveries(ctx, "app1", w.ID, outbox.DeliveryFilter{})
		if err != nil || len(ds) != 2 {
			return false
		}
		for _, d := range ds {
			if d.Status != outbox.StatusSucceeded {
				return false
			}
		}
		return true
	})
}
