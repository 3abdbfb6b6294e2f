package outbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// opsEndpoint records the operational reports it receives.
type opsEndpoint struct {
	*testkit.Recorder
	t *testing.T
}

type opsReport struct {
	Event string         `json:"event"`
	Data  map[string]any `json:"data"`
	raw   []byte
	h     http.Header
}

func newOpsEndpoint(t *testing.T) *opsEndpoint {
	e := &opsEndpoint{Recorder: testkit.NewRecorder(t), t: t}
	e.SetRespond(testkit.Always(http.StatusNoContent))
	return e
}

// reports decodes what the endpoint got of event ("" for all).
func (e *opsEndpoint) reports(event string) []opsReport {
	e.t.Helper()
	var out []opsReport
	for _, r := range e.Requests("") {
		var rep opsReport
		if err := json.Unmarshal(r.Body, &rep); err != nil {
			e.t.Errorf("operational report %q: %v", r.Body, err)
		}
		rep.raw, rep.h = r.Body, r.Header
		if event == "" || rep.Event == event {
			out = append(out, rep)
		}
	}
	return out
}

// countingObserver counts operational events by type.
type countingObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (*countingObserver) EventReceived(string)                        {}
func (*countingObserver) EventFiltered(string)                        {}
func (*countingObserver) AttemptFinished(string, bool, time.Duration) {}
func (*countingObserver) DeliveryFailed(string)                       {}
func (*countingObserver) QueueStats(outbox.Stats)                     {}
func (c *countingObserver) OperationalEvent(ev string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[ev]++
}

func TestOperationalReports(t *testing.T) {
	ops := newOpsEndpoint(t)
	var fail atomic.Bool
	fail.Store(true)
	customer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/gone":
			w.WriteHeader(http.StatusGone)
		case fail.Load():
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer customer.Close()
	obs := &countingObserver{}
	o := openTest(t, outbox.Options{
		RetrySchedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		Observer:      obs,
		Operational:   &outbox.OperationalWebhook{URL: ops.URL(""), Secret: "ops-secret", FailingAfter: time.Millisecond},
	})
	ctx := context.Background()
	gone, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("gone"), URL: ptr(customer.URL + "/gone"), Events: &[]string{"job_finished"}, Secret: ptr("customer-secret")})
	if err != nil {
		t.Fatal(err)
	}
	failing, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("failing"), URL: ptr(customer.URL + "/fail"), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}

	// 410: one webhook.disabled, signed with the operational secret.
	for range 3 {
		if _, err := o.Ingest(ctx, []byte(`{"event":"job_finished","data":{"appId":"app1"}}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	wait.Until(t, "webhook.disabled", func() bool { return len(ops.reports(outbox.EventWebhookDisabled)) > 0 })
	rep := ops.reports(outbox.EventWebhookDisabled)[0]
	if rep.Data["webhookId"] != gone.ID || rep.Data["reason"] != "gone" || rep.Data["appId"] != "app1" ||
		rep.Data["webhookName"] != "gone" || rep.Data["url"] != customer.URL+"/gone" || rep.Data["at"] == nil {
		t.Errorf("webhook.disabled data: %v", rep.Data)
	}
	if got, want := rep.h.Get("X-Signature"), testkit.HexHMAC("ops-secret", rep.raw); got != want {
		t.Errorf("report signed %q, want %q (HMAC with the operational secret)", got, want)
	}
	if rep.h.Get("Webhook-Id") == "" {
		t.Error("report without webhook-id")
	}
	for _, r := range ops.reports("") {
		if strings.Contains(string(r.raw), "customer-secret") || strings.Contains(string(r.raw), "ops-secret") {
			t.Errorf("a report carries a secret: %s", r.raw)
		}
	}

	// A delivery failing through its schedule: webhook.failing once, then
	// delivery.exhausted with its last status.
	in, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"app1"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "delivery.exhausted", func() bool { return len(ops.reports(outbox.EventDeliveryExhausted)) > 0 })
	ex := ops.reports(outbox.EventDeliveryExhausted)[0].Data
	if ex["webhookId"] != failing.ID || ex["eventId"] != in.ID || ex["event"] != "job_created" ||
		ex["attempts"] != float64(4) || ex["responseStatusCode"] != float64(500) || ex["deliveryId"] == nil {
		t.Errorf("delivery.exhausted data: %v", ex)
	}
	fl := ops.reports(outbox.EventWebhookFailing)
	if len(fl) != 1 || fl[0].Data["webhookId"] != failing.ID || fl[0].Data["since"] == nil || fl[0].Data["failures"].(float64) < 1 {
		t.Fatalf("webhook.failing reports: %+v, want one about %s with since and failures", fl, failing.ID)
	}

	// It succeeds again: webhook.recovered, once.
	fail.Store(false)
	if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"app1"}}`), ""); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "webhook.recovered", func() bool { return len(ops.reports(outbox.EventWebhookRecovered)) > 0 })
	rc := ops.reports(outbox.EventWebhookRecovered)
	if len(rc) != 1 || rc[0].Data["since"] != fl[0].Data["since"] {
		t.Errorf("webhook.recovered: %+v, want one with the failing period's since %v", rc, fl[0].Data["since"])
	}
	if n := len(ops.reports(outbox.EventWebhookDisabled)); n != 1 {
		t.Errorf("%d webhook.disabled reports for one 410 webhook, want 1", n)
	}

	// The operational history holds them, and the metrics counted them.
	ds, _, err := o.OperationalDeliveries(ctx, outbox.DeliveryFilter{Limit: 100})
	if err != nil || len(ds) != len(ops.reports("")) {
		t.Errorf("operational history: %d deliveries (%v), endpoint got %d", len(ds), err, len(ops.reports("")))
	}
	obs.mu.Lock()
	counted := obs.n
	obs.mu.Unlock()
	if counted[outbox.EventWebhookDisabled] != 1 || counted[outbox.EventWebhookFailing] != 1 ||
		counted[outbox.EventWebhookRecovered] != 1 || counted[outbox.EventDeliveryExhausted] != 1 {
		t.Errorf("operational events counted %v, want one of each", counted)
	}
	// The operational app is nobody's to post to or list.
	if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"@operational"}}`), ""); err == nil {
		t.Error("ingest for the operational app accepted")
	}
	apps, _ := o.ListApps(ctx)
	if slices.Contains(apps, outbox.OperationalApp) {
		t.Errorf("apps list the operational app: %v", apps)
	}
}

// An operational endpoint that answers 410 or fails is not disabled and
// causes no reports about itself.
func TestOperationalEndpointGoneIsNotReported(t *testing.T) {
	ops := newOpsEndpoint(t)
	ops.SetRespond(testkit.Always(http.StatusGone))
	customer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer customer.Close()
	o := openTest(t, outbox.Options{
		RetrySchedule: []time.Duration{},
		Operational:   &outbox.OperationalWebhook{URL: ops.URL(""), FailingAfter: time.Millisecond},
	})
	ctx := context.Background()
	for i := range 2 {
		if _, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("gone"), URL: ptr(customer.URL), Events: &[]string{"job_finished"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := o.Ingest(ctx, []byte(`{"event":"job_finished","data":{"appId":"app1"}}`), ""); err != nil {
			t.Fatal(err)
		}
		// Each report is attempted once and fails with 410.
		wait.Until(t, "the operational delivery to fail", func() bool {
			ds, _, _ := o.OperationalDeliveries(ctx, outbox.DeliveryFilter{Status: outbox.StatusFailed, Limit: 100})
			return len(ds) == i+1
		})
	}
	ds, _, err := o.OperationalDeliveries(ctx, outbox.DeliveryFilter{Limit: 100})
	if err != nil || len(ds) != 2 {
		t.Fatalf("operational history: %d deliveries (%v), want the 2 webhook.disabled reports alone", len(ds), err)
	}
	for _, d := range ds {
		if d.Event != outbox.EventWebhookDisabled {
			t.Errorf("a report about the operational webhook itself: %s", d.Event)
		}
	}
	if len(ops.reports(outbox.EventWebhookDisabled)) != 2 {
		t.Errorf("the endpoint got %d reports, want 2", len(ops.reports("")))
	}
}
