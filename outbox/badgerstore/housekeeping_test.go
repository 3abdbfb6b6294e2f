package badgerstore

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// TestHousekeepingReturnsExpiredSpace checks that the disk space of
// expired history goes back to the file system, while what is still
// retained stays readable.
func TestHousekeepingReturnsExpiredSpace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	dir := t.TempDir()
	s, err := Open(dir, Options{
		valueLogFileSize: 1 << 20,
		housekeepEvery:   time.Hour, // run by hand below
		sweepMargin:      time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The retention leaves the 20 recent deliveries below seconds to be
	// read back after housekeeping, far more than that takes.
	o := outbox.New(s, outbox.Options{Retention: 5 * time.Second, RetrySchedule: []time.Duration{}, AllowDestinations: loopback})
	o.Start()
	defer o.Close()
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}

	ingest := func(n int) {
		pad := strings.Repeat("x", 2000)
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := g; i < n; i += 16 {
					body := fmt.Sprintf(`{"event":"job_created","data":{"appId":"a","i":%d,"pad":%q}}`, i, pad)
					if _, err := o.Ingest(ctx, []byte(body), ""); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		wait.Until(t, "every delivery to finish", func() bool { return s.pending.Load() == 0 })
	}
	ingest(4000)
	full := s.diskBytes()
	if full < 8<<20 {
		t.Fatalf("store holds %d bytes after 4000 events of 2 KB, want at least 8 MB", full)
	}
	// Let everything expire (TTLs count whole seconds), then add history
	// that is still within its retention.
	wait.Until(t, "the history to expire", func() bool {
		ds, _, err := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 1})
		return err == nil && len(ds) == 0
	})
	time.Sleep(time.Second) // past the events' TTL too, which ends with the history's
	ingest(20)

	swept, err := s.housekeep(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if swept < 8000 {
		t.Errorf("swept %d keys, want the 4000 expired events and their 4000 deliveries", swept)
	}
	after := s.diskBytes()
	t.Logf("store: %d bytes before housekeeping, %d after", full, after)
	if after > full/2 {
		t.Errorf("store holds %d bytes after housekeeping, %d before: expired history was not returned to disk", after, full)
	}
	ds, _, err := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 20 {
		t.Fatalf("history holds %d deliveries after housekeeping, want the 20 recent ones", len(ds))
	}
	for _, d := range ds {
		if _, ev, err := o.Delivery(ctx, "a", w.ID, d.ID); err != nil || !strings.Contains(string(ev.Body), `"pad"`) {
			t.Fatalf("recent delivery %s lost its event: %v", d.ID, err)
		}
	}
	if _, err := o.GetWebhook(ctx, "a", w.ID); err != nil {
		t.Fatalf("webhook gone after housekeeping: %v", err)
	}
}
