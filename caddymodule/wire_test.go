package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// A webhook's view says whether a secret is set, never what it is.
func TestWebhookViewHidesSecrets(t *testing.T) {
	w := &outbox.Webhook{ID: "1", Secret: "topsecret", PreviousSecret: "oldsecret"}
	b, err := json.Marshal(newWebhookView(w))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "topsecret") || strings.Contains(string(b), "oldsecret") || !strings.Contains(string(b), `"hasSecret":true`) {
		t.Fatalf("webhook JSON %s", b)
	}
}
