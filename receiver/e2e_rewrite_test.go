package receiver_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// Endpoints that a rewrite, or handle_path's strip, turns into one path
// before webhook_verify runs; the handlers share one replay window, as
// handlers with the same secrets and scheme do.
const rewriteCaddyfile = `{
	admin {ADMIN}
}

http://127.0.0.1:{PORT} {
	rewrite /a /hook
	rewrite /b /hook
	handle /hook {
		webhook_verify {
			secret {env.E2E_SECRET}
			replay_window 1h
		}
		reverse_proxy {BACKEND}
	}
	handle_path /tenant-c/* {
		webhook_verify {
			secret {env.E2E_SECRET}
			replay_window 1h
		}
		reverse_proxy {BACKEND}
	}
	handle_path /tenant-d/* {
		webhook_verify {
			secret {env.E2E_SECRET}
			replay_window 1h
		}
		reverse_proxy {BACKEND}
	}
}
`

// The replay window compares the path the sender sent, before any rewrite
// or strip: one delivery id sent to two endpoints that Caddy rewrites to
// one path is forwarded once to each, and a repeat to either is a
// duplicate.
func TestReplayPathBeforeRewrite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Caddy process")
	}
	secret := []byte("rewrite test secret")
	be := testkit.NewRecorder(t)
	_, addr, _ := startCaddy(t, rewriteCaddyfile, be.Addr(), "E2E_SECRET="+string(secret))
	client := &http.Client{Timeout: 30 * time.Second}
	body := []byte(`{"event":"job_created","data":{"appId":"a"}}`)

	for _, step := range []struct {
		path, id  string
		duplicate bool
	}{
		{"/a", "evt_1", false},
		{"/b", "evt_1", false},
		{"/a", "evt_1", true},
		{"/b", "evt_1", true},
		{"/hook", "evt_1", false},
		{"/tenant-c/hook", "evt_2", false},
		{"/tenant-d/hook", "evt_2", false},
		{"/tenant-c/hook", "evt_2", true},
		{"/tenant-d/hook", "evt_2", true},
	} {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+step.path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Signature", signature.XSignature(secret, body))
		req.Header.Set("webhook-id", step.id)
		before := be.Count("")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		dup := resp.Header.Get("Webhook-Duplicate") == "true"
		forwarded := be.Count("") - before
		if resp.StatusCode != http.StatusOK || dup != step.duplicate || forwarded != map[bool]int{false: 1, true: 0}[step.duplicate] {
			t.Fatalf("%s %s answered %d (Webhook-Duplicate %v, forwarded %d times) %s; want 200, a duplicate: %v",
				step.path, step.id, resp.StatusCode, dup, forwarded, answer, step.duplicate)
		}
		if got := be.Requests(""); forwarded == 1 && got[len(got)-1].Path != "/hook" {
			t.Fatalf("%s reached the backend as %s, want it rewritten to /hook", step.path, got[len(got)-1].Path)
		}
	}
}
