package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

// These tests run the real ./caddy binary, as users do.

// TestExampleRuns starts Caddyfile.example, on free ports, and uses each of
// its sites once.
func TestExampleRuns(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	sidecar, mgmt, recv := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	text := strings.NewReplacer(
		"admin localhost:2019", "admin {ADMIN}",
		"storage ./webhooks-data", "storage {DIR}/webhooks-data",
		":8080 {", fmt.Sprintf(":%d {", sidecar),
		":8081 {", fmt.Sprintf(":%d {", mgmt),
		":8082 {", fmt.Sprintf(":%d {", recv),
	).Replace(string(raw))
	for _, s := range []string{"admin localhost:2019", "\n:808", "./webhooks-data"} {
		if strings.Contains(text, s) {
			t.Fatalf("the example changed: %q is left after replacing ports and paths", s)
		}
	}
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: text})

	hooks := fmt.Sprintf("http://127.0.0.1:%d/webhooks/apps/app1/webhooks", mgmt)
	if res := testkit.Call(t, "GET", hooks, nil, nil); res.Status != http.StatusUnauthorized {
		t.Errorf("management API without credentials answered %d, want 401", res.Status)
	}
	auth := http.Header{"Authorization": {testkit.BasicAuth("admin", "webhooks-demo")}}
	res := testkit.Call(t, "POST", hooks, `{"name":"ci","url":"https://example.com/hook","events":["job_finished"]}`, auth)
	if res.Status != http.StatusCreated {
		t.Fatalf("creating a webhook through the example's management site answered %d %s, want 201", res.Status, res.Body)
	}
	res = testkit.Call(t, "POST", fmt.Sprintf("http://127.0.0.1:%d/events", sidecar), `{"event":"job_finished","data":{"appId":"app1"}}`, nil)
	if res.Status != http.StatusAccepted || !strings.Contains(string(res.Body), `"deliveries":1`) {
		t.Fatalf("ingest through the example's sidecar answered %d %s, want 202 with one delivery", res.Status, res.Body)
	}
	res = testkit.Call(t, "GET", "http://"+p.Admin+"/webhooks/apps", nil, nil)
	if res.Status != http.StatusOK || !strings.Contains(string(res.Body), "app1") {
		t.Errorf("admin endpoint /webhooks/apps answered %d %s", res.Status, res.Body)
	}
	res = testkit.Call(t, "POST", fmt.Sprintf("http://127.0.0.1:%d/", recv), `{}`, nil)
	if res.Status != http.StatusUnauthorized {
		t.Errorf("unsigned request to the example's receiver answered %d %s, want 401", res.Status, res.Body)
	}
}

// TestReloadKeepsStore reloads the config: the store stays open and keeps
// its webhooks, ingest keeps working, and the metrics are still exported.
func TestReloadKeepsStore(t *testing.T) {
	port := testkit.FreePort(t)
	config := func(timeout string) string {
		return fmt.Sprintf(`{
	admin {ADMIN}
	webhooks {
		storage {DIR}/webhooks-db
		timeout %s
	}
}

:%d {
	webhook_events /events
	webhook_admin /webhooks/*
}
`, timeout, port)
	}
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: config("10s")})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	res := testkit.Call(t, "POST", base+"/webhooks/apps/app1/webhooks", `{"name":"ci","url":"https://example.com/hook","events":["job_created"]}`, nil)
	if res.Status != http.StatusCreated {
		t.Fatalf("create answered %d %s", res.Status, res.Body)
	}

	if err := p.Reload(config("5s")); err != nil {
		t.Fatal(err)
	}
	res = testkit.Call(t, "GET", base+"/webhooks/apps/app1/webhooks", nil, nil)
	if res.Status != http.StatusOK || !strings.Contains(string(res.Body), `"name":"ci"`) {
		t.Fatalf("after a reload the webhook list answered %d %s, want the webhook created before", res.Status, res.Body)
	}
	res = testkit.Call(t, "POST", base+"/events", `{"event":"job_created","data":{"appId":"app1"}}`, nil)
	if res.Status != http.StatusAccepted || !strings.Contains(string(res.Body), `"deliveries":1`) {
		t.Fatalf("ingest after a reload answered %d %s, want 202 with one delivery", res.Status, res.Body)
	}
	m := testkit.Scrape(t, "http://"+p.Admin+"/metrics")
	if v, ok := m.Value("caddy_webhooks_events_received_total", "event", "job_created"); !ok || v != 1 {
		t.Errorf(`after a reload /metrics has caddy_webhooks_events_received_total{event="job_created"} %v (present %v), want 1`, v, ok)
	}
	if _, ok := m.Value("caddy_webhooks_outbox_pending"); !ok {
		t.Errorf("after a reload /metrics lacks caddy_webhooks_outbox_pending")
	}
	if !strings.Contains(p.Logs(), `"reused":true`) {
		t.Errorf("the reload did not reuse the open store:\n%s", p.Logs())
	}
}
