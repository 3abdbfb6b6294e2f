package badgerstore

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// BenchmarkCommitBatch measures durable ingest through the store: batches
// of 1, 64 and 256 events, one fsync each, with one delivery per event.
func BenchmarkCommitBatch(b *testing.B) {
	storetest.BenchCommit(b, func(b *testing.B) outbox.Store {
		s, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// BenchmarkClaim measures the due-queue scan: claiming and releasing 128
// due deliveries out of a queue that also holds 100,000 future ones.
func BenchmarkClaim(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := &outbox.Webhook{ID: newID(), AppID: "bench", Enabled: true, Events: []string{"job_finished"}, URL: "https://example.com/"}
	s.CreateWebhook(context.Background(), w)
	body := fixture.Event1K()
	now := time.Now()
	later := now.Add(time.Hour)
	var batch []*outbox.Ingest
	for i := range 100_128 {
		ev := &outbox.Event{ID: newID(), AppID: "bench", Type: "job_finished", ReceivedAt: now, Body: body}
		d := newDelivery(w, ev, now)
		if i >= 128 {
			d.NextAttemptAt = &later
		}
		batch = append(batch, &outbox.Ingest{Event: ev, Deliveries: []*outbox.Delivery{d}})
		if len(batch) == 1000 {
			if err := s.Commit(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Commit(context.Background(), batch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		jobs, _, err := s.Claim(context.Background(), &outbox.ClaimRequest{Now: now, Limit: 128, MaxInFlight: 128})
		if err != nil || len(jobs) != 128 {
			b.Fatalf("claimed %d: %v", len(jobs), err)
		}
		for _, j := range jobs {
			s.unclaim(j.Delivery.ID)
		}
	}
}
