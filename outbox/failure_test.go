package outbox_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// Network errors (DNS, refused, reset, a connection closed without an
// answer) are retried on the schedule like any failure, and each attempt
// records its error.
func TestNetworkErrorsRetried(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	refusedURL := closed.URL
	closed.Close()
	hangUp := func(reset bool) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			if reset {
				conn.(*net.TCPConn).SetLinger(0)
			}
			conn.Close()
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for _, tc := range []struct{ name, url string }{
		{"DNS", "http://no-such-host.invalid/hook"},
		{"connection refused", refusedURL},
		{"connection reset", hangUp(true)},
		{"closed without an answer", hangUp(false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}, Timeout: 10 * time.Second})
			w, err := o.CreateWebhook(context.Background(), "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(tc.url), Events: &[]string{"job_created"}})
			if err != nil {
				t.Fatal(err)
			}
			ingestOne(t, o, "a", "job_created")
			d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
			if len(d.Attempts) != 3 {
				t.Fatalf("a delivery failing with a network error made %d attempts, want 3 (retry_schedule of 2)", len(d.Attempts))
			}
			for i, a := range d.Attempts {
				if a.Error == "" || a.ResponseStatusCode != 0 {
					t.Errorf("attempt %d recorded status %d error %q, want the network error", i+1, a.ResponseStatusCode, a.Error)
				}
				if strings.Contains(a.Error, tc.url) {
					t.Errorf("attempt %d error %q shows the URL, which may carry a token", i+1, a.Error)
				}
			}
		})
	}
}

// A redirect is not followed: the 3xx is the attempt's answer, a failure
// retried on the schedule, and the target is never asked.
func TestRedirectNotFollowed(t *testing.T) {
	var from, to atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/from", func(w http.ResponseWriter, r *http.Request) {
		from.Add(1)
		http.Redirect(w, r, "/to", http.StatusFound)
	})
	mux.HandleFunc("/to", func(w http.ResponseWriter, r *http.Request) { to.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{20 * time.Millisecond}})
	w, err := o.CreateWebhook(context.Background(), "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL + "/from"), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	ingestOne(t, o, "a", "job_created")
	d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
	if len(d.Attempts) != 2 || d.Attempts[0].ResponseStatusCode != http.StatusFound || d.Attempts[1].ResponseStatusCode != http.StatusFound {
		t.Fatalf("a delivery answered 302 ended with attempts %+v, want two failed attempts answered 302", d.Attempts)
	}
	if from.Load() != 2 || to.Load() != 0 {
		t.Fatalf("the redirecting URL got %d requests and its target %d, want 2 and 0", from.Load(), to.Load())
	}
}

// Every webhook of an event gets the same webhook-id, the event's id, and
// the wire format's fixed headers.
func TestOneWebhookIDAcrossWebhooks(t *testing.T) {
	rc := testkit.NewRecorder(t)
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	paths := []string{"/one", "/two", "/three"}
	for _, p := range paths {
		if _, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr(p), URL: ptr(rc.URL(p)), Events: &[]string{"job_created"}}); err != nil {
			t.Fatal(err)
		}
	}
	r := ingestOne(t, o, "a", "job_created")
	if r.Deliveries != 3 {
		t.Fatalf("ingest answered %d deliveries, want 3", r.Deliveries)
	}
	rc.WaitFor(t, "", 3)
	for _, p := range paths {
		got := rc.Requests(p)
		if len(got) != 1 {
			t.Fatalf("%s got %d requests, want 1", p, len(got))
		}
		h := got[0].Header
		if h.Get("Webhook-Id") != r.ID {
			t.Errorf("%s got webhook-id %q, want the event id %q", p, h.Get("Webhook-Id"), r.ID)
		}
		if h.Get("User-Agent") != "caddy-webhooks" {
			t.Errorf("%s got User-Agent %q, want caddy-webhooks", p, h.Get("User-Agent"))
		}
		if h.Get("Content-Type") != "application/json" {
			t.Errorf("%s got Content-Type %q, want application/json", p, h.Get("Content-Type"))
		}
	}
}

// A skipped delivery (recorded while its webhook was disabled) is resent
// once the webhook is enabled again, with the event's id.
func TestResendSkipped(t *testing.T) {
	ids := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ids <- r.Header.Get("Webhook-Id") }))
	defer srv.Close()
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}, Enabled: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	r := ingestOne(t, o, "a", "job_created")
	skipped := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusSkipped })
	if len(skipped.Attempts) != 0 {
		t.Fatalf("a skipped delivery has %d attempts, want none", len(skipped.Attempts))
	}
	if _, err := o.UpdateWebhook(ctx, "a", w.ID, outbox.WebhookInput{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Resend(ctx, "a", w.ID, skipped.ID); err != nil {
		t.Fatalf("resending a skipped delivery: %v", err)
	}
	if id := receive(t, ids, "the resent skipped delivery"); id != r.ID {
		t.Fatalf("the resent delivery carried webhook-id %q, want the event id %q", id, r.ID)
	}
	d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if d.ID != skipped.ID || len(d.Attempts) != 1 {
		t.Fatalf("after the resend the history holds %s with %d attempts, want the skipped delivery %s with 1", d.ID, len(d.Attempts), skipped.ID)
	}
}

// A resend or a test is one attempt: if it fails, the delivery returns to
// failed instead of starting the schedule again.
func TestFailedResendAndTestReturnToFailed(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	ingestOne(t, o, "a", "job_created")
	failed := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
	if len(failed.Attempts) != 3 {
		t.Fatalf("failed after %d attempts, want 3", len(failed.Attempts))
	}
	if _, err := o.Resend(ctx, "a", w.ID, failed.ID); err != nil {
		t.Fatal(err)
	}
	d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed && len(d.Attempts) > 3 })
	if len(d.Attempts) != 4 || d.NextAttemptAt != nil {
		t.Fatalf("a failed resend left %d attempts and next attempt %v, want 4 and none", len(d.Attempts), d.NextAttemptAt)
	}

	test, err := o.Test(ctx, "a", w.ID)
	if err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "the test delivery to fail", func() bool {
		d, _, _ := o.Delivery(ctx, "a", w.ID, test.ID)
		return d != nil && d.Status == outbox.StatusFailed
	})
	got, _, _ := o.Delivery(ctx, "a", w.ID, test.ID)
	if len(got.Attempts) != 1 {
		t.Fatalf("a failed test delivery made %d attempts, want 1", len(got.Attempts))
	}
	// Both are final: nothing more reaches the endpoint.
	if n := hits.Load(); n != 5 {
		t.Fatalf("the endpoint got %d requests, want 5 (3 attempts, 1 resend, 1 test)", n)
	}
}

// Giving up on a delivery and disabling a webhook are logged at warn with
// the ids, never with a secret or a body; attempts are logged at debug.
func TestGiveUpAndDisableLoggedAtWarn(t *testing.T) {
	const secret, marker = "log-test-SECRET-0f1e2d", "body-marker-7c6b5a"
	var gone atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(500)
	}))
	defer srv.Close()
	core, logs := observer.New(zapcore.DebugLevel)
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{}, Logger: zap.New(core)})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}, Secret: ptr(secret)})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"job_created","data":{"appId":"a","note":"` + marker + `"}}`)
	first, err := o.Ingest(ctx, body, "")
	if err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "a warn line for the delivery given up", func() bool {
		return logs.FilterMessage("delivery failed").FilterField(zap.String("event_id", first.ID)).Len() == 1
	})
	gone.Store(true)
	second, err := o.Ingest(ctx, body, "")
	if err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "a warn line for the webhook disabled as gone", func() bool {
		return logs.FilterMessage("webhook disabled").FilterField(zap.String("event_id", second.ID)).Len() == 1
	})

	for _, msg := range []string{"delivery failed", "webhook disabled"} {
		for _, e := range logs.FilterMessage(msg).All() {
			if e.Level != zapcore.WarnLevel {
				t.Errorf("%q logged at %v, want warn", msg, e.Level)
			}
			fields := e.ContextMap()
			for _, k := range []string{"webhook_id", "event_id", "delivery_id"} {
				if fields[k] == nil || fields[k] == "" {
					t.Errorf("%q has no %s: %v", msg, k, fields)
				}
			}
			if fields["webhook_id"] != w.ID {
				t.Errorf("%q names webhook %v, want %s", msg, fields["webhook_id"], w.ID)
			}
		}
	}
	if r := logs.FilterMessage("webhook disabled").All()[0].ContextMap()["reason"]; r != "gone" {
		t.Errorf("the disable line gives reason %v, want gone", r)
	}
	if n := logs.FilterMessage("delivery attempt").FilterLevelExact(zapcore.DebugLevel).Len(); n != 2 {
		t.Errorf("%d attempts logged at debug, want 2", n)
	}
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + fmt.Sprint(v)
		}
		if strings.Contains(line, secret) || strings.Contains(line, marker) {
			t.Errorf("a log line shows the secret or the body: %s", line)
		}
	}
}

// With no retry_schedule the documented default is in force: ten attempts,
// the first retry 5 s (±20%) after the first failure.
func TestDefaultRetrySchedule(t *testing.T) {
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}
	if fmt.Sprint(outbox.DefaultRetrySchedule) != fmt.Sprint(want) {
		t.Fatalf("the default retry_schedule is %v, want %v", outbox.DefaultRetrySchedule, want)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	o := openTest(t, outbox.Options{})
	w, err := o.CreateWebhook(context.Background(), "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	ingestOne(t, o, "a", "job_created")
	d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return len(d.Attempts) == 1 && d.NextAttemptAt != nil })
	if wait := d.NextAttemptAt.Sub(d.Attempts[0].SentAt); wait < 4*time.Second || wait > 6*time.Second {
		t.Fatalf("with the default schedule the first retry is %v after the failure, want 5s ±20%%", wait)
	}
}
