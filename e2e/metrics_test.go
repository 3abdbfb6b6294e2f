package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestMetrics scrapes the admin endpoint's /metrics after deliveries, and
// again after a config reload.
func TestMetrics(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	const app = "metrics-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "m", "url": rc.URL("/m"), "events": []string{"job_created"}})
	const events = 5
	for i := range events {
		s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, i))
	}
	wait.Until(t, "the deliveries never all succeeded", func() bool {
		n := 0
		for _, d := range s.deliveries(t, app, hook.ID) {
			if d.Status == "succeeded" {
				n++
			}
		}
		return n == events
	})

	check := func(when string, minReceived float64) float64 {
		t.Helper()
		m := s.metrics(t)
		received, ok := m.Value("caddy_webhooks_events_received_total", "event", "job_created")
		if !ok {
			t.Errorf("%s: /metrics has no caddy_webhooks_events_received_total{event=\"job_created\"}", when)
		} else if received < minReceived {
			t.Errorf("%s: caddy_webhooks_events_received_total{event=\"job_created\"} = %v, want at least %v", when, received, minReceived)
		}
		if v, ok := m.Value("caddy_webhooks_delivery_attempts_total", "event", "job_created", "outcome", "success"); !ok || v < events {
			t.Errorf("%s: caddy_webhooks_delivery_attempts_total{event=\"job_created\",outcome=\"success\"} = %v (present %v), want at least %d", when, v, ok, events)
		}
		if _, ok := m.Value("caddy_webhooks_outbox_pending"); !ok {
			t.Errorf("%s: /metrics has no caddy_webhooks_outbox_pending", when)
		}
		// The directory holds at least the memtable's log by now; the
		// gauge is refreshed every 5 s.
		if v, ok := m.Value("caddy_webhooks_outbox_store_bytes"); !ok || v <= 0 {
			t.Errorf("%s: caddy_webhooks_outbox_store_bytes = %v (present %v), want the store's size", when, v, ok)
		}
		for _, name := range []string{
			"caddy_webhooks_deliveries_failed_total",
			"caddy_webhooks_delivery_duration_seconds_count",
			"caddy_webhooks_outbox_oldest_pending_seconds",
		} {
			if _, ok := m.Value(name); !ok {
				t.Errorf("%s: /metrics has no %s", when, name)
			}
		}
		return received
	}
	before := check("after deliveries", events)

	cfg := s.cfg // keeps the site port
	cfg.RetrySchedule = "200ms 200ms 200ms"
	cfg.Sites = "http://127.0.0.1:" + fmt.Sprint(testkit.FreePort(t)) + " {\n\trespond \"metrics reload\"\n}\n"
	if err := s.Reload(cfg.caddyfile()); err != nil {
		t.Fatalf("caddy reload failed: %v", err)
	}
	if s.Exited() {
		t.Fatalf("caddy exited after the reload:\n%s", s.Logs())
	}
	check("after a reload", before)

	// Still counting after the reload.
	s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, events))
	wait.Until(t, "an event after the reload was not delivered", func() bool { return rc.Count("/m") >= events+1 })
	check("after a reload and one more event", before+1)

	status, body := call(t, http.MethodGet, s.adminURL("/config/"), nil)
	if status != http.StatusOK {
		t.Errorf("admin endpoint answered %d %s after the reload, want 200", status, body)
	}
}

// TestMetricValues posts N events to an app with a healthy and a failing
// webhook and scrapes /metrics once everything settled: the counters say
// N events, N successes, 2N failed attempts (one retry each) and N
// deliveries given up, and the pending gauge falls back to 0.
func TestMetricValues(t *testing.T) {
	const (
		app    = "metric-values-app"
		events = 7
	)
	rc := testkit.NewRecorder(t)
	rc.SetRespond(func(r testkit.Request, _ int) (int, string) {
		if r.Path == "/bad" {
			return http.StatusInternalServerError, "down"
		}
		return http.StatusOK, "ok"
	})
	s := startSender(t, senderConfig{RetrySchedule: "100ms"}, "")
	good := s.createWebhook(t, app, map[string]any{"name": "good", "url": rc.URL("/good"), "events": []string{"job_created"}})
	bad := s.createWebhook(t, app, map[string]any{"name": "bad", "url": rc.URL("/bad"), "events": []string{"job_created"}})
	for i := range events {
		s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, i))
	}
	s.settled(t, app, good.ID, bad.ID)

	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"caddy_webhooks_events_received_total", []string{"event", "job_created"}, events},
		{"caddy_webhooks_events_received_total", []string{"event", "job_finished"}, 0},
		{"caddy_webhooks_delivery_attempts_total", []string{"event", "job_created", "outcome", "success"}, events},
		{"caddy_webhooks_delivery_attempts_total", []string{"event", "job_created", "outcome", "failure"}, 2 * events},
		{"caddy_webhooks_deliveries_failed_total", []string{"event", "job_created"}, events},
		{"caddy_webhooks_delivery_duration_seconds_count", []string{"outcome", "success"}, events},
		{"caddy_webhooks_delivery_duration_seconds_count", []string{"outcome", "failure"}, 2 * events},
	}
	m := s.metrics(t)
	for _, w := range want {
		if v, ok := m.Value(w.name, w.labels...); !ok || v != w.value {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.value)
		}
	}
	// The gauges are refreshed every 5 s.
	wait.Until(t, "caddy_webhooks_outbox_pending never fell to 0 once everything settled", func() bool {
		v, ok := s.metrics(t).Value("caddy_webhooks_outbox_pending")
		return ok && v == 0
	})
	if v, ok := s.metrics(t).Value("caddy_webhooks_outbox_oldest_pending_seconds"); !ok || v != 0 {
		t.Errorf("caddy_webhooks_outbox_oldest_pending_seconds = %v (present %v) with nothing pending, want 0", v, ok)
	}
}
