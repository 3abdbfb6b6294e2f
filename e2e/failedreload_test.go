package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestFailedReloadKeepsRunningConfig reloads with a config that fails to
// start (a site bound to an address this machine does not have): Caddy
// keeps the running config, so the webhooks sender must keep its options
// too. The new config drops allow_destinations; if its options leaked into
// the running sender, deliveries to loopback would be refused.
//
// Caddy starts apps in map order, so the webhooks app starts before the
// failing http app only in some attempts; several attempts make a leak
// show almost surely, and a correct sender passes every time.
func TestFailedReloadKeepsRunningConfig(t *testing.T) {
	const (
		app      = "failed-reload-app"
		attempts = 6
	)
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	hook := s.createWebhook(t, app, map[string]any{"name": "local", "url": rc.URL("/local"), "events": []string{"job_created"}})

	bad := s.cfg
	bad.NoAllow = true
	bad.Sites = fmt.Sprintf("http://10.255.255.1:%d {\n\tbind 10.255.255.1\n\trespond \"unreachable\"\n}\n", testkit.FreePort(t))
	for i := range attempts {
		if err := s.Reload(bad.caddyfile()); err == nil {
			t.Fatalf("reload with a site bound to 10.255.255.1 succeeded; the test needs a config that fails to start")
		}
		if s.Exited() {
			t.Fatalf("caddy exited after a failed reload")
		}
		a := s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, i))
		var d deliveryJSON
		wait.Until(t, "a delivery after a failed reload never finished", func() bool {
			for _, x := range s.deliveries(t, app, hook.ID) {
				if x.EventID == a.ID && x.Status != "pending" {
					d = x
					return true
				}
			}
			return false
		})
		if d.Status != "succeeded" {
			t.Fatalf("after failed reload %d the running config's delivery to loopback ended %s (%d %q): the failed config's options leaked into the sender",
				i+1, d.Status, d.ResponseStatusCode, d.LastError)
		}
	}
	if n := rc.Count("/local"); n != attempts {
		t.Errorf("receiver got %d deliveries, want %d", n, attempts)
	}
	status, _ := call(t, http.MethodGet, s.adminURL("/config/"), nil)
	if status != http.StatusOK {
		t.Errorf("admin endpoint answered %d after failed reloads", status)
	}
}
