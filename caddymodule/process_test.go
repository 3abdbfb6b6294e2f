package caddymodule

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

// These tests run the real ./caddy binary, as users do.

func TestListModules(t *testing.T) {
	out, err := testcaddy.Run(t, t.TempDir(), "list-modules")
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, out)
	}
	lines := strings.Split(out, "\n")
	for _, id := range []string{
		"webhooks",
		"http.handlers.webhook_events",
		"http.handlers.webhook_admin",
		"admin.api.webhooks",
		"http.handlers.webhook_verify",
	} {
		found := false
		for _, l := range lines {
			if strings.TrimSpace(l) == id {
				found = true
			}
		}
		if !found {
			t.Errorf("caddy list-modules does not show %s", id)
		}
	}
}

type httpResult struct {
	status int
	body   string
}

func do(t *testing.T, method, url, body string, header ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, string(b)}
}

// TestValidateBesideRunningServer checks that `caddy validate` does not open
// the store: Badger locks its directory, so opening it in Provision would
// fail while a server runs on the same storage.
func TestValidateBesideRunningServer(t *testing.T) {
	port := testkit.FreePort(t)
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: fmt.Sprintf(`{
	admin {ADMIN}
	webhooks {
		storage {DIR}/webhooks-db
	}
}

:%d {
	webhook_events
}
`, port)})
	// The running server has the store open: ingest commits to it.
	res := do(t, "POST", fmt.Sprintf("http://127.0.0.1:%d/", port), `{"event":"job_created","data":{"appId":"a"}}`)
	if res.status != http.StatusAccepted {
		t.Fatalf("ingest on the running server answered %d %s, want 202", res.status, res.body)
	}
	out, err := testcaddy.Run(t, p.Dir, "validate", "--config", filepath.Join(p.Dir, "Caddyfile"), "--adapter", "caddyfile")
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("caddy validate beside a running server on the same storage failed: %v\n%s", err, out)
	}
}

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
	if res := do(t, "GET", hooks, ""); res.status != http.StatusUnauthorized {
		t.Errorf("management API without credentials answered %d, want 401", res.status)
	}
	auth := []string{"Authorization", "Basic " + basicAuth("admin", "webhooks-demo")}
	res := do(t, "POST", hooks, `{"name":"ci","url":"https://example.com/hook","events":["job_finished"]}`, auth...)
	if res.status != http.StatusCreated {
		t.Fatalf("creating a webhook through the example's management site answered %d %s, want 201", res.status, res.body)
	}
	res = do(t, "POST", fmt.Sprintf("http://127.0.0.1:%d/events", sidecar), `{"event":"job_finished","data":{"appId":"app1"}}`)
	if res.status != http.StatusAccepted || !strings.Contains(res.body, `"deliveries":1`) {
		t.Fatalf("ingest through the example's sidecar answered %d %s, want 202 with one delivery", res.status, res.body)
	}
	res = do(t, "GET", "http://"+p.Admin+"/webhooks/apps", "")
	if res.status != http.StatusOK || !strings.Contains(res.body, "app1") {
		t.Errorf("admin endpoint /webhooks/apps answered %d %s", res.status, res.body)
	}
	res = do(t, "POST", fmt.Sprintf("http://127.0.0.1:%d/", recv), `{}`)
	if res.status != http.StatusUnauthorized {
		t.Errorf("unsigned request to the example's receiver answered %d %s, want 401", res.status, res.body)
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
	res := do(t, "POST", base+"/webhooks/apps/app1/webhooks", `{"name":"ci","url":"https://example.com/hook","events":["job_created"]}`)
	if res.status != http.StatusCreated {
		t.Fatalf("create answered %d %s", res.status, res.body)
	}

	if err := p.Reload(config("5s")); err != nil {
		t.Fatal(err)
	}
	res = do(t, "GET", base+"/webhooks/apps/app1/webhooks", "")
	if res.status != http.StatusOK || !strings.Contains(res.body, `"name":"ci"`) {
		t.Fatalf("after a reload the webhook list answered %d %s, want the webhook created before", res.status, res.body)
	}
	res = do(t, "POST", base+"/events", `{"event":"job_created","data":{"appId":"app1"}}`)
	if res.status != http.StatusAccepted || !strings.Contains(res.body, `"deliveries":1`) {
		t.Fatalf("ingest after a reload answered %d %s, want 202 with one delivery", res.status, res.body)
	}
	res = do(t, "GET", "http://"+p.Admin+"/metrics", "")
	for _, m := range []string{`caddy_webhooks_events_received_total{event="job_created"} 1`, "caddy_webhooks_outbox_pending"} {
		if !strings.Contains(res.body, m) {
			t.Errorf("after a reload /metrics lacks %s", m)
		}
	}
	if !strings.Contains(p.Logs(), `"reused":true`) {
		t.Errorf("the reload did not reuse the open store:\n%s", p.Logs())
	}
}

func basicAuth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}
