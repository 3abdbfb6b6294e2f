package outbox

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

func benchBody() []byte {
	// About 1 KiB, like the benchmark's events.
	return []byte(`{"event":"job_finished","data":{"appId":"bench","pad":"` + strings.Repeat("x", 960) + `"}}`)
}

func BenchmarkSignHeaders(b *testing.B) {
	w := &Webhook{ID: "w", Secret: "secret-of-32-bytes-0123456789abc"}
	ev := &Event{ID: "01900000-0000-7000-8000-000000000000", Body: benchBody()}
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Body)))
	for b.Loop() {
		signedHeaders(w, ev, now)
	}
}

func BenchmarkXSignature(b *testing.B) {
	body := benchBody()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		signature.XSignature([]byte("secret"), body)
	}
}

// BenchmarkCommitBatch measures durable ingest through the store: batches
// of 1, 64 and 256 events, one fsync each, with one delivery per event.
func BenchmarkCommitBatch(b *testing.B) {
	benchCommit(b, func(b *testing.B) Store {
		s, err := OpenBadger(b.TempDir(), BadgerOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// benchCommit commits batches of events with one delivery each into the
// store open returns, and reports events per second.
func benchCommit(b *testing.B, open func(*testing.B) Store) {
	for _, size := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := open(b)
			now := time.Now().UTC()
			w := &Webhook{ID: newID(), AppID: "bench", Name: "b", URL: "https://example.test/", Enabled: true,
				Events: []string{"job_finished"}, CreatedAt: now, UpdatedAt: now}
			if err := s.CreateWebhook(context.Background(), w); err != nil {
				b.Fatal(err)
			}
			body := benchBody()
			b.ReportAllocs()
			b.ResetTimer()
			events := 0
			for b.Loop() {
				batch := make([]*Ingest, size)
				now := time.Now()
				for i := range batch {
					ev := &Event{ID: newID(), AppID: "bench", Type: "job_finished", ReceivedAt: now, Body: body}
					batch[i] = &Ingest{Event: ev, Deliveries: []*Delivery{newDelivery(w, ev, now)}}
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

// BenchmarkIngestConcurrent measures Outbox.Ingest from 64 goroutines, the
// path webhook_events takes: group commit, one delivery per event.
func BenchmarkIngestConcurrent(b *testing.B) {
	s, err := OpenBadger(b.TempDir(), BadgerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	o := New(s, Options{})
	// Not started as a dispatcher would drain the queue; only the committer runs.
	o.started = true
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.done.Add(1)
	go func() { defer o.done.Done(); o.commitLoop(ctx) }()
	defer o.Close()
	if _, err := o.CreateWebhook(context.Background(), "bench", WebhookInput{Name: ptr("b"), URL: ptr("https://example.com/"), Events: &[]string{"job_finished"}}); err != nil {
		b.Fatal(err)
	}
	body := benchBody()
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

// BenchmarkClaim measures the due-queue scan: claiming and releasing 128
// due deliveries out of a queue that also holds 100,000 future ones.
func BenchmarkClaim(b *testing.B) {
	s, err := OpenBadger(b.TempDir(), BadgerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := &Webhook{ID: newID(), AppID: "bench", Enabled: true, Events: []string{"job_finished"}, URL: "https://example.com/"}
	s.CreateWebhook(context.Background(), w)
	body := benchBody()
	now := time.Now()
	later := now.Add(time.Hour)
	var batch []*Ingest
	for i := range 100_128 {
		ev := &Event{ID: newID(), AppID: "bench", Type: "job_finished", ReceivedAt: now, Body: body}
		d := newDelivery(w, ev, now)
		if i >= 128 {
			d.NextAttemptAt = &later
		}
		batch = append(batch, &Ingest{Event: ev, Deliveries: []*Delivery{d}})
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
	admit := func(string) bool { return true }
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		jobs, _, err := s.Claim(context.Background(), now, 128, admit)
		if err != nil || len(jobs) != 128 {
			b.Fatalf("claimed %d: %v", len(jobs), err)
		}
		for _, j := range jobs {
			s.unclaim(j.Delivery.ID)
		}
	}
}

// BenchmarkDeliver measures the dispatcher end to end: b.N events queued
// behind a held endpoint, then drained to a fast local receiver.
func BenchmarkDeliver(b *testing.B) {
	for _, perHook := range []int{8, 64} {
		b.Run(fmt.Sprintf("in_flight_per_webhook=%d", perHook), func(b *testing.B) { benchDeliver(b, perHook) })
	}
}

func benchDeliver(b *testing.B, perHook int) {
	var got sync.WaitGroup
	open := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-open
		got.Done()
	}))
	defer srv.Close()
	s, err := OpenBadger(b.TempDir(), BadgerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	o := New(s, Options{AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, MaxInFlightPerWebhook: perHook})
	o.Start()
	defer o.Close()
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "bench", WebhookInput{Name: ptr("b"), URL: ptr(srv.URL), Events: &[]string{"job_finished"}, Secret: ptr("s")})
	_ = w
	body := benchBody()
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
	b.ResetTimer()
	close(open)
	got.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

func BenchmarkParseEvent(b *testing.B) {
	body := benchBody()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := ParseEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}
