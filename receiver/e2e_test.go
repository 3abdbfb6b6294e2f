package receiver_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

const e2eCaddyfile = `{
	admin {ADMIN}
}

http://127.0.0.1:{PORT} {
	handle /x {
		webhook_verify {
			secret {env.E2E_SECRET_OLD}
			secret {env.E2E_SECRET_NEW}
			max_body 2KB
		}
		reverse_proxy {BACKEND}
	}
	handle /standard {
		webhook_verify {
			secret {env.E2E_WHSEC}
			scheme standard
			tolerance 5m
			replay_window 1h
		}
		reverse_proxy {BACKEND}
	}
	handle /github {
		webhook_verify {
			secret {env.E2E_SECRET_NEW}
			scheme github
			replay_window 1h
		}
		reverse_proxy {BACKEND}
	}
	handle /stripe {
		webhook_verify {
			secret {env.E2E_SECRET_NEW}
			scheme stripe
		}
		reverse_proxy {BACKEND}
	}
	handle /slack {
		webhook_verify {
			secret {env.E2E_SECRET_NEW}
			scheme slack
		}
		reverse_proxy {BACKEND}
	}
	handle /shopify {
		webhook_verify {
			secret {env.E2E_SECRET_NEW}
			scheme shopify
		}
		reverse_proxy {BACKEND}
	}
}
`

// TestEndToEnd runs the built Caddy with webhook_verify in front of
// reverse_proxy and checks what the backend sees, and what a sender hears.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Caddy process")
	}
	var (
		oldSecret = []byte("old secret, still accepted")
		newSecret = []byte("new secret")
		whsecKey  = []byte("standard webhooks key bytes")
		whsec     = "whsec_" + "c3RhbmRhcmQgd2ViaG9va3Mga2V5IGJ5dGVz" // base64 of whsecKey
	)

	// The app behind Caddy records every request it sees.
	be := testkit.NewRecorder(t)
	be.SetRespond(func(testkit.Request, int) (int, string) { return http.StatusOK, `{"received":true}` })
	last := func() testkit.Request {
		got := be.Requests("")
		return got[len(got)-1]
	}

	p, addr, config := startCaddy(t, e2eCaddyfile, be.Addr(),
		"E2E_SECRET_OLD="+string(oldSecret),
		"E2E_SECRET_NEW="+string(newSecret),
		"E2E_WHSEC="+whsec,
	)
	base := "http://" + addr
	post := func(t *testing.T, path string, body io.Reader, header http.Header) testkit.Answer {
		t.Helper()
		return testkit.Call(t, http.MethodPost, base+path, body, header)
	}
	// rejected checks a 401 with a JSON error that says what failed, and
	// that the backend saw nothing.
	rejected := func(t *testing.T, path string, body []byte, header http.Header, want string) {
		t.Helper()
		before := be.Count("")
		a := post(t, path, bytes.NewReader(body), header)
		if a.Status != http.StatusUnauthorized {
			t.Fatalf("answered %d, want 401: %s", a.Status, a.Body)
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(a.Body, &e); err != nil || !strings.Contains(e.Error, want) {
			t.Fatalf("401 body %s, want a JSON error saying %q", a.Body, want)
		}
		if ct := a.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("401 Content-Type %q", ct)
		}
		for _, s := range [][]byte{oldSecret, newSecret, whsecKey} {
			if bytes.Contains(a.Body, s) {
				t.Errorf("401 body shows a secret: %s", a.Body)
			}
		}
		if n := be.Count("") - before; n != 0 {
			t.Fatalf("the backend saw %d rejected requests", n)
		}
	}

	// A body with bytes a careless proxy might touch: CRLF, NUL, high bytes.
	body := []byte("{\"event\":\"job_created\",\r\n\"data\":{\"appId\":\"a\x00\xff\"}}\n")
	xsig := func(secret, b []byte) http.Header {
		return http.Header{
			"X-Signature":  {signature.XSignature(secret, b)},
			"Content-Type": {"application/json"},
			"X-Custom":     {"kept"},
		}
	}

	t.Run("signed request reaches the backend intact", func(t *testing.T) {
		for _, secret := range [][]byte{oldSecret, newSecret} {
			before := be.Count("")
			a := post(t, "/x", bytes.NewReader(body), xsig(secret, body))
			if a.Status != 200 || string(a.Body) != `{"received":true}` {
				t.Fatalf("answered %d %s, want the backend's 200", a.Status, a.Body)
			}
			if be.Count("") != before+1 {
				t.Fatalf("backend saw %d requests, want 1", be.Count("")-before)
			}
			got := last()
			if !bytes.Equal(got.Body, body) {
				t.Fatalf("backend got body %q, want %q", got.Body, body)
			}
			if got.Header.Get("X-Custom") != "kept" || got.Header.Get("X-Signature") != signature.XSignature(secret, body) ||
				got.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("backend got headers %v", got.Header)
			}
		}
	})

	t.Run("tampered body", func(t *testing.T) {
		tampered := bytes.Clone(body)
		tampered[3] ^= 1
		rejected(t, "/x", tampered, xsig(newSecret, body), "signature does not match")
	})

	t.Run("wrong secret", func(t *testing.T) {
		rejected(t, "/x", body, xsig([]byte("not a configured secret"), body), "signature does not match")
	})

	t.Run("missing header", func(t *testing.T) {
		rejected(t, "/x", body, http.Header{"Content-Type": {"application/json"}}, "missing header X-Signature")
		rejected(t, "/standard", body, http.Header{
			"Webhook-Id":        {"evt_missing"},
			"Webhook-Signature": {signature.StandardSign(whsecKey, "evt_missing", time.Now(), body)},
		}, "missing header webhook-timestamp")
	})

	t.Run("expired timestamp", func(t *testing.T) {
		old := time.Now().Add(-10 * time.Minute)
		rejected(t, "/standard", body, http.Header{
			"Webhook-Id":        {"evt_old"},
			"Webhook-Timestamp": {signature.StandardTimestamp(old)},
			"Webhook-Signature": {signature.StandardSign(whsecKey, "evt_old", old, body)},
		}, "timestamp outside tolerance")
		rejected(t, "/stripe", body, http.Header{
			"Stripe-Signature": {signature.StripeSignature([][]byte{newSecret}, old, body)},
		}, "timestamp outside tolerance")
	})

	t.Run("max_body", func(t *testing.T) {
		under := bytes.Repeat([]byte{'a'}, 2000)
		a := post(t, "/x", bytes.NewReader(under), xsig(newSecret, under))
		if a.Status != 200 || !bytes.Equal(last().Body, under) {
			t.Fatalf("a body of exactly max_body: %d, backend got %d bytes", a.Status, len(last().Body))
		}
		over := bytes.Repeat([]byte{'a'}, 2001)
		before := be.Count("")
		a = post(t, "/x", bytes.NewReader(over), xsig(newSecret, over))
		if a.Status != http.StatusRequestEntityTooLarge || !bytes.Contains(a.Body, []byte(`"error"`)) {
			t.Fatalf("a body one byte over max_body: %d %s, want 413 with a JSON error", a.Status, a.Body)
		}
		// The same without a Content-Length: the limit holds while reading.
		a = post(t, "/x", io.MultiReader(bytes.NewReader(over)), xsig(newSecret, over))
		if a.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("a chunked body over max_body: %d %s, want 413", a.Status, a.Body)
		}
		if be.Count("") != before {
			t.Fatal("an oversized body reached the backend")
		}
		// A chunked body under the limit is forwarded whole.
		a = post(t, "/x", io.MultiReader(bytes.NewReader(under)), xsig(newSecret, under))
		if a.Status != 200 || !bytes.Equal(last().Body, under) {
			t.Fatalf("a chunked body under max_body: %d", a.Status)
		}
	})

	t.Run("every scheme", func(t *testing.T) {
		now := time.Now()
		for path, h := range map[string]http.Header{
			"/standard": {
				"Webhook-Id":        {"evt_scheme"},
				"Webhook-Timestamp": {signature.StandardTimestamp(now)},
				"Webhook-Signature": {signature.StandardSign(whsecKey, "evt_scheme", now, body)},
			},
			"/github":  {"X-Hub-Signature-256": {signature.GitHubSignature(newSecret, body)}},
			"/stripe":  {"Stripe-Signature": {signature.StripeSignature([][]byte{newSecret}, now, body)}},
			"/shopify": {"X-Shopify-Hmac-Sha256": {signature.ShopifySignature(newSecret, body)}},
			"/slack": {
				"X-Slack-Request-Timestamp": {signature.StandardTimestamp(now)},
				"X-Slack-Signature":         {signature.SlackSignature(newSecret, now, body)},
			},
		} {
			a := post(t, path, bytes.NewReader(body), h)
			if a.Status != 200 || last().Path != path || !bytes.Equal(last().Body, body) {
				t.Errorf("%s: answered %d %s", path, a.Status, a.Body)
			}
		}
	})

	standardDelivery := func(id string) http.Header {
		now := time.Now()
		return http.Header{
			"Webhook-Id":        {id},
			"Webhook-Timestamp": {signature.StandardTimestamp(now)},
			"Webhook-Signature": {signature.StandardSign(whsecKey, id, now, body)},
		}
	}
	duplicate := func(t *testing.T, path string, h http.Header) {
		t.Helper()
		before := be.Count("")
		a := post(t, path, bytes.NewReader(body), h)
		if a.Status != 200 || a.Header.Get("Webhook-Duplicate") != "true" {
			t.Fatalf("a repeated delivery answered %d, Webhook-Duplicate %q; want 200 and true", a.Status, a.Header.Get("Webhook-Duplicate"))
		}
		if be.Count("") != before {
			t.Fatal("a repeated delivery reached the backend")
		}
	}

	t.Run("replay window", func(t *testing.T) {
		before := be.Count("")
		a := post(t, "/standard", bytes.NewReader(body), standardDelivery("evt_replay"))
		if a.Status != 200 || a.Header.Get("Webhook-Duplicate") != "" {
			t.Fatalf("first delivery: %d %v", a.Status, a.Header)
		}
		// A retry signs again with a new timestamp but keeps the id.
		duplicate(t, "/standard", standardDelivery("evt_replay"))
		if be.Count("") != before+1 {
			t.Fatalf("backend saw evt_replay %d times, want once", be.Count("")-before)
		}

		gh := http.Header{
			"X-Hub-Signature-256": {signature.GitHubSignature(newSecret, body)},
			"X-Github-Delivery":   {"72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		}
		if a := post(t, "/github", bytes.NewReader(body), gh); a.Status != 200 || a.Header.Get("Webhook-Duplicate") != "" {
			t.Fatalf("first GitHub delivery: %d", a.Status)
		}
		duplicate(t, "/github", gh)
	})

	t.Run("metrics", func(t *testing.T) {
		m := scrape(t, p.Admin)
		for _, result := range []string{"valid", "invalid", "missing", "expired", "too_large", "duplicate"} {
			if m[result] < 1 {
				t.Errorf("caddy_webhooks_receiver_verifications_total{result=%q} = %v, want at least 1", result, m[result])
			}
		}
	})

	t.Run("reload keeps metrics and the replay cache", func(t *testing.T) {
		before := scrape(t, p.Admin)
		if err := p.Reload(config + "\n"); err != nil {
			t.Fatal(err)
		}
		duplicate(t, "/standard", standardDelivery("evt_replay"))
		after := scrape(t, p.Admin)
		if after["duplicate"] != before["duplicate"]+1 || after["valid"] < before["valid"] {
			t.Fatalf("after reload: %v, before: %v", after, before)
		}
	})
}

// scrape reads the receiver's counter, by result, from the admin endpoint.
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	const name = "caddy_webhooks_receiver_verifications_total"
	metrics := testkit.Scrape(t, "http://"+admin+"/metrics")
	m := map[string]float64{}
	for _, s := range metrics {
		if s.Name == name {
			m[s.Labels["result"]] = s.Value
		}
	}
	if len(m) == 0 {
		t.Fatalf("admin /metrics has no %s", name)
	}
	return m
}

// startCaddy runs the built Caddy on caddyfile, with "{PORT}" replaced by
// a free port and "{BACKEND}" by backend, and env added to its
// environment. It returns the process, its listen address and the config
// it runs.
func startCaddy(t *testing.T, caddyfile, backend string, env ...string) (*testcaddy.Process, string, string) {
	t.Helper()
	port := testkit.FreePort(t)
	config := strings.NewReplacer("{PORT}", strconv.Itoa(port), "{BACKEND}", backend).Replace(caddyfile)
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: config, Env: env})
	return p, fmt.Sprintf("127.0.0.1:%d", port), config
}
