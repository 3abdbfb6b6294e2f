package e2e

import (
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

// TestNoProxyForDeliveries runs the sender with HTTP_PROXY and HTTPS_PROXY
// set: deliveries never go through the proxy, which would hide the real
// destination from the address check. A host name that does not resolve
// fails as a network error instead of reaching the proxy.
func TestNoProxyForDeliveries(t *testing.T) {
	proxy := testkit.NewRecorder(t)
	env := []string{"NO_PROXY=", "no_proxy="}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"} {
		env = append(env, k+"="+proxy.URL(""))
	}
	s := startSender(t, senderConfig{RetrySchedule: "100ms", Env: env}, "")
	const app = "proxy-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "far", "url": "http://webhooks-proxy-test.invalid/hook", "events": []string{"job_created"}})
	s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"proxy-app"}}`))
	s.settled(t, app, hook.ID)
	ds := s.deliveries(t, app, hook.ID)
	if len(ds) != 1 || ds[0].Status != "failed" || ds[0].LastError == "" || ds[0].ResponseStatusCode != 0 {
		t.Errorf("a delivery to a host that does not resolve ended %+v, want failed with a network error", ds)
	}
	if n := proxy.Count(""); n != 0 {
		t.Fatalf("the proxy in HTTP_PROXY got %d requests, want none", n)
	}
}
