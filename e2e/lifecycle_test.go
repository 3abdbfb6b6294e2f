package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestIdempotencyKey repeats an ingest with the same Idempotency-Key: the
// repeat answers 200 with the first event's id and delivers nothing new.
func TestIdempotencyKey(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	const app = "idem-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "once", "url": rc.URL("/once"), "events": []string{"job_created"}})

	post := func(key string) (int, ingestAnswer) {
		t.Helper()
		a := testkit.Call(t, http.MethodPost, s.ingestURL(), `{"event":"job_created","data":{"appId":"idem-app","id":"job-1"}}`,
			http.Header{"Idempotency-Key": {key}})
		return a.Status, decode[ingestAnswer](t, "ingest with an Idempotency-Key", a.Body)
	}
	status, first := post("job-1-created")
	if status != http.StatusAccepted || first.Deliveries != 1 {
		t.Fatalf("first ingest with an Idempotency-Key answered %d %+v, want 202 with 1 delivery", status, first)
	}
	status, again := post("job-1-created")
	if status != http.StatusOK || again.ID != first.ID {
		t.Errorf("repeated Idempotency-Key answered %d %+v, want 200 with the first id %s", status, again, first.ID)
	}
	status, other := post("job-1-created-again")
	if status != http.StatusAccepted || other.ID == first.ID {
		t.Errorf("another Idempotency-Key answered %d %+v, want 202 with a new id", status, other)
	}
	wait.Until(t, "the two distinct events were not delivered", func() bool { return rc.Count("/once") >= 2 })
	s.settled(t, app, hook.ID)
	if n := rc.Count("/once"); n != 2 {
		t.Errorf("receiver got %d deliveries for two distinct keys (one repeated), want 2", n)
	}
	if ds := s.deliveries(t, app, hook.ID); len(ds) != 2 {
		t.Errorf("history lists %d deliveries, want 2", len(ds))
	}
}

// TestTestGoneAndDelete sends a test event, lets an endpoint answer 410 Gone
// (which disables its webhook), and deletes a webhook.
func TestTestGoneAndDelete(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	const app = "life-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "probe", "url": rc.URL("/probe"), "events": []string{"app_build_created", "job_created"}})

	status, body := call(t, http.MethodPost, s.hooksURL(app)+"/"+hook.ID+"/test", nil)
	if status != http.StatusAccepted {
		t.Fatalf("test send answered %d %s, want 202", status, body)
	}
	wait.Until(t, "the test event was not delivered", func() bool { return rc.Count("/probe") == 1 })
	var ev struct {
		Event string `json:"event"`
		Data  struct {
			AppID string `json:"appId"`
		} `json:"data"`
	}
	got := rc.Requests("/probe")[0]
	if err := json.Unmarshal(got.Body, &ev); err != nil || ev.Event != "app_build_created" || ev.Data.AppID != app {
		t.Errorf("test event body = %s, want an app_build_created event of %s", got.Body, app)
	}
	wait.Until(t, "the test delivery is not in the history as succeeded", func() bool {
		ds := s.deliveries(t, app, hook.ID)
		return len(ds) == 1 && ds[0].Status == "succeeded" && ds[0].Event == "app_build_created"
	})

	// 410 Gone disables the webhook.
	rc.SetRespond(testkit.Always(http.StatusGone))
	s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"life-app"}}`))
	var disabled webhookJSON
	wait.Until(t, "a webhook whose endpoint answered 410 Gone was not disabled", func() bool {
		status, body := call(t, http.MethodGet, s.hooksURL(app)+"/"+hook.ID, nil)
		disabled = decode[webhookJSON](t, "get", body)
		return status == http.StatusOK && !disabled.Enabled
	})
	if disabled.DisabledReason != "gone" {
		t.Errorf("a webhook disabled after 410 shows disabledReason %q, want gone", disabled.DisabledReason)
	}
	// The delivery answered 410 is final; once it settles nothing more
	// can reach the endpoint, so a retry would show in the count.
	s.settled(t, app, hook.ID)
	if n := rc.Count("/probe"); n != 2 {
		t.Errorf("endpoint answering 410 got %d requests, want 2 (the test and one attempt, no retries)", n)
	}

	status, body = call(t, http.MethodDelete, s.hooksURL(app)+"/"+hook.ID, nil)
	if status != http.StatusNoContent {
		t.Fatalf("DELETE of a webhook answered %d %s, want 204", status, body)
	}
	if hooks := s.listWebhooks(t, app); len(hooks) != 0 {
		t.Errorf("after DELETE the app lists %d webhooks, want 0", len(hooks))
	}
	if a := s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"life-app"}}`)); a.Deliveries != 0 {
		t.Errorf("ingest after the only webhook was deleted answered deliveries=%d, want 0", a.Deliveries)
	}
}

// TestCLIBesideRunningServer runs `caddy validate` on the running config's
// Caddyfile while the server holds the store, and `caddy list-modules`.
// Validate must not open the store: Badger locks its directory, so opening
// it in Provision would fail while a server runs on the same storage.
func TestCLIBesideRunningServer(t *testing.T) {
	s := startSender(t, senderConfig{}, "")
	// The running server has the store open: ingest commits to it.
	s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"cli-app"}}`))
	path := filepath.Join(s.Dir, "Caddyfile")
	if out, err := testcaddy.Run(t, s.Dir, "validate", "--config", path, "--adapter", "caddyfile"); err != nil || !strings.Contains(out, "Valid configuration") {
		t.Errorf("caddy validate beside a running server on the same storage failed: %v\n%s", err, out)
	}
	if s.Exited() {
		t.Fatalf("caddy exited while validate ran beside it")
	}
	s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"cli-app"}}`))

	out, err := testcaddy.Run(t, s.Dir, "list-modules")
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, out)
	}
	for _, id := range []string{"webhooks", "http.handlers.webhook_events", "http.handlers.webhook_admin", "admin.api.webhooks", "http.handlers.webhook_verify", "webhooks.storage.badger", "webhooks.storage.postgres", "http.handlers.webhook_portal"} {
		if !containsLine(out, id) {
			t.Errorf("caddy list-modules does not show %s", id)
		}
	}
}

func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
