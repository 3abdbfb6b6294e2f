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

// A webhook whose deliveries keep failing past disable_after is disabled
// and reported once as webhook.disabled with reason "failing"; the failure
// that disabled it is not also reported as delivery.exhausted.
func TestOperationalDisabledFailing(t *testing.T) {
	ops := newOpsEndpoint(t)
	customer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer customer.Close()
	obs := &countingObserver{}
	o := openTest(t, outbox.Options{
		RetrySchedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		// The second failure comes after disable_after: the retry waits
		// longer than that.
		DisableAfter: time.Millisecond,
		Observer:     obs,
		Operational:  &outbox.OperationalWebhook{URL: ops.URL(""), Secret: "ops-secret", FailingAfter: time.Hour},
	})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("flaky"), URL: ptr(customer.URL + "/hook"), Events: &[]string{"job_created"}, Secret: ptr("customer-secret")})
	if err != nil {
		t.Fatal(err)
	}
	ingestOne(t, o, "app1", "job_created")
	wait.Until(t, "webhook.disabled", func() bool { return len(ops.reports(outbox.EventWebhookDisabled)) > 0 })
	rep := ops.reports(outbox.EventWebhookDisabled)[0].Data
	if rep["reason"] != "failing" || rep["webhookId"] != w.ID || rep["appId"] != "app1" ||
		rep["webhookName"] != "flaky" || rep["url"] != customer.URL+"/hook" || rep["at"] == nil {
		t.Errorf("webhook.disabled data: %v, want reason failing about %s", rep, w.ID)
	}
	got, err := o.GetWebhook(ctx, "app1", w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled || got.DisabledReason != "failing" {
		t.Fatalf("webhook after the report: enabled %v, reason %q; want disabled as failing", got.Enabled, got.DisabledReason)
	}
	d := onlyDelivery(t, o, "app1", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
	if len(d.Attempts) != 2 {
		t.Errorf("the delivery failed after %d attempts, want 2 (the first starts the failing period, the second disables)", len(d.Attempts))
	}
	// Once closed, every report the engine made is counted.
	o.Close()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.n[outbox.EventWebhookDisabled] != 1 || obs.n[outbox.EventDeliveryExhausted] != 0 || obs.n[outbox.EventWebhookFailing] != 0 {
		t.Errorf("operational events %v, want one webhook.disabled and nothing else", obs.n)
	}
}

// Removing the operational webhook from the configuration disables the
// stored one: a report still pending is then recorded as skipped, never
// sent.
func TestOperationalRemovedSkipsPending(t *testing.T) {
	var got atomic.Int32
	release := make(chan struct{})
	ops := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got.Add(1) == 1 {
			// Holds the one attempt the operational webhook may have in
			// flight, so the next report waits, pending.
			<-release
		}
	}))
	defer ops.Close()
	defer close(release)
	customer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer customer.Close()
	opts := outbox.Options{
		AllowDestinations:     loopback,
		MaxInFlightPerWebhook: 1,
		RetrySchedule:         []time.Duration{},
		Timeout:               time.Minute,
		Operational:           &outbox.OperationalWebhook{URL: ops.URL, FailingAfter: time.Hour},
	}
	o := openTest(t, opts)
	ctx := context.Background()
	for _, ev := range []string{"job_created", "job_finished"} {
		if _, err := o.CreateWebhook(ctx, "app1", hookInput(customer.URL+"/"+ev, func(in *outbox.WebhookInput) { in.Events = &[]string{ev} })); err != nil {
			t.Fatal(err)
		}
	}
	ingestOne(t, o, "app1", "job_created")
	wait.Until(t, "the first report in flight", func() bool { return got.Load() == 1 })
	ds, _, err := o.OperationalDeliveries(ctx, outbox.DeliveryFilter{Limit: 10})
	if err != nil || len(ds) != 1 {
		t.Fatalf("operational history with one report: %d deliveries (%v)", len(ds), err)
	}
	inFlight := ds[0].ID
	ingestOne(t, o, "app1", "job_finished")
	var pending *outbox.Delivery
	wait.Until(t, "the second report stored", func() bool {
		ds, _, _ := o.OperationalDeliveries(ctx, outbox.DeliveryFilter{Limit: 10})
		for _, d := range ds {
			if d.ID != inFlight {
				pending = d
			}
		}
		return pending != nil
	})
	if pending.Status != outbox.StatusPending || len(pending.Attempts) != 0 {
		t.Fatalf("the second report is %s with %d attempts, want pending behind the one in flight", pending.Status, len(pending.Attempts))
	}

	opts.Operational = nil
	o.Configure(opts)
	op, err := o.GetWebhook(ctx, outbox.OperationalApp, outbox.OperationalWebhookID)
	if err != nil || op.Enabled {
		t.Fatalf("stored operational webhook after its removal: %v, want it disabled", err)
	}
	release <- struct{}{} // the attempt in flight ends
	wait.Until(t, "the pending report recorded as skipped", func() bool {
		d, _, _ := o.OperationalDelivery(ctx, pending.ID)
		return d != nil && d.Status == outbox.StatusSkipped
	})
	d, _, _ := o.OperationalDelivery(ctx, pending.ID)
	if len(d.Attempts) != 0 {
		t.Errorf("the skipped report has %d attempts, want none", len(d.Attempts))
	}
	if n := got.Load(); n != 1 {
		t.Fatalf("the operational endpoint got %d requests, want only the one in flight before the removal", n)
	}
}
