package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
)

// TestMetrics scrapes the admin endpoint's /metrics after deliveries, and
// again after a config reload.
func TestMetrics(t *testing.T) {
	rc := newReceiver(t)
	s := startSender(t, senderConfig{}, "")
	const app = "metrics-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "m", "url": rc.url("/m"), "events": []string{"job_created"}})
	const events = 5
	for i := range events {
		s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, i))
	}
	eventually(t, "the deliveries never all succeeded", func() bool {
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
		text := s.metricsText(t)
		received, ok := metricValue(text, "caddy_webhooks_events_received_total", `event="job_created"`)
		if !ok {
			t.Errorf("%s: /metrics has no caddy_webhooks_events_received_total{event=\"job_created\"}", when)
		} else if received < minReceived {
			t.Errorf("%s: caddy_webhooks_events_received_total{event=\"job_created\"} = %v, want at least %v", when, received, minReceived)
		}
		if v, ok := metricValue(text, "caddy_webhooks_delivery_attempts_total", `event="job_created"`, `outcome="success"`); !ok || v < events {
			t.Errorf("%s: caddy_webhooks_delivery_attempts_total{event=\"job_created\",outcome=\"success\"} = %v (present %v), want at least %d", when, v, ok, events)
		}
		if _, ok := metricValue(text, "caddy_webhooks_outbox_pending"); !ok {
			t.Errorf("%s: /metrics has no caddy_webhooks_outbox_pending", when)
		}
		// The directory holds at least the memtable's log by now; the
		// gauge is refreshed every 5 s.
		if v, ok := metricValue(text, "caddy_webhooks_outbox_store_bytes"); !ok || v <= 0 {
			t.Errorf("%s: caddy_webhooks_outbox_store_bytes = %v (present %v), want the store's size", when, v, ok)
		}
		for _, name := range []string{
			"caddy_webhooks_deliveries_failed_total",
			"caddy_webhooks_delivery_duration_seconds_count",
			"caddy_webhooks_outbox_oldest_pending_seconds",
		} {
			if _, ok := metricValue(text, name); !ok {
				t.Errorf("%s: /metrics has no %s", when, name)
			}
		}
		return received
	}
	before := check("after deliveries", events)

	cfg := s.cfg // keeps the site port
	cfg.RetrySchedule = "200ms 200ms 200ms"
	cfg.Sites = "http://127.0.0.1:" + fmt.Sprint(testcaddy.FreePort(t)) + " {\n\trespond \"metrics reload\"\n}\n"
	if err := s.Reload(cfg.caddyfile()); err != nil {
		t.Fatalf("caddy reload failed: %v", err)
	}
	if s.Exited() {
		t.Fatalf("caddy exited after the reload:\n%s", s.Logs())
	}
	check("after a reload", before)

	// Still counting after the reload.
	s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, events))
	eventually(t, "an event after the reload was not delivered", func() bool { return rc.count("/m") >= events+1 })
	check("after a reload and one more event", before+1)

	status, body := call(t, http.MethodGet, s.adminURL("/config/"), nil)
	if status != http.StatusOK {
		t.Errorf("admin endpoint answered %d %s after the reload, want 200", status, body)
	}
}
