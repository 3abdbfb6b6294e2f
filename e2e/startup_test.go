package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestAdminAPIWithoutApp runs Caddy with no webhooks app: the management
// API on the admin endpoint answers 404 with a JSON error saying so.
func TestAdminAPIWithoutApp(t *testing.T) {
	port := testkit.FreePort(t)
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: fmt.Sprintf("{\n\tadmin {ADMIN}\n}\n\nhttp://127.0.0.1:%d {\n\trespond \"no webhooks here\"\n}\n", port)})
	for _, path := range []string{"/webhooks/apps", "/webhooks/events", "/webhooks/apps/app1/webhooks"} {
		a := send(t, http.MethodGet, "http://"+p.Admin+path, "", nil)
		checkError(t, "GET "+path+" without a webhooks app", a, http.StatusNotFound, "webhooks app is not configured")
	}
}

// TestEventsWithoutGlobalOption uses webhook_events with no webhooks
// global option: the sender runs with every default, its store in Caddy's
// data directory.
func TestEventsWithoutGlobalOption(t *testing.T) {
	port := testkit.FreePort(t)
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: fmt.Sprintf("{\n\tadmin {ADMIN}\n}\n\nhttp://127.0.0.1:%d {\n\twebhook_events\n}\n", port)})
	u := fmt.Sprintf("http://127.0.0.1:%d/", port)
	status, body := ingest(t, u, []byte(`{"event":"job_finished","data":{"appId":"defaults-app"}}`))
	if status != http.StatusAccepted {
		t.Fatalf("ingest without the webhooks global option answered %d %s, want 202", status, body)
	}
	if a := decode[ingestAnswer](t, "ingest", body); a.ID == "" || a.Deliveries != 0 {
		t.Errorf("ingest answered %s, want an event id and no deliveries", body)
	}
	// The default catalog is in force.
	status, body = ingest(t, u, []byte(`{"event":"not_in_the_catalog","data":{"appId":"defaults-app"}}`))
	if status != http.StatusUnprocessableEntity {
		t.Errorf("an event outside the default catalog answered %d %s, want 422", status, body)
	}
	// testcaddy points XDG_DATA_HOME at the process's data folder, so
	// Caddy's data directory is data/caddy.
	if _, err := os.Stat(filepath.Join(p.Dir, "data", "caddy", "webhooks")); err != nil {
		t.Errorf("the default storage is not in Caddy's data dir + /webhooks: %v", err)
	}
}

// Keys for the encryption tests: standard base64 of 32 bytes each.
const (
	encryptionKey      = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	otherEncryptionKey = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

// TestWrongEncryptionKeyFailsStart writes an encrypted store, then starts
// Caddy on it with another key: it refuses to start, saying why without
// showing either key; the right key opens it again with its webhooks.
func TestWrongEncryptionKeyFailsStart(t *testing.T) {
	rc := testkit.NewRecorder(t)
	cfg := senderConfig{Options: "encryption_key " + encryptionKey}
	s := startSender(t, cfg, "")
	hook := s.createWebhook(t, "key-app", map[string]any{"name": "kept", "url": rc.URL("/kept"), "events": []string{"job_created"}})
	s.Stop()

	wrong := s.cfg
	wrong.Options = "encryption_key " + otherEncryptionKey
	path := filepath.Join(s.Dir, "Caddyfile")
	text := strings.NewReplacer("{ADMIN}", s.Admin, "{DIR}", s.Dir).Replace(wrong.caddyfile())
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := testcaddy.Run(t, s.Dir, "run", "--config", path, "--adapter", "caddyfile")
	if err == nil {
		t.Fatalf("caddy run with the wrong encryption key exited without an error:\n%s", out)
	}
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("caddy run with the wrong encryption key did not exit by itself: %v\n%s", err, out)
	}
	if !strings.Contains(out, "the encryption key does not match the one the data was written with") {
		t.Errorf("caddy run with the wrong key said:\n%s\nwant it to say the key does not match", out)
	}
	for _, k := range []string{encryptionKey, otherEncryptionKey} {
		if strings.Contains(out, k) {
			t.Errorf("caddy's output shows an encryption key")
		}
	}

	again := startSender(t, s.cfg, s.Dir)
	if hooks := again.listWebhooks(t, "key-app"); len(hooks) != 1 || hooks[0].ID != hook.ID {
		t.Fatalf("with the right key the store lists %+v, want the webhook %s", hooks, hook.ID)
	}
}

// TestReloadCannotChangeEncryptionKey reloads a running sender with another
// encryption key: the reload fails, naming why, and the running config
// keeps delivering from the same store.
func TestReloadCannotChangeEncryptionKey(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{Options: "encryption_key " + encryptionKey}, "")
	const app = "rekey-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "stays", "url": rc.URL("/stays"), "events": []string{"job_created"}})

	other := s.cfg
	other.Options = "encryption_key " + otherEncryptionKey
	err := s.Reload(other.caddyfile())
	if err == nil {
		t.Fatalf("a reload that changes the encryption key succeeded")
	}
	if !strings.Contains(err.Error(), "a reload cannot change it") {
		t.Errorf("the failed reload said %v, want it to say a reload cannot change the key", err)
	}
	for _, k := range []string{encryptionKey, otherEncryptionKey} {
		if strings.Contains(err.Error(), k) || strings.Contains(s.Logs(), k) {
			t.Errorf("the reload's error or Caddy's log shows an encryption key")
		}
	}
	if s.Exited() {
		t.Fatalf("caddy exited after a reload that tried to change the key")
	}
	a := s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"rekey-app"}}`))
	if a.Deliveries != 1 {
		t.Fatalf("ingest after the failed reload answered deliveries=%d, want 1", a.Deliveries)
	}
	wait.Until(t, "the event after the failed reload was not delivered", func() bool {
		for _, d := range s.deliveries(t, app, hook.ID) {
			if d.EventID == a.ID && d.Status == "succeeded" {
				return true
			}
		}
		return false
	})
}

// TestFullDiskAnswers503 runs the sender on a small tmpfs and fills it:
// ingest answers 503 with Retry-After: 5 and a JSON error, never 202, what
// was accepted before stays in the history, and ingest resumes by itself
// once space is freed. It needs root to mount the tmpfs.
func TestFullDiskAnswers503(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", mnt).CombinedOutput(); err != nil {
		// As root the test must run: a skip here would hide the case.
		t.Fatalf("mounting a tmpfs as root: %v %s", err, out)
	}
	// Registered before the sender starts, so it runs after Caddy is killed.
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{Storage: fmt.Sprintf("badger {\n\t\t\tpath %s\n\t\t\tmemtable_size 4MiB\n\t\t\tmin_free_space 16MiB\n\t\t}", filepath.Join(mnt, "db"))}, "")
	const app = "full-disk-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "before", "url": rc.URL("/before"), "events": []string{"job_created"}})
	event := []byte(`{"event":"job_created","data":{"appId":"full-disk-app"}}`)
	accepted := map[string]bool{}
	for range 5 {
		accepted[s.mustIngest(t, event).ID] = true
	}
	s.settled(t, app, hook.ID)

	filler := filepath.Join(mnt, "filler")
	// dd stops with an error when the tmpfs is full, which is the point.
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M", "count=200").Run()
	for i := range 3 {
		a := testkit.Call(t, http.MethodPost, s.ingestURL(), event, nil)
		checkError(t, fmt.Sprintf("ingest %d on a full disk", i+1), a, http.StatusServiceUnavailable, "unavailable")
		if ra := a.Header.Get("Retry-After"); ra != "5" {
			t.Errorf("ingest on a full disk answered Retry-After %q, want 5", ra)
		}
	}
	if s.Exited() {
		t.Fatalf("caddy exited on a full disk")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	a := s.mustIngest(t, event)
	accepted[a.ID] = true
	s.settled(t, app, hook.ID)
	ok := 0
	for _, d := range s.allDeliveries(t, app, hook.ID) {
		if !accepted[d.EventID] {
			t.Errorf("the history has event %s that was not accepted", d.EventID)
		} else if d.Status == "succeeded" {
			ok++
		}
	}
	if ok != len(accepted) {
		t.Errorf("%d of the %d accepted events are delivered, want all", ok, len(accepted))
	}
}
