package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// BenchCommit commits batches of events with one delivery each into the
// store open returns, and reports events per second.
func BenchCommit(b *testing.B, open func(*testing.B) outbox.Store) {
	for _, size := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := open(b)
			now := time.Now().UTC()
			w := &outbox.Webhook{ID: newID(), AppID: "bench", Name: "b", URL: "https://example.test/", Enabled: true,
				Events: []string{"job_finished"}, CreatedAt: now, UpdatedAt: now}
			if err := s.CreateWebhook(context.Background(), w); err != nil {
				b.Fatal(err)
			}
			body := fixture.Event1K()
			b.ReportAllocs()
			b.ResetTimer()
			events := 0
			for b.Loop() {
				batch := make([]*outbox.Ingest, size)
				now := time.Now()
				for i := range batch {
					ev := &outbox.Event{ID: newID(), AppID: "bench", Type: "job_finished", ReceivedAt: now, Body: body}
					batch[i] = &outbox.Ingest{Event: ev, Deliveries: []*outbox.Delivery{newDelivery(w, ev, now)}}
				}
				if err := s.Commit(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				events += size
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
