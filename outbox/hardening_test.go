package outbox

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

func ingestOne(t *testing.T, o *Outbox, app, ev string) IngestResult {
	t.Helper()
	r, err := o.Ingest(context.Background(), []byte(`{"event":"`+ev+`","data":{"appId":"`+app+`"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func onlyDelivery(t *testing.T, o *Outbox, app, wh string, want func(*Delivery) bool) *Delivery {
	t.Helper()
	var d *Delivery
	waitFor(t, "delivery state", func() bool {
		ds, _, _ := o.Deliveries(context.Background(), app, wh, DeliveryFilter{})
		if len(ds) == 1 && want(ds[0]) {
			d = ds[0]
			return true
		}
		return false
	})
	return d
}

// A host name that resolves to loopback is refused at dial time, recorded
// once, and not retried.
func TestBlockedAtDialTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	o := openTest(t, Options{AllowDestinations: []netip.Prefix{}, RetrySchedule: []time.Duration{10 * time.Millisecond}})
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	w, err := o.CreateWebhook(context.Background(), "a", WebhookInput{Name: ptr("n"), URL: ptr("http://localhost" + port + "/"), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	ingestOne(t, o, "a", "job_created")
	d := onlyDelivery(t, o, "a", w.ID, func(d *Delivery) bool { return d.Status == StatusFailed })
	if len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, "loopback") {
		t.Fatalf("blocked delivery: %d attempts, error %q; want 1 attempt naming loopback", len(d.Attempts), d.Attempts[0].Error)
	}
	if hits.Load() != 0 {
		t.Fatal("the loopback endpoint was reached despite the guard")
	}
}

func TestBlockedReason(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1":        "loopback",
		"::1":              "loopback",
		"10.1.2.3":         "private",
		"172.20.0.1":       "private",
		"192.168.1.1":      "private",
		"fd00::1":          "private",
		"169.254.169.254":  "link-local",
		"fe80::1":          "link-local",
		"0.0.0.0":          "unspecified",
		"::":               "unspecified",
		"224.0.0.1":        "multicast",
		"::ffff:127.0.0.1": "loopback",
		"::ffff:10.0.0.1":  "private",
		"2002:a9fe:a9fe::": "link-local", // 6to4 of 169.254.169.254
		"64:ff9b::a00:1":   "private",    // NAT64 of 10.0.0.1
		"93.184.216.34":    "",
		"2606:4700::1111":  "",
	} {
		if got := blockedReason(netip.MustParseAddr(addr), nil); got != want {
			t.Errorf("blockedReason(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := blockedReason(netip.MustParseAddr("10.1.2.3"), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); got != "" {
		t.Errorf("allowed range still refused: %q", got)
	}
}

func TestGoneDisablesWebhook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer srv.Close()
	o := openTest(t, Options{RetrySchedule: []time.Duration{10 * time.Millisecond}})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	ingestOne(t, o, "a", "job_created")
	d := onlyDelivery(t, o, "a", w.ID, func(d *Delivery) bool { return d.Status == StatusFailed })
	if len(d.Attempts) != 1 {
		t.Fatalf("410 was retried: %d attempts", len(d.Attempts))
	}
	got, _ := o.GetWebhook(ctx, "a", w.ID)
	if got.Enabled || got.DisabledReason != "gone" {
		t.Fatalf("after 410 the webhook is enabled=%v reason=%q, want disabled as gone", got.Enabled, got.DisabledReason)
	}
	// Events for a disabled webhook are recorded as skipped, resendable later.
	ingestOne(t, o, "a", "job_created")
	ds, _, _ := o.Deliveries(ctx, "a", w.ID, DeliveryFilter{Status: StatusSkipped})
	if len(ds) != 1 {
		t.Fatalf("%d skipped deliveries while disabled, want 1", len(ds))
	}
}

func TestThrottledWaitsAndRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		min, max   time.Duration
	}{
		{"503 waits the floor", 503, "", throttleFloor, throttleFloor + time.Second},
		{"429 honours a longer Retry-After", 429, "600", 600 * time.Second, 601 * time.Second},
		{"Retry-After is capped", 503, "999999999", maxRetryAfter, maxRetryAfter + time.Second},
		{"500 keeps the schedule", 500, "", 800 * time.Millisecond, 1200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			o := openTest(t, Options{RetrySchedule: []time.Duration{time.Second, time.Hour}})
			w, _ := o.CreateWebhook(context.Background(), "a", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
			start := time.Now()
			ingestOne(t, o, "a", "job_created")
			d := onlyDelivery(t, o, "a", w.ID, func(d *Delivery) bool { return len(d.Attempts) == 1 && d.NextAttemptAt != nil })
			wait := d.NextAttemptAt.Sub(start)
			if wait < tc.min-100*time.Millisecond || wait > tc.max+time.Second {
				t.Fatalf("next attempt in %v, want between %v and %v", wait, tc.min, tc.max)
			}
		})
	}
}

func TestJitterSpread(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		j := jitter(100 * time.Second)
		lo, hi = min(lo, j), max(hi, j)
	}
	if lo < 80*time.Second || hi > 120*time.Second || hi-lo < 30*time.Second {
		t.Fatalf("jitter of 100s spans [%v, %v], want within ±20%% and spread", lo, hi)
	}
}

func TestAutoDisableAfterContinuousFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	o := openTest(t, Options{RetrySchedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}, DisableAfter: 30 * time.Millisecond})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	ingestOne(t, o, "a", "job_created")
	waitFor(t, "webhook disabled after failing continuously", func() bool {
		got, _ := o.GetWebhook(ctx, "a", w.ID)
		return !got.Enabled && got.DisabledReason == "failing"
	})
	// Re-enabling resumes deliveries.
	if _, err := o.UpdateWebhook(ctx, "a", w.ID, WebhookInput{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	got, _ := o.GetWebhook(ctx, "a", w.ID)
	if !got.Enabled || !got.FailingSince.IsZero() {
		t.Fatalf("re-enabled webhook: enabled=%v failingSince=%v", got.Enabled, got.FailingSince)
	}
	r := ingestOne(t, o, "a", "job_created")
	waitFor(t, "attempt after re-enabling", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, DeliveryFilter{})
		for _, d := range ds {
			if d.EventID == r.ID && len(d.Attempts) > 0 {
				return true
			}
		}
		return false
	})
}

func TestSecretRotationSignsWithBoth(t *testing.T) {
	hdr := make(chan http.Header, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hdr <- r.Header.Clone() }))
	defer srv.Close()
	o := openTest(t, Options{RotationGrace: time.Hour})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}, Secret: ptr("old-secret")})
	if _, err := o.UpdateWebhook(ctx, "a", w.ID, WebhookInput{Secret: ptr("new-secret")}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"job_created","data":{"appId":"a"}}`)
	r, _ := o.Ingest(ctx, body, "")
	h := <-hdr
	if h.Get("X-Signature") != signature.XSignature([]byte("new-secret"), body) {
		t.Fatal("X-Signature is not by the new secret")
	}
	sigs := strings.Fields(h.Get("Webhook-Signature"))
	if len(sigs) != 2 {
		t.Fatalf("webhook-signature %q, want two v1 entries during the grace", h.Get("Webhook-Signature"))
	}
	ts := h.Get("Webhook-Timestamp")
	for i, secret := range []string{"new-secret", "old-secret"} {
		want := "v1," + base64.StdEncoding.EncodeToString(signature.HMACSHA256([]byte(secret), []byte(r.ID+"."+ts+"."), body))
		if sigs[i] != want {
			t.Errorf("signature %d does not verify with %s", i, secret)
		}
	}
	// Removing the secret drops signing entirely.
	o.UpdateWebhook(ctx, "a", w.ID, WebhookInput{Secret: ptr("")})
	o.Ingest(ctx, body, "")
	h = <-hdr
	if h.Get("X-Signature") != "" || h.Get("Webhook-Signature") != "" {
		t.Fatal("signed after the secret was removed")
	}
}

func TestRecoverResendsFailedSince(t *testing.T) {
	var ok atomic.Bool
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !ok.Load() {
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	o := openTest(t, Options{RetrySchedule: []time.Duration{}})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	since := time.Now()
	for range 5 {
		ingestOne(t, o, "a", "job_created")
	}
	waitFor(t, "five failed deliveries", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, DeliveryFilter{Status: StatusFailed})
		return len(ds) == 5
	})
	ok.Store(true)
	n, err := o.Recover(ctx, "a", w.ID, since)
	if err != nil || n != 5 {
		t.Fatalf("recover: %d, %v; want 5", n, err)
	}
	waitFor(t, "five recovered deliveries", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, DeliveryFilter{Status: StatusSucceeded})
		return len(ds) == 5
	})
	if n, _ := o.Recover(ctx, "a", w.ID, since); n != 0 {
		t.Fatalf("second recover resent %d, want 0", n)
	}
}

func TestEncryptionKeyMismatch(t *testing.T) {
	dir := t.TempDir()
	key := []byte("0123456789abcdef0123456789abcdef")
	s, err := OpenBadger(dir, BadgerOptions{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	w := &Webhook{ID: newID(), AppID: "a", Name: "n", URL: "https://x.test", Events: []string{"job_created"}, Secret: "plaintext-secret-marker", Enabled: true}
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
	_, err = OpenBadger(dir, BadgerOptions{EncryptionKey: []byte("fedcba9876543210fedcba9876543210")})
	if err == nil || !strings.Contains(err.Error(), "encryption key does not match") {
		t.Fatalf("open with the wrong key: %v", err)
	}
	s, err = OpenBadger(dir, BadgerOptions{EncryptionKey: key})
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
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	s, err := OpenBadger(filepath.Join(mnt, "db"), BadgerOptions{MemTableSize: 4 << 20, MinFreeBytes: 16 << 20})
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
	o := New(s, Options{AllowDestinations: loopback, Timeout: time.Minute})
	o.Start()
	defer o.Close()
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "a", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}}); err != nil {
		t.Fatal(err)
	}
	accepted := map[string]bool{}
	for range 20 {
		accepted[ingestOne(t, o, "a", "job_created").ID] = true
	}
	filler := filepath.Join(mnt, "filler")
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M", "count=200").Run()

	_, err = o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), "")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "free") {
		t.Fatalf("ingest on a full disk: %v, want ErrUnavailable naming the free space", err)
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
	o := openTest(t, Options{Retention: 3 * time.Second, RetrySchedule: []time.Duration{}})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	off, _ := o.CreateWebhook(ctx, "a", WebhookInput{Name: ptr("off"), URL: ptr(srv.URL), Events: &[]string{"job_created"}, Enabled: ptr(false)})
	r := ingestOne(t, o, "a", "job_created")
	if ds, _, _ := o.Deliveries(ctx, "a", off.ID, DeliveryFilter{}); len(ds) != 1 || ds[0].Status != StatusSkipped {
		t.Fatalf("disabled webhook's history: %v, want one skipped delivery", ds)
	}
	select {
	case <-hit:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	waitFor(t, "history to expire after the retention", func() bool {
		a, _, _ := o.Deliveries(ctx, "a", w.ID, DeliveryFilter{})
		b, _, _ := o.Deliveries(ctx, "a", off.ID, DeliveryFilter{})
		return len(a) == 0 && len(b) == 0
	})
	s := o.Store().(*BadgerStore)
	waitFor(t, "the event to expire", func() bool {
		return s.db.View(func(txn *badger.Txn) error { _, err := getEvent(txn, r.ID); return err }) != nil
	})
}
