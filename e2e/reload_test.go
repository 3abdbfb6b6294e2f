package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
)

// TestReloadKeepsPending reloads Caddy with a changed config while
// deliveries wait for a failing endpoint: the store stays open (Badger is
// not reopened) and every event is delivered once the endpoint recovers.
func TestReloadKeepsPending(t *testing.T) {
	const (
		app    = "reload-app"
		events = 20
	)
	rc := newReceiver(t)
	rc.setRespond(always(http.StatusInternalServerError))
	s := startSender(t, senderConfig{RetrySchedule: "1s 1s 1s 1s 1s 1s 1s 1s"}, "")
	hook := s.createWebhook(t, app, map[string]any{"name": "down for now", "url": rc.url("/hook"), "events": []string{"job_finished"}})

	ids := map[string]bool{}
	for i := range events {
		a := s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q,"n":%d}}`, app, i))
		ids[a.ID] = true
	}
	eventually(t, "the failing endpoint never got the first attempt of every event", func() bool {
		return rc.count("/hook") >= events
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
	extraPort := testcaddy.FreePort(t)
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

	rc.setRespond(always(http.StatusOK))
	delivered := func() int {
		n := map[string]bool{}
		for _, r := range rc.requests("/hook") {
			if ids[r.Header.Get("webhook-id")] {
				n[r.Header.Get("webhook-id")] = true
			}
		}
		return len(n)
	}
	// Count only answers after the fix: the receiver answers 200 from here on.
	eventually(t, "not every pending event was delivered after the reload", func() bool {
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
	logs := s.Logs()
	for _, bad := range []string{"opening badger", "opening storage"} {
		if strings.Contains(logs, bad) {
			t.Errorf("caddy logged %q during the reload: the store was reopened", bad)
		}
	}
	// The app says whether it reused the open store.
	if !strings.Contains(logs, `"reused":true`) && !strings.Contains(logs, `reused: true`) {
		t.Logf("note: no log line says the reload reused the open store")
	}
	// The changed config is in effect through the same ingest site.
	if a := s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q,"n":%d}}`, app, events)); a.Deliveries != 1 {
		t.Errorf("ingest after the reload answered deliveries=%d, want 1", a.Deliveries)
	}
}
