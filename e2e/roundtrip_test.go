package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestSenderToReceiver delivers through both sides: the sender signs, a
// Caddy site with webhook_verify in front of a backend verifies, and only
// signed requests reach the backend, with their body intact.
func TestSenderToReceiver(t *testing.T) {
	const (
		app    = capawesomeAppID
		secret = "round-trip-secret"
	)
	backend := testkit.NewRecorder(t)
	xsigPort, stdPort := testkit.FreePort(t), testkit.FreePort(t)
	whsec := "whsec_" + base64.StdEncoding.EncodeToString([]byte(secret))
	sites := fmt.Sprintf(`
http://127.0.0.1:%d {
	webhook_verify {
		secret %s
	}
	reverse_proxy %s
}

http://127.0.0.1:%d {
	webhook_verify {
		secret %s
		scheme standard
	}
	reverse_proxy %s
}
`, xsigPort, secret, backend.Addr(), stdPort, whsec, backend.Addr())
	s := startSender(t, senderConfig{Sites: sites}, "")

	s.createWebhook(t, app, map[string]any{"name": "x-signature receiver", "url": fmt.Sprintf("http://127.0.0.1:%d/x", xsigPort), "events": []string{"job_finished"}, "secret": secret})
	s.createWebhook(t, app, map[string]any{"name": "standard receiver", "url": fmt.Sprintf("http://127.0.0.1:%d/std", stdPort), "events": []string{"job_finished"}, "secret": secret})

	if a := s.mustIngest(t, []byte(capawesomeJobFinished)); a.Deliveries != 2 {
		t.Fatalf("ingest answered deliveries=%d, want 2", a.Deliveries)
	}
	wait.Until(t, "the backend behind webhook_verify did not get both signed deliveries", func() bool {
		return backend.Count("/x") == 1 && backend.Count("/std") == 1
	})
	for _, path := range []string{"/x", "/std"} {
		if got := backend.Requests(path)[0].Body; !bytes.Equal(got, []byte(capawesomeJobFinished)) {
			t.Errorf("backend behind webhook_verify (%s) got body %q, want the event's bytes", path, got)
		}
	}

	// Unsigned and wrongly signed requests stop at webhook_verify.
	for _, c := range []struct {
		name, sig string
	}{{"unsigned", ""}, {"wrongly signed", strings.Repeat("0", 64)}} {
		header := http.Header{}
		if c.sig != "" {
			header.Set("X-Signature", c.sig)
		}
		a := testkit.Call(t, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/x", xsigPort), capawesomeJobFinished, header)
		if a.Status != http.StatusUnauthorized {
			t.Errorf("%s request to webhook_verify answered %d, want 401", c.name, a.Status)
		}
	}
	if n := backend.Count("/x"); n != 1 {
		t.Errorf("backend got %d requests on /x, want only the signed delivery", n)
	}
}
