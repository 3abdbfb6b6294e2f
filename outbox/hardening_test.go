package outbox_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

func ingestOne(t *testing.T, o *outbox.Outbox, app, ev string) outbox.IngestResult {
	t.Helper()
	r, err := o.Ingest(context.Background(), []byte(`{"event":"`+ev+`","data":{"appId":"`+app+`"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// receive waits for a value on ch, failing the test if none comes.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func onlyDelivery(t *testing.T, o *outbox.Outbox, app, wh string, want func(*outbox.Delivery) bool) *outbox.Delivery {
	t.Helper()
	var d *outbox.Delivery
	wait.Until(t, "delivery state", func() bool {
		ds, _, _ := o.Deliveries(context.Background(), app, wh, outbox.DeliveryFilter{})
		if len(ds) == 1 && want(ds[0]) {
			d = ds[0]
			return true
		}
		return false
	})
	return d
}

// A host name that resolves to loopback is refused at dial time, recorded
// once, and not retried.
func TestBlockedAtDialTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	o := openTest(t, outbox.Options{AllowDestinations: []netip.Prefix{}, RetrySchedule: []time.Duration{10 * time.Millisecond}})
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	w, err := o.CreateWebhook(context.Background(), "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://localhost" + port + "/"), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	ingestOne(t, o, "a", "job_created")
	d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
	if len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, "loopback") {
		t.Fatalf("blocked delivery: %d attempts, error %q; want 1 attempt naming loopback", len(d.Attempts), d.Attempts[0].Error)
	}
	if hits.Load() != 0 {
		t.Fatal("the loopback endpoint was reached despite the guard")
	}
}

func TestGoneDisablesWebhook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer srv.Close()
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{10 * time.Millisecond}})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	ingestOne(t, o, "a", "job_created")
	d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
	if len(d.Attempts) != 1 {
		t.Fatalf("410 was retried: %d attempts", len(d.Attempts))
	}
	got, _ := o.GetWebhook(ctx, "a", w.ID)
	if got.Enabled || got.DisabledReason != "gone" {
		t.Fatalf("after 410 the webhook is enabled=%v reason=%q, want disabled as gone", got.Enabled, got.DisabledReason)
	}
	// Events for a disabled webhook are recorded as skipped, resendable later.
	ingestOne(t, o, "a", "job_created")
	ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Status: outbox.StatusSkipped})
	if len(ds) != 1 {
		t.Fatalf("%d skipped deliveries while disabled, want 1", len(ds))
	}
}

func TestThrottledWaitsAndRetryAfter(t *testing.T) {
	// Dates are fixed here, before any attempt, so the wait measured from
	// an attempt is at most the date's distance from now.
	now := time.Now()
	inTenMinutes := now.Add(10 * time.Minute).UTC().Format(http.TimeFormat)
	inTwoDays := now.Add(48 * time.Hour).UTC().Format(http.TimeFormat)
	anHourAgo := now.Add(-time.Hour).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name       string
		status     int // 0: the endpoint never answers, so the attempt times out
		retryAfter string
		min, max   time.Duration
	}{
		{"503 waits the floor", 503, "", 60 * time.Second, 61 * time.Second},
		{"502 waits the floor", 502, "", 60 * time.Second, 61 * time.Second},
		{"504 waits the floor", 504, "", 60 * time.Second, 61 * time.Second},
		{"429 waits the floor", 429, "", 60 * time.Second, 61 * time.Second},
		{"a timeout waits the floor", 0, "", 60 * time.Second, 61 * time.Second},
		{"429 honours a longer Retry-After", 429, "600", 600 * time.Second, 601 * time.Second},
		{"Retry-After is capped", 503, "999999999", 24 * time.Hour, 24*time.Hour + time.Second},
		{"Retry-After as an HTTP date", 500, inTenMinutes, 9 * time.Minute, 10*time.Minute + time.Second},
		{"Retry-After as a date is capped", 500, inTwoDays, 24 * time.Hour, 24*time.Hour + time.Second},
		{"Retry-After as a past date keeps the schedule", 500, anHourAgo, 800 * time.Millisecond, 1200 * time.Millisecond},
		{"500 keeps the schedule", 500, "", 800 * time.Millisecond, 1200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hang := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 0 {
					<-hang
					return
				}
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			defer close(hang)
			opts := outbox.Options{RetrySchedule: []time.Duration{time.Second, time.Hour}}
			if tc.status == 0 {
				opts.Timeout = 200 * time.Millisecond
			}
			o := openTest(t, opts)
			w, _ := o.CreateWebhook(context.Background(), "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
			ingestOne(t, o, "a", "job_created")
			d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return len(d.Attempts) == 1 && d.NextAttemptAt != nil })
			// Measured from the attempt itself, so a slow machine
			// cannot move it.
			wait := d.NextAttemptAt.Sub(d.Attempts[0].SentAt)
			if wait < tc.min || wait > tc.max {
				t.Fatalf("next attempt in %v, want between %v and %v", wait, tc.min, tc.max)
			}
		})
	}
}

func TestAutoDisableAfterContinuousFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}, DisableAfter: 30 * time.Millisecond})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	ingestOne(t, o, "a", "job_created")
	wait.Until(t, "webhook disabled after failing continuously", func() bool {
		got, _ := o.GetWebhook(ctx, "a", w.ID)
		return !got.Enabled && got.DisabledReason == "failing"
	})
	// Re-enabling resumes deliveries.
	if _, err := o.UpdateWebhook(ctx, "a", w.ID, outbox.WebhookInput{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	got, _ := o.GetWebhook(ctx, "a", w.ID)
	if !got.Enabled || !got.FailingSince.IsZero() {
		t.Fatalf("re-enabled webhook: enabled=%v failingSince=%v", got.Enabled, got.FailingSince)
	}
	r := ingestOne(t, o, "a", "job_created")
	wait.Until(t, "attempt after re-enabling", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{})
		for _, d := range ds {
			if d.EventID == r.ID && len(d.Attempts) > 0 {
				return true
			}
		}
		return false
	})
}

func TestSecretRotationSignsWithBoth(t *testing.T) {
	hdr := make(chan http.Header, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hdr <- r.Header.Clone() }))
	defer srv.Close()
	o := openTest(t, outbox.Options{RotationGrace: time.Hour})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}, Secret: ptr("old-secret")})
	if _, err := o.UpdateWebhook(ctx, "a", w.ID, outbox.WebhookInput{Secret: ptr("new-secret")}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"job_created","data":{"appId":"a"}}`)
	r, err := o.Ingest(ctx, body, "")
	if err != nil {
		t.Fatal(err)
	}
	h := receive(t, hdr, "the first signed delivery")
	if h.Get("X-Signature") != testkit.HexHMAC("new-secret", body) {
		t.Fatal("X-Signature is not by the new secret")
	}
	sigs := strings.Fields(h.Get("Webhook-Signature"))
	if len(sigs) != 2 {
		t.Fatalf("webhook-signature %q, want two v1 entries during the grace", h.Get("Webhook-Signature"))
	}
	ts := h.Get("Webhook-Timestamp")
	for i, secret := range []string{"new-secret", "old-secret"} {
		want := "v1," + base64.StdEncoding.EncodeToString(signature.HMACSHA256([]byte(secret), []byte(r.ID+"."+ts+"."), body))
		if sigs[i] != want {
			t.Errorf("signature %d does not verify with %s", i, secret)
		}
	}
	// Removing the secret drops signing entirely.
	if _, err := o.UpdateWebhook(ctx, "a", w.ID, outbox.WebhookInput{Secret: ptr("")}); err != nil {
		t.Fatal(err)
	}
	ingestOne(t, o, "a", "job_created")
	h = receive(t, hdr, "the delivery after the secret was removed")
	if h.Get("X-Signature") != "" || h.Get("Webhook-Signature") != "" {
		t.Fatal("signed after the secret was removed")
	}
}

func TestRecoverResendsFailedSince(t *testing.T) {
	var ok atomic.Bool
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !ok.Load() {
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{}})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	since := time.Now()
	for range 5 {
		ingestOne(t, o, "a", "job_created")
	}
	wait.Until(t, "five failed deliveries", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Status: outbox.StatusFailed})
		return len(ds) == 5
	})
	ok.Store(true)
	n, err := o.Recover(ctx, "a", w.ID, since)
	if err != nil || n != 5 {
		t.Fatalf("recover: %d, %v; want 5", n, err)
	}
	wait.Until(t, "five recovered deliveries", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Status: outbox.StatusSucceeded})
		return len(ds) == 5
	})
	if n, _ := o.Recover(ctx, "a", w.ID, since); n != 0 {
		t.Fatalf("second recover resent %d, want 0", n)
	}
}
