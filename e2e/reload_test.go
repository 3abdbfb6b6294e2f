package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestReloadKeepsPending reloads Caddy with a changed config while
// deliveries wait for a failing endpoint: the store stays open (Badger is
// not reopened) and every event is delivered once the endpoint recovers.
func TestReloadKeepsPending(t *testing.T) {
	const (
		app    = "reload-app"
		events = 20
	)
	rc := testkit.NewRecorder(t)
	rc.SetRespond(testkit.Always(http.StatusInternalServerError))
	s := startSender(t, senderConfig{RetrySchedule: "1s 1s 1s 1s 1s 1s 1s 1s"}, "")
	hook := s.createWebhook(t, app, map[string]any{"name": "down for now", "url": rc.URL("/hook"), "events": []string{"job_finished"}})

	ids := map[string]bool{}
	for i := range events {
		a := s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q,"n":%d}}`, app, i))
		ids[a.ID] = true
	}
	wait.Until(t, "the failing endpoint never got the first attempt of every event", func() bool {
		return rc.Count("/hook") >= events
	})
	pending := 0
	for _, d := range s.deliveries(t, app, hook.ID) {
		if d.Status == "pending" {
			pending++
		}
	}
	if pending != events {
		t.Fatalf("before the reload %d deliveries are pending, want %d", pending, events)
	}

	cfg := s.cfg // keeps the site port
	// A changed config: another retry schedule and one more site.
	extraPort := testkit.FreePort(t)
	cfg.RetrySchedule = "500ms 500ms 500ms 500ms 500ms 500ms 500ms 500ms"
	cfg.Sites = fmt.Sprintf("http://127.0.0.1:%d {\n\trespond \"added by reload\"\n}\n", extraPort)
	if err := s.Reload(cfg.caddyfile()); err != nil {
		t.Fatalf("caddy reload with deliveries pending failed: %v", err)
	}
	status, body := call(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", extraPort), nil)
	if status != http.StatusOK || string(body) != "added by reload" {
		t.Fatalf("the site added by the reload answered %d %q; the new config is not running", status, body)
	}
	s.cfg = cfg

	rc.SetRespond(testkit.Always(http.StatusOK))
	delivered := func() int {
		n := map[string]bool{}
		for _, r := range rc.Requests("/hook") {
			if ids[r.Header.Get("webhook-id")] {
				n[r.Header.Get("webhook-id")] = true
			}
		}
		return len(n)
	}
	// Count only answers after the fix: the receiver answers 200 from here on.
	wait.Until(t, "not every pending event was delivered after the reload", func() bool {
		ok := map[string]bool{}
		for _, d := range s.deliveries(t, app, hook.ID) {
			if d.Status == "succeeded" {
				ok[d.EventID] = true
			}
		}
		return len(ok) == events
	})
	if n := delivered(); n != events {
		t.Errorf("receiver got %d distinct events, want %d", n, events)
	}

	if s.Exited() {
		t.Fatalf("caddy exited after the reload")
	}
	// The app says, when it starts, whether it reused the open store: the
	// first start opened it, the reload reused it.
	logs := s.Logs()
	if n := strings.Count(logs, `"reused":false`); n != 1 {
		t.Errorf("%d start lines say the store was opened, want 1 (the first start)", n)
	}
	if n := strings.Count(logs, `"reused":true`); n != 1 {
		t.Errorf("%d start lines say the open store was reused, want 1 (the reload)", n)
	}
	// The changed config is in effect through the same ingest site.
	if a := s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q,"n":%d}}`, app, events)); a.Deliveries != 1 {
		t.Errorf("ingest after the reload answered deliveries=%d, want 1", a.Deliveries)
	}
}

// TestReloadAppliesRetrySchedule reloads with a longer retry_schedule: the
// next failing delivery makes as many attempts as the new schedule gives,
// where one before the reload made as many as the old one gave.
func TestReloadAppliesRetrySchedule(t *testing.T) {
	const app = "reload-schedule-app"
	rc := testkit.NewRecorder(t)
	rc.SetRespond(testkit.Always(http.StatusInternalServerError))
	s := startSender(t, senderConfig{RetrySchedule: "100ms"}, "")
	hook := s.createWebhook(t, app, map[string]any{"name": "always down", "url": rc.URL("/down"), "events": []string{"job_created"}})
	attemptsOf := func(eventID string) int {
		t.Helper()
		var attempts int
		wait.Until(t, "the delivery never failed", func() bool {
			for _, d := range s.deliveries(t, app, hook.ID) {
				if d.EventID == eventID && d.Status == "failed" {
					attempts = d.Attempts
					return true
				}
			}
			return false
		})
		return attempts
	}
	before := s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"reload-schedule-app","n":1}}`))
	if n := attemptsOf(before.ID); n != 2 {
		t.Fatalf("before the reload a failing delivery made %d attempts, want 2 (retry_schedule 100ms)", n)
	}

	cfg := s.cfg
	cfg.RetrySchedule = "100ms 100ms 100ms 100ms"
	if err := s.Reload(cfg.caddyfile()); err != nil {
		t.Fatalf("caddy reload: %v", err)
	}
	s.cfg = cfg
	after := s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"reload-schedule-app","n":2}}`))
	if n := attemptsOf(after.ID); n != 5 {
		t.Fatalf("after a reload to retry_schedule 100ms 100ms 100ms 100ms a failing delivery made %d attempts, want 5", n)
	}
	if n := rc.Count("/down"); n != 7 {
		t.Errorf("the endpoint got %d requests, want 7 (2 before the reload, 5 after)", n)
	}
}
