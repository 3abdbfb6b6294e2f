package pgstore

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// BenchmarkPostgresDrain measures the drain of a backlog of b.N
// deliveries to one webhook (8 attempts in flight, the default) through
// the fleet store, like BenchmarkDeliver for Badger: claims, attempts to an
// in-process endpoint, and saves. It reports the database server's CPU
// time per delivery too, when the server runs on this machine.
func BenchmarkPostgresDrain(b *testing.B) {
	var got sync.WaitGroup
	open := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-open
		got.Done()
	}))
	defer srv.Close()
	dsn := pgtest.DSN(b)
	s := openPostgres(b, dsn, Options{})
	o := outbox.New(s, outbox.Options{AllowDestinations: loopback})
	o.Start()
	defer o.Close()
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "bench", outbox.WebhookInput{Name: ptr("b"), URL: ptr(srv.URL), Events: &[]string{"job_finished"}, Secret: ptr("s")}); err != nil {
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
	cpu := serverCPU(dsn)
	b.ResetTimer()
	close(open)
	got.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	// The database's CPU per delivery does not depend on how busy the
	// machine is, as the rate does.
	if cpu > 0 {
		b.ReportMetric(float64((serverCPU(dsn)-cpu).Microseconds())/float64(b.N), "pg-cpu-µs/delivery")
	}
}
