package outbox_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// BenchmarkIngestConcurrent measures Outbox.Ingest from 64 goroutines, the
// path webhook_events takes: group commit, one delivery per event.
func BenchmarkIngestConcurrent(b *testing.B) {
	o, url := heldOutbox(b)
	if _, err := o.CreateWebhook(context.Background(), "bench", outbox.WebhookInput{Name: ptr("b"), URL: ptr(url), Events: &[]string{"job_finished"}}); err != nil {
		b.Fatal(err)
	}
	body := fixture.Event1K()
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := o.Ingest(context.Background(), body, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// heldOutbox starts an outbox on a fresh Badger store whose webhooks point
// at the returned URL, an endpoint that holds each webhook's one attempt
// until the benchmark ends: the dispatcher then takes no CPU from the
// ingest being measured.
func heldOutbox(b *testing.B) (*outbox.Outbox, string) {
	s, err := badgerstore.Open(b.TempDir(), badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	o := outbox.New(s, outbox.Options{AllowDestinations: loopback, MaxInFlightPerWebhook: 1})
	o.Start()
	// Cleanups run last first: the held attempts are let go before Close
	// waits for them, and the server closes last.
	b.Cleanup(srv.Close)
	b.Cleanup(func() { o.Close() })
	b.Cleanup(func() { close(release) })
	return o, srv.URL
}

// BenchmarkDeliver measures the dispatcher end to end: b.N events queued
// behind a held endpoint, then drained to a fast local receiver.
func BenchmarkDeliver(b *testing.B) {
	for _, perHook := range []int{8, 64} {
		b.Run(fmt.Sprintf("in_flight_per_webhook=%d", perHook), func(b *testing.B) { benchDeliver(b, perHook) })
	}
}

func benchDeliver(b *testing.B, perHook int) {
	s, err := badgerstore.Open(b.TempDir(), badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchDrain(b, s, outbox.Options{AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, MaxInFlightPerWebhook: perHook}, nil, nil)
}
