package storetest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// BenchEventLogEvents is how many events BenchEventLog retains for one app:
// 1,000,000, or WEBHOOKS_BENCH_EVENTS.
func BenchEventLogEvents() int {
	if n, err := strconv.Atoi(os.Getenv("WEBHOOKS_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// BenchEventLog fills the store with BenchEventLogEvents events of one app
// (alternating job_created and job_finished, one delivery each), then
// measures a first page of the log, a page of one type, and a filtered
// page that matches nothing (so it examines limit × EventScanFactor events
// and stops early). loaded, when set, runs once the events are in (a
// database refreshes its planner statistics there, as autovacuum would).
func BenchEventLog(b *testing.B, s outbox.Store, loaded func()) {
	ctx := context.Background()
	w := &outbox.Webhook{ID: newID(), AppID: "big", Name: "b", URL: "https://example.test/", Enabled: true,
		Events: []string{"job_created", "job_finished"}, CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	if err := s.CreateWebhook(ctx, w); err != nil {
		b.Fatal(err)
	}
	n := BenchEventLogEvents()
	start := time.Now()
	for i := 0; i < n; i += 512 {
		batch := make([]*outbox.Ingest, 0, 512)
		for j := i; j < min(i+512, n); j++ {
			typ := []string{"job_created", "job_finished"}[j%2]
			now := time.Now()
			ev := &outbox.Event{ID: newID(), AppID: "big", Type: typ, ReceivedAt: now, Body: EventBody("big", typ, j)}
			d := newDelivery(w, ev, now)
			d.Status, d.NextAttemptAt = outbox.StatusSkipped, nil // nothing to claim
			batch = append(batch, &outbox.Ingest{Event: ev, Deliveries: []*outbox.Delivery{d}})
		}
		if err := s.Commit(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d events committed in %v", n, time.Since(start).Round(time.Second))
	if loaded != nil {
		loaded()
	}
	never := func(*outbox.Event) bool { return false }
	for _, c := range []struct {
		name string
		f    outbox.EventFilter
	}{
		{"first_page", outbox.EventFilter{Limit: 20}},
		{"type_page", outbox.EventFilter{Type: "job_finished", Limit: 20}},
		{"window_page", outbox.EventFilter{Since: start.Add(time.Since(start) / 2), Limit: 20}},
		{"filtered_page_no_match", outbox.EventFilter{Match: never, MaxScan: 20 * outbox.EventScanFactor, Limit: 20}},
	} {
		b.Run(fmt.Sprintf("%s/events=%d", c.name, n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, err := s.Events(ctx, "big", c.f)
				if err != nil {
					b.Fatal(err)
				}
				if c.f.Match == nil && len(page.Events) != 20 {
					b.Fatalf("%d events on the page, want 20", len(page.Events))
				}
				if c.f.Match != nil && !page.Partial {
					b.Fatal("the filtered page did not stop at its scan bound")
				}
			}
		})
	}
}
