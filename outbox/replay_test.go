package outbox_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// Replay to a disabled webhook records its deliveries as skipped, as
// ingest does, sending nothing; once enabled, recover sends them.
func TestReplayToDisabledWebhookSkips(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	for range 2 {
		ingestOne(t, o, "a", "job_created")
	}
	w, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL, func(in *outbox.WebhookInput) { in.Enabled = ptr(false) }))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := o.Replay(ctx, "a", w.ID, start, time.Time{}); err != nil || n != 2 {
		t.Fatalf("replay to a disabled webhook: %d, %v; want 2", n, err)
	}
	ds, _, err := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{})
	if err != nil || len(ds) != 2 {
		t.Fatalf("history after the replay: %d deliveries (%v), want 2", len(ds), err)
	}
	for _, d := range ds {
		if d.Status != outbox.StatusSkipped || len(d.Attempts) != 0 || d.NextAttemptAt != nil {
			t.Errorf("replayed delivery %s: %s, %d attempts, next %v; want skipped and never attempted", d.ID, d.Status, len(d.Attempts), d.NextAttemptAt)
		}
	}

	if _, err := o.UpdateWebhook(ctx, "a", w.ID, outbox.WebhookInput{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if n, err := o.Recover(ctx, "a", w.ID, start, outbox.StatusSkipped); err != nil || n != 2 {
		t.Fatalf("recover of the skipped deliveries: %d, %v; want 2", n, err)
	}
	wait.Until(t, "both recovered deliveries", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Status: outbox.StatusSucceeded})
		return len(ds) == 2
	})
	if n := hits.Load(); n != 2 {
		t.Fatalf("the endpoint got %d requests, want the 2 recovered deliveries alone", n)
	}
}
