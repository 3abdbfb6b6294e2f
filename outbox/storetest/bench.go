package storetest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
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

// BenchDrain queues b.N events of about 1 KiB for one webhook behind a held
// endpoint, on an outbox over s with opts, then times their drain to that
// endpoint and reports deliveries per second. loaded, when set, runs once
// the backlog is queued, before the timer starts; drained, when set, runs
// once every delivery arrived, with the timer stopped.
func BenchDrain(b *testing.B, s outbox.Store, opts outbox.Options, loaded, drained func()) {
	var got sync.WaitGroup
	open := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-open
		got.Done()
	}))
	defer srv.Close()
	o := outbox.New(s, opts)
	o.Start()
	defer o.Close()
	ctx := context.Background()
	name, url, secret := "b", srv.URL, "s"
	if _, err := o.CreateWebhook(ctx, "bench", outbox.WebhookInput{Name: &name, URL: &url, Events: &[]string{"job_finished"}, Secret: &secret}); err != nil {
		b.Fatal(err)
	}
	body := fixture.Event1K()
	got.Add(b.N)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < b.N; j += 64 {
				if _, err := o.Ingest(ctx, body, ""); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportAllocs()
	if loaded != nil {
		loaded()
	}
	b.ResetTimer()
	close(open)
	got.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	if drained != nil {
		drained()
	}
}
