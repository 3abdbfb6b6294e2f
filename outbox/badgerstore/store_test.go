package badgerstore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

func TestEncryptionKeyMismatch(t *testing.T) {
	dir := t.TempDir()
	key := []byte("0123456789abcdef0123456789abcdef")
	s, err := Open(dir, Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	w := &outbox.Webhook{ID: newID(), AppID: "a", Name: "n", URL: "https://x.test", Events: []string{"job_created"}, Secret: "plaintext-secret-marker", Enabled: true}
	if err := s.CreateWebhook(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The secret is not readable on disk.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "plaintext-secret-marker") {
			t.Fatalf("secret stored in clear in %s", filepath.Base(f))
		}
	}
	_, err = Open(dir, Options{EncryptionKey: []byte("fedcba9876543210fedcba9876543210")})
	if err == nil || !strings.Contains(err.Error(), "encryption key does not match") {
		t.Fatalf("open with the wrong key: %v", err)
	}
	s, err = Open(dir, Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.GetWebhook(context.Background(), "a", w.ID); err != nil || got.Secret != w.Secret {
		t.Fatalf("reopen with the right key: %v", err)
	}
}

// TestDiskFull fills a small tmpfs: ingest fails with ErrUnavailable (never
// a success), what was accepted stays intact and is delivered, and ingest
// recovers by itself once space is freed. It needs root to mount the tmpfs.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", mnt).CombinedOutput(); err != nil {
		// As root the test must run: a skip here would hide the case.
		t.Fatalf("mounting a tmpfs as root: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	s, err := Open(filepath.Join(mnt, "db"), Options{MemTableSize: 4 << 20, MinFreeBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// The endpoint holds its requests until the disk has room again, so
	// no attempt is recorded while it is full.
	open := make(chan struct{})
	got := make(chan string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-open
		got <- r.Header.Get("Webhook-Id")
	}))
	defer srv.Close()
	o := outbox.New(s, outbox.Options{AllowDestinations: loopback, Timeout: time.Minute})
	o.Start()
	defer o.Close()
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}}); err != nil {
		t.Fatal(err)
	}
	accepted := map[string]bool{}
	for range 20 {
		accepted[ingestOne(t, o, "a", "job_created").ID] = true
	}
	filler := filepath.Join(mnt, "filler")
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M", "count=200").Run()

	_, err = o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), "")
	if !errors.Is(err, outbox.ErrUnavailable) || !strings.Contains(err.Error(), "free") {
		t.Fatalf("ingest on a full disk: %v, want outbox.ErrUnavailable naming the free space", err)
	}
	os.Remove(filler)
	r, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), "")
	if err != nil {
		t.Fatalf("ingest did not resume after space was freed: %v", err)
	}
	accepted[r.ID] = true
	close(open)
	deadline := time.After(20 * time.Second)
	for len(accepted) > 0 {
		select {
		case id := <-got:
			delete(accepted, id)
		case <-deadline:
			t.Fatalf("%d accepted events were not delivered", len(accepted))
		}
	}
}

// Finished and skipped deliveries and their events expire with retention.
func TestHistoryExpires(t *testing.T) {
	hit := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit <- struct{}{} }))
	defer srv.Close()
	// Badger's TTLs count whole seconds, so a few seconds keep the
	// records visible long enough to be seen before they expire.
	o, s := openTest(t, outbox.Options{Retention: 3 * time.Second, RetrySchedule: []time.Duration{}})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	off, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("off"), URL: ptr(srv.URL), Events: &[]string{"job_created"}, Enabled: ptr(false)})
	r := ingestOne(t, o, "a", "job_created")
	if ds, _, _ := o.Deliveries(ctx, "a", off.ID, outbox.DeliveryFilter{}); len(ds) != 1 || ds[0].Status != outbox.StatusSkipped {
		t.Fatalf("disabled webhook's history: %v, want one skipped delivery", ds)
	}
	select {
	case <-hit:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	wait.Until(t, "history to expire after the retention", func() bool {
		a, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{})
		b, _, _ := o.Deliveries(ctx, "a", off.ID, outbox.DeliveryFilter{})
		return len(a) == 0 && len(b) == 0
	})
	wait.Until(t, "the event to expire", func() bool {
		return s.db.View(func(txn *badger.Txn) error { _, err := getEvent(txn, r.ID); return err }) != nil
	})
}
