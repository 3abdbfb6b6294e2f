package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// These are the probes of bad input and hostile clients, against a real
// Caddy: each must hold as the contract says.

// A config change that fails to load (a bad retry_schedule value posted to
// the admin endpoint's /config/ routes) leaves the running config whole:
// the management API on the admin endpoint, every caddy_webhooks_* metric,
// ingest and deliveries.
func TestProbeFailedConfigChangeKeepsAdminAPIAndMetrics(t *testing.T) {
	const app = "probe-reload"
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	hook := s.createWebhook(t, app, map[string]any{"name": "r", "url": rc.URL("/r"), "events": []string{"job_created"}})
	s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"probe-reload","n":0}}`))
	wait.Until(t, "the first delivery never arrived", func() bool { return rc.Count("/r") == 1 })

	for i, change := range []struct{ method, path, body string }{
		{http.MethodPost, "/config/apps/webhooks/retry_schedule/0", `{"bogus":1}`},
		{http.MethodPatch, "/config/apps/webhooks/timeout", `"not a duration"`},
		// A whole config names its admin address, or Caddy moves the
		// admin endpoint to the default one.
		{http.MethodPost, "/load", `{"admin":{"listen":"` + s.Admin + `"},"apps":{"webhooks":{"workers":"many"}}}`},
	} {
		status, body := call(t, change.method, s.adminURL(change.path), change.body)
		if status < 400 {
			t.Fatalf("%s %s %s answered %d %s; the probe needs a change that fails", change.method, change.path, change.body, status, body)
		}
		if s.Exited() {
			t.Fatalf("caddy exited after a failed config change")
		}
		status, body = call(t, http.MethodGet, s.adminURL("/webhooks/apps/"+app+"/webhooks"), nil)
		if status != http.StatusOK || !strings.Contains(string(body), hook.ID) {
			t.Fatalf("after %s %s failed, the admin endpoint's GET /webhooks/apps/%s/webhooks answered %d %s, want 200 with the webhook",
				change.method, change.path, app, status, body)
		}
		m := s.metrics(t)
		for _, name := range []string{"caddy_webhooks_events_received_total", "caddy_webhooks_delivery_attempts_total",
			"caddy_webhooks_outbox_pending", "caddy_webhooks_delivery_duration_seconds_count"} {
			if _, ok := m.Value(name); !ok {
				t.Errorf("after %s %s failed, /metrics has no %s", change.method, change.path, name)
			}
		}
		if v, ok := m.Value("caddy_webhooks_events_received_total", "event", "job_created"); !ok || v < float64(i+1) {
			t.Errorf("after %s %s failed, caddy_webhooks_events_received_total{event=\"job_created\"} = %v, want at least %d", change.method, change.path, v, i+1)
		}
		s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, i+1))
		wait.Until(t, "a delivery after a failed config change never arrived", func() bool { return rc.Count("/r") == i+2 })
		created := s.createWebhook(t, app, map[string]any{"name": fmt.Sprint("after ", i), "url": rc.URL("/other"), "events": []string{"job_finished"}})
		if created.ID == "" {
			t.Fatalf("create through the admin endpoint after a failed change returned no id")
		}
	}
}

// Deliveries never reach Caddy's own admin endpoint, although
// allow_destinations covers its address: not by its literal address (400
// at create) and not by a name that resolves to it (refused at dial time).
// The config is the same afterwards.
func TestProbeAdminEndpointNeverReached(t *testing.T) {
	const app = "probe-admin"
	s := startSender(t, senderConfig{}, "")
	_, port, err := net.SplitHostPort(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	_, before := call(t, http.MethodGet, s.adminURL("/config/"), nil)
	for _, u := range []string{"http://" + s.Admin + "/load", "http://127.1:" + port + "/stop", "http://0x7f000001:" + port + "/config/",
		"http://[::ffff:127.0.0.1]:" + port + "/load"} {
		status, body := call(t, http.MethodPost, s.hooksURL(app), map[string]any{"name": "admin", "url": u, "events": []string{"job_created"}})
		if status != http.StatusBadRequest || !strings.Contains(string(body), "admin endpoint") {
			t.Errorf("creating a webhook to %s answered %d %s, want 400 naming the admin endpoint", u, status, body)
		}
	}
	hook := s.createWebhook(t, app, map[string]any{"name": "by name", "url": "http://localhost:" + port + "/load", "events": []string{"job_created"}})
	status, body := call(t, http.MethodPost, s.hooksURL(app)+"/"+hook.ID+"/test", nil)
	if status != http.StatusAccepted {
		t.Fatalf("test delivery answered %d %s, want 202", status, body)
	}
	var d deliveryJSON
	wait.Until(t, "the test delivery to the admin endpoint never finished", func() bool {
		ds := s.deliveries(t, app, hook.ID)
		if len(ds) == 1 && ds[0].Status != "pending" {
			d = ds[0]
			return true
		}
		return false
	})
	if d.Status != "failed" || !strings.Contains(d.LastError, "admin endpoint") || d.ResponseStatusCode != 0 {
		t.Fatalf("the test delivery to localhost:%s ended %s (%d, %q), want failed, refused as the admin endpoint", port, d.Status, d.ResponseStatusCode, d.LastError)
	}
	if _, after := call(t, http.MethodGet, s.adminURL("/config/"), nil); string(after) != string(before) {
		t.Fatalf("the config changed:\nbefore %s\nafter  %s", before, after)
	}
}

// An app id that is not 1 to 128 bytes of A-Z a-z 0-9 . _ : - is refused
// on the API and at ingest, so nothing is stored under it; a webhook
// deleted under a valid id stays deleted across restarts.
func TestProbeAppIDs(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	hook := map[string]any{"name": "x", "url": rc.URL("/x"), "events": []string{"job_created"}}
	for _, id := range []string{"bad%FFapp", "bad%EF%BF%BDapp", "a%2Fb", "a%00b", strings.Repeat("a", 5000)} {
		u := s.adminURL("/webhooks/apps/" + id + "/webhooks")
		status, body := call(t, http.MethodPost, u, hook)
		if status != http.StatusBadRequest || !strings.Contains(string(body), "appId") {
			t.Errorf("POST %.60s answered %d %s, want 400 naming appId", u, status, body)
		}
	}
	for _, body := range []string{`{"event":"job_created","data":{"appId":"a/b"}}`, `{"event":"job_created","data":{"appId":"bad\ufffdapp"}}`,
		`{"event":"job_created","data":{"appId":"` + strings.Repeat("a", 129) + `"}}`} {
		if status, out := ingest(t, s.ingestURL(), []byte(body)); status != http.StatusBadRequest || !strings.Contains(string(out), "appId") {
			t.Errorf("ingest of %.60s answered %d %s, want 400 naming appId", body, status, out)
		}
	}
	created := s.createWebhook(t, "probe-app.1", hook)
	dir := s.Dir
	s.Stop()
	s = startSender(t, s.cfg, dir)
	if status, body := call(t, http.MethodGet, s.adminURL("/webhooks/apps"), nil); status != http.StatusOK || strings.TrimSpace(string(body)) != `{"data":["probe-app.1"]}` {
		t.Fatalf("after a restart GET /webhooks/apps answered %d %s, want only probe-app.1", status, body)
	}
	if status, body := call(t, http.MethodDelete, s.hooksURL("probe-app.1")+"/"+created.ID, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE answered %d %s", status, body)
	}
	s.Stop()
	s = startSender(t, s.cfg, dir)
	if got := s.listWebhooks(t, "probe-app.1"); len(got) != 0 {
		t.Fatalf("the deleted webhook came back after a restart: %+v", got)
	}
	if a := s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"probe-app.1"}}`)); a.Deliveries != 0 {
		t.Fatalf("ingest after the delete created %d deliveries", a.Deliveries)
	}
}

// Ingest refuses what receivers would read differently and a reused
// Idempotency-Key with another body; nothing of it is delivered.
func TestProbeIngestBodies(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	h1 := s.createWebhook(t, "app1", map[string]any{"name": "1", "url": rc.URL("/app1"), "events": []string{"job_created"}})
	h2 := s.createWebhook(t, "app2", map[string]any{"name": "2", "url": rc.URL("/app2"), "events": []string{"job_created"}})
	for _, body := range []string{
		"{\"event\":\"job_created\",\"data\":{\"appId\":\"app1\",\"name\":\"caf\xe9\"}}",
		`{"event":"job_created","data":{"appId":"app2","appId":"app1"}}`,
		`{"event":"job_created","event":"job_finished","data":{"appId":"app1"}}`,
		`{"event":"job_created","data":{"appId":"app1","x":{"k":1,"\u006b":2}}}`,
	} {
		if status, out := ingest(t, s.ingestURL(), []byte(body)); status != http.StatusBadRequest {
			t.Errorf("ingest of %q answered %d %s, want 400", body, status, out)
		}
	}
	post := func(body, key string) (int, string) {
		a := testkit.Call(t, http.MethodPost, s.ingestURL(), body, http.Header{"Idempotency-Key": {key}})
		return a.Status, string(a.Body)
	}
	first := `{"event":"job_created","data":{"appId":"app1","n":1}}`
	if status, out := post(first, "order-42"); status != http.StatusAccepted {
		t.Fatalf("first use of the key answered %d %s", status, out)
	}
	if status, out := post(`{"event":"job_created","data":{"appId":"app1","n":2}}`, "order-42"); status != http.StatusUnprocessableEntity || !strings.Contains(out, "order-42") {
		t.Errorf("the key with another body answered %d %s, want 422 naming the key", status, out)
	}
	if status, out := post(first, "order-42"); status != http.StatusOK {
		t.Errorf("the key with the same body answered %d %s, want 200", status, out)
	}
	wait.Until(t, "the accepted event was never delivered", func() bool { return rc.Count("/app1") == 1 })
	if n := len(s.deliveries(t, "app1", h1.ID)); n != 1 {
		t.Errorf("app1 has %d deliveries, want 1", n)
	}
	if n := len(s.deliveries(t, "app2", h2.ID)); n != 0 {
		t.Errorf("app2 has %d deliveries, want none", n)
	}
}

// Paths with "..", "." or "//" under /webhooks/ answer a JSON 404 on the
// webhook_admin site, never a redirect.
func TestProbeNonCanonicalPaths(t *testing.T) {
	s := startSender(t, senderConfig{}, "")
	noRedirect := &http.Client{Transport: testkit.Client().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/webhooks/apps/app1/../../events", "/webhooks//apps", "/webhooks/apps/./x/webhooks", "/webhooks/apps/%2e%2e/events"} {
		req, _ := http.NewRequest(http.MethodGet, s.siteURL(""), nil)
		req.URL.Opaque = p // sent as written, not cleaned by the client
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Location") != "" {
			t.Errorf("GET %s on the site answered %d %q (Location %q), want a JSON 404", p, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Location"))
		}
	}
}
