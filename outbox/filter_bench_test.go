package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// BenchmarkIngestFilters measures ingest from 64 goroutines into an app
// with ten webhooks, without filters and with a filter on each that
// matches (so both commit the same ten deliveries per event): the
// difference is what compiling once and evaluating per event costs.
func BenchmarkIngestFilters(b *testing.B) {
	for _, filter := range []string{"", `event == "job_finished" && has(data.appId) && data.appId.startsWith("bench")`} {
		name := "none"
		if filter != "" {
			name = "cel"
		}
		b.Run("filters="+name, func(b *testing.B) {
			o, url := heldOutbox(b)
			for range 10 {
				in := outbox.WebhookInput{Name: ptr("b"), URL: ptr(url), Events: &[]string{"job_finished"}}
				if filter != "" {
					in.Filter = &filter
				}
				if _, err := o.CreateWebhook(context.Background(), "bench", in); err != nil {
					b.Fatal(err)
				}
			}
			body := fixture.Event1K()
			b.ReportAllocs()
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := o.Ingest(context.Background(), body, "")
					if err != nil || res.Deliveries != 10 {
						b.Errorf("ingest: %+v %v", res, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkFilterTenWebhooks is the CPU that filters add to one ingest:
// decoding the event's data once and evaluating ten compiled filters.
func BenchmarkFilterTenWebhooks(b *testing.B) {
	o := outbox.New(nopStore{}, outbox.Options{})
	f, err := o.CompileFilter(`event == "job_finished" && has(data.appId) && data.appId.startsWith("bench")`)
	if err != nil {
		b.Fatal(err)
	}
	body := fixture.Event1K()
	b.ReportAllocs()
	for b.Loop() {
		in, err := outbox.NewFilterInput("job_finished", body)
		if err != nil {
			b.Fatal(err)
		}
		for range 10 {
			if ok, err := f.Match(in); !ok || err != nil {
				b.Fatal("no match", err)
			}
		}
	}
}

// nopStore is enough of a Store for an outbox that is never started.
type nopStore struct{ outbox.Store }

func (nopStore) SetRetention(history, events time.Duration) {}
