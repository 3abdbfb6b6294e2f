package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// The fixture of the first release's records, as testdata/v1 of each store
// holds them: what CheckV1Fixture expects to read back.
const (
	v1Webhook = "019ad4a0-0000-7000-8000-000000000001"
	v1Pending = "019ad4a0-0000-7000-8000-000000000202"
)

// CheckV1Fixture checks that s, opened on data the first release wrote,
// serves it: the webhook with its secret, the history newest first with
// each delivery's attempts and request body, and the pending delivery
// still due.
func CheckV1Fixture(t *testing.T, s outbox.Store) {
	t.Helper()
	ctx := context.Background()
	w, err := s.GetWebhook(ctx, "app1", v1Webhook)
	if err != nil {
		t.Fatalf("the webhook written by the first release: %v", err)
	}
	if w.Name != "ci" || w.Secret != "fixture-secret" || len(w.Events) != 2 || !w.Enabled {
		t.Fatalf("webhook read back as %+v", w)
	}
	ds, _, err := s.Deliveries(ctx, "app1", v1Webhook, outbox.DeliveryFilter{Limit: 10})
	if err != nil || len(ds) != 3 {
		t.Fatalf("history: %d deliveries %v, want 3", len(ds), err)
	}
	want := []struct {
		status   outbox.Status
		attempts int
		body     string
	}{
		{outbox.StatusPending, 1, `{"event":"job_finished","data":{"appId":"app1","n":2}}`},
		{outbox.StatusFailed, 2, `{"event":"job_finished","data":{"appId":"app1","n":1}}`},
		{outbox.StatusSucceeded, 1, `{"event":"job_finished","data":{"appId":"app1","n":0}}`},
	}
	for i, d := range ds {
		if d.Status != want[i].status || len(d.Attempts) != want[i].attempts || string(d.RequestBody) != want[i].body {
			t.Errorf("history[%d] = %s with %d attempts and body %q, want %s, %d, %q",
				i, d.Status, len(d.Attempts), d.RequestBody, want[i].status, want[i].attempts, want[i].body)
		}
	}
	failed, ev, err := s.Delivery(ctx, "app1", v1Webhook, ds[1].ID)
	if err != nil || ev == nil {
		t.Fatalf("the failed delivery: %v (event %v)", err, ev)
	}
	a := failed.Attempts
	if a[0].ResponseStatusCode != 500 || a[0].ResponseBody != "oops" || a[0].DurationMs != 7 ||
		a[1].Error != "connection refused" || !a[1].SentAt.Equal(time.Date(2026, 11, 30, 12, 0, 3, 0, time.UTC)) {
		t.Errorf("attempts read back as %+v", a)
	}
	if failed.Round != 2 {
		t.Errorf("round read back as %d, want 2", failed.Round)
	}
	jobs := Claim(t, s, time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), 10)
	if len(jobs) != 1 || jobs[0].Delivery.ID != v1Pending || jobs[0].Event == nil {
		t.Fatalf("claimed %v, want the pending delivery with its event", JobIDs(jobs))
	}
}
