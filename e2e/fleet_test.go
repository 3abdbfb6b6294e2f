package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// Fleet mode: several sidecars on one PostgreSQL database. Each test gets
// a fresh schema from pgtest (a throwaway server when WEBHOOKS_TEST_POSTGRES
// is not set) and is skipped when no PostgreSQL is at hand or the binary
// does not accept a postgres:// storage yet.

// fleetTimeout is the attempt timeout of fleet sidecars. The lease is
// derived from it (timeout + 30s), which bounds how long the deliveries of
// a killed sidecar wait.
const fleetTimeout = senderTimeout

// fleetTakeover bounds the wait for another sidecar to take over the
// deliveries of a killed one: the lease, a poll, and slack for a busy machine.
const fleetTakeover = fleetTimeout + 30*time.Second + 20*time.Second

func fleetCaddyfile(port int, dsn string) string {
	return senderConfig{Port: port, Storage: dsn}.caddyfile()
}

// fleetDSN returns the database of a fleet test, skipping the test when
// PostgreSQL or fleet support in the binary is missing.
func fleetDSN(t *testing.T) string {
	t.Helper()
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	cf := strings.ReplaceAll(fleetCaddyfile(testkit.FreePort(t), dsn), "{ADMIN}", "127.0.0.1:0")
	if err := os.WriteFile(path, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := testcaddy.Run(t, dir, "validate", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		if strings.Contains(out, "not supported") {
			t.Skip("this build does not accept a postgres:// storage yet (caddymodule/app.go)")
		}
		t.Fatalf("caddy validate of a fleet config: %v\n%s", err, out)
	}
	return dsn
}

// startFleet starts n sidecars on dsn. The DSN reaches Caddy through an
// {env.*} placeholder, as a password should.
func startFleet(t *testing.T, dsn string, n int) []*sender {
	t.Helper()
	var out []*sender
	for range n {
		out = append(out, startFleetSidecar(t, dsn))
	}
	return out
}

func startFleetSidecar(t *testing.T, dsn string) *sender {
	t.Helper()
	port := testkit.FreePort(t)
	p := testcaddy.Start(t, testcaddy.Config{
		Caddyfile: fleetCaddyfile(port, "{env.WEBHOOKS_DSN}"),
		Env:       []string{"WEBHOOKS_DSN=" + dsn},
	})
	return &sender{Process: p, cfg: senderConfig{Port: port}}
}

// waitListed waits until every sidecar's API lists the webhook (ingest
// sees it as soon: every webhook write clears the sidecars' caches).
func waitListed(t *testing.T, fleet []*sender, appID, hookID string) {
	t.Helper()
	for i, s := range fleet {
		wait.Until(t, fmt.Sprintf("sidecar %d to list webhook %s", i, hookID), func() bool {
			return slices.ContainsFunc(s.listWebhooks(t, appID), func(w webhookJSON) bool { return w.ID == hookID })
		})
	}
}

func historyIDs(t *testing.T, s *sender, appID, hookID string) []string {
	t.Helper()
	var ids []string
	for _, d := range s.allDeliveries(t, appID, hookID) {
		ids = append(ids, d.ID+"/"+d.EventID+"/"+d.Status)
	}
	return ids
}

// Events posted to any sidecar are delivered exactly once each, and every
// sidecar shows the same history.
func TestFleetDeliversOnceAndSharesHistory(t *testing.T) {
	dsn := fleetDSN(t)
	fleet := startFleet(t, dsn, 3)
	rc := testkit.NewRecorder(t)
	const app, total = "fleet-app", 60
	hook := fleet[0].createWebhook(t, app, map[string]any{"name": "sink", "url": rc.URL("/sink"), "events": []string{"job_created"}})
	waitListed(t, fleet, app, hook.ID)

	bodies := map[string][]byte{} // event id -> body
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprintf(`{"event":"job_created","data":{"appId":%q,"seq":%d}}`, app, i))
			a := fleet[i%len(fleet)].mustIngest(t, body)
			if a.Deliveries != 1 {
				t.Errorf("event %d: %d deliveries, want 1", i, a.Deliveries)
			}
			mu.Lock()
			bodies[a.ID] = body
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	wait.Until(t, fmt.Sprintf("%d events delivered", total), func() bool { return rc.Count("/sink") >= total })
	// Give a duplicate, if any, the time to show up.
	time.Sleep(2 * time.Second)
	got := rc.Requests("/sink")
	perEvent := map[string]int{}
	for _, r := range got {
		id := r.Header.Get("webhook-id")
		perEvent[id]++
		if want, ok := bodies[id]; !ok || string(r.Body) != string(want) {
			t.Fatalf("request with webhook-id %q carried %s, want %s", id, r.Body, want)
		}
	}
	if len(got) != total || len(perEvent) != total {
		t.Fatalf("receiver got %d requests for %d distinct events, want %d each once", len(got), len(perEvent), total)
	}

	var first []string
	wait.Until(t, "every delivery recorded as succeeded", func() bool {
		first = historyIDs(t, fleet[0], app, hook.ID)
		if len(first) != total {
			return false
		}
		for _, h := range first {
			if !strings.HasSuffix(h, "/succeeded") {
				return false
			}
		}
		return true
	})
	for i, s := range fleet[1:] {
		if other := historyIDs(t, s, app, hook.ID); !slices.Equal(other, first) {
			t.Fatalf("sidecar %d shows another history:\n%v\nwant\n%v", i+1, other, first)
		}
	}
}

// A sidecar killed while its attempts hang loses nothing: once its leases
// run out, the others deliver what it held.
func TestFleetTakesOverFromKilledSidecar(t *testing.T) {
	dsn := fleetDSN(t)
	rc := testkit.NewRecorder(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	// Requests hang until the victim is dead.
	rc.SetRespond(func(testkit.Request, int) (int, string) {
		<-release
		return http.StatusOK, "late"
	})
	const app, n = "takeover-app", 5

	// The victim runs alone, so it alone claims the deliveries.
	victim := startFleetSidecar(t, dsn)
	hook := victim.createWebhook(t, app, map[string]any{"name": "sink", "url": rc.URL("/sink"), "events": []string{"job_created"}})
	events := map[string]bool{}
	for i := range n {
		a := victim.mustIngest(t, []byte(fmt.Sprintf(`{"event":"job_created","data":{"appId":%q,"seq":%d}}`, app, i)))
		events[a.ID] = true
	}
	wait.Within(t, fleetTimeout/2, "the victim's attempts to reach the receiver", func() bool { return rc.Count("/sink") == n })
	victim.Kill()
	killedAt := time.Now()
	rc.SetRespond(nil) // 200 "ok" from now on
	unblock()

	others := startFleet(t, dsn, 2)
	wait.Within(t, fleetTakeover, "the other sidecars to deliver the victim's deliveries", func() bool {
		return rc.Count("/sink") >= 2*n
	})
	t.Logf("taken over %v after the kill", time.Since(killedAt).Round(100*time.Millisecond))

	after := rc.Requests("/sink")[n:]
	perEvent := map[string]int{}
	for _, r := range after {
		perEvent[r.Header.Get("webhook-id")]++
	}
	for id := range events {
		if perEvent[id] != 1 {
			t.Fatalf("event %s was delivered %d times after the kill, want once (%v)", id, perEvent[id], perEvent)
		}
	}
	wait.Until(t, "the history to show every delivery succeeded", func() bool {
		ds := others[0].allDeliveries(t, app, hook.ID)
		if len(ds) != n {
			return false
		}
		for _, d := range ds {
			if d.Status != "succeeded" {
				return false
			}
		}
		return true
	})
	for _, d := range others[1].allDeliveries(t, app, hook.ID) {
		// The killed attempt was never saved: one attempt, the successful one.
		full := others[1].delivery(t, app, hook.ID, d.ID)
		if len(full.AttemptLog) != 1 || full.AttemptLog[0].ResponseStatusCode != http.StatusOK {
			t.Fatalf("delivery %s attempts %+v, want the one success", d.ID, full.AttemptLog)
		}
	}
}

// A webhook managed through one sidecar's API takes effect on the others.
func TestFleetWebhookCreatedElsewhere(t *testing.T) {
	dsn := fleetDSN(t)
	fleet := startFleet(t, dsn, 2)
	rc := testkit.NewRecorder(t)
	const app = "elsewhere-app"
	hook := fleet[0].createWebhook(t, app, map[string]any{"name": "sink", "url": rc.URL("/sink"), "events": []string{"job_finished"}})
	waitListed(t, fleet, app, hook.ID)

	a := fleet[1].mustIngest(t, []byte(fmt.Sprintf(`{"event":"job_finished","data":{"appId":%q}}`, app)))
	if a.Deliveries != 1 {
		t.Fatalf("ingest on the other sidecar made %d deliveries, want 1", a.Deliveries)
	}
	wait.Until(t, "the delivery", func() bool { return rc.Count("/sink") == 1 })
	if got := rc.Requests("/sink")[0].Header.Get("webhook-id"); got != a.ID {
		t.Fatalf("webhook-id %q, want %q", got, a.ID)
	}
	wait.Until(t, "the first sidecar to show the delivery", func() bool {
		ds := fleet[0].deliveries(t, app, hook.ID)
		return len(ds) == 1 && ds[0].EventID == a.ID && ds[0].Status == "succeeded"
	})

	// Deleted through the second sidecar: gone from the first.
	if status, body := call(t, http.MethodDelete, fleet[1].hooksURL(app)+"/"+hook.ID, nil); status != http.StatusNoContent {
		t.Fatalf("delete answered %d %s", status, body)
	}
	wait.Until(t, "the first sidecar to forget the webhook", func() bool { return len(fleet[0].listWebhooks(t, app)) == 0 })
	if status, _ := call(t, http.MethodGet, fleet[0].hooksURL(app)+"/"+hook.ID, nil); status != http.StatusNotFound {
		t.Fatalf("get of the deleted webhook on the other sidecar answered %d, want 404", status)
	}
}
