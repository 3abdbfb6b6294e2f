package caddymodule

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// startAppIn provisions and starts the webhooks app inside a config with
// the given admin settings, as a config load does, and returns its API.
func startAppIn(t *testing.T, admin *caddy.AdminConfig) (*App, *api) {
	t.Helper()
	app, err := json.Marshal(map[string]any{
		"storage":            map[string]any{"module": "badger", "path": t.TempDir()},
		"allow_destinations": []string{"127.0.0.0/8", "::1"},
		"retry_schedule":     []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := caddy.ProvisionContext(&caddy.Config{Admin: admin, AppsRaw: caddy.ModuleMap{"webhooks": app}})
	if err != nil {
		t.Fatalf("provisioning the config: %v", err)
	}
	val, err := ctx.App("webhooks")
	if err != nil {
		t.Fatal(err)
	}
	a := val.(*App)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a, newAPI(a.Outbox, zap.NewNop())
}

// Caddy's remote admin listener (admin.remote) takes /load and /stop as
// the local one does, so it is refused the same way: its address at create
// (400) and a name that resolves to it at dial time, although
// allow_destinations covers loopback; without admin.remote the same port
// is an ordinary destination.
func TestRemoteAdminListenerDenied(t *testing.T) {
	var hits atomic.Int32
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer remote.Close()
	_, port, _ := net.SplitHostPort(remote.Listener.Addr().String())
	local := "localhost:" + strconv.Itoa(testkit.FreePort(t))
	const base = "/webhooks/apps/app1/webhooks"
	hook := func(u string) string { return `{"name":"n","url":"` + u + `","events":["job_created"]}` }

	a, h := startAppIn(t, &caddy.AdminConfig{Listen: local, Remote: &caddy.RemoteAdmin{Listen: "127.0.0.1:" + port}})
	for _, u := range []string{"http://127.0.0.1:" + port + "/load", "http://127.1:" + port + "/stop", "http://[::ffff:127.0.0.1]:" + port + "/config/"} {
		if res := call(t, h, "POST", base, hook(u)); res.status != http.StatusBadRequest || !strings.Contains(res.body, "url: ") || !strings.Contains(res.body, "admin endpoint") {
			t.Errorf("creating a webhook to the remote admin listener %s answered %d %s, want 400 naming url and the admin endpoint", u, res.status, res.body)
		}
	}
	res := call(t, h, "POST", base, hook("http://localhost:"+port+"/load"))
	if res.status != http.StatusCreated {
		t.Fatalf("creating a webhook by name answered %d %s, want 201 (refused at dial time)", res.status, res.body)
	}
	var byName struct{ ID string }
	res.decode(t, &byName)
	if _, err := a.Outbox().Ingest(t.Context(), []byte(`{"event":"job_created","data":{"appId":"app1"}}`), ""); err != nil {
		t.Fatal(err)
	}
	var d *outbox.Delivery
	wait.Until(t, "the delivery to the remote admin listener to finish", func() bool {
		ds, _, err := a.Outbox().Deliveries(t.Context(), "app1", byName.ID, outbox.DeliveryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && ds[0].Status != outbox.StatusPending {
			d = ds[0]
			return true
		}
		return false
	})
	if last := d.LastAttempt(); d.Status != outbox.StatusFailed || last == nil || !strings.Contains(last.Error, "admin endpoint") {
		t.Fatalf("the delivery to localhost:%s ended %s (%+v), want failed, refused as the admin endpoint", port, d.Status, last)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the remote admin listener received %d requests", n)
	}

	// Without admin.remote the port is no admin endpoint.
	_, h = startAppIn(t, &caddy.AdminConfig{Listen: local})
	if res := call(t, h, "POST", base, hook("http://127.0.0.1:"+port+"/load")); res.status != http.StatusCreated {
		t.Fatalf("without admin.remote, creating a webhook to 127.0.0.1:%s answered %d %s, want 201", port, res.status, res.body)
	}
}

// An admin.remote without a listen address listens on Caddy's default
// remote address (:2021, every interface), which is refused.
func TestRemoteAdminListenerDefaultAddress(t *testing.T) {
	_, port, err := net.SplitHostPort(caddy.DefaultRemoteAdminListen)
	if err != nil {
		t.Fatal(err)
	}
	_, h := startAppIn(t, &caddy.AdminConfig{Listen: "localhost:" + strconv.Itoa(testkit.FreePort(t)), Remote: &caddy.RemoteAdmin{}})
	for _, u := range []string{"http://127.0.0.1:" + port + "/load", "http://[::1]:" + port + "/stop"} {
		res := call(t, h, "POST", "/webhooks/apps/app1/webhooks", `{"name":"n","url":"`+u+`","events":["job_created"]}`)
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "admin endpoint") {
			t.Errorf("creating a webhook to %s answered %d %s, want 400 naming the admin endpoint", u, res.status, res.body)
		}
	}
}
