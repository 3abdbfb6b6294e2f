package pgstore

import (
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// BenchmarkPostgresDrain measures the drain of a backlog of b.N
// deliveries to one webhook (8 attempts in flight, the default) through
// the fleet store, like BenchmarkDeliver for Badger: claims, attempts to an
// in-process endpoint, and saves. It reports the database server's CPU
// time per delivery too, when the server runs on this machine.
func BenchmarkPostgresDrain(b *testing.B) {
	dsn := pgtest.DSN(b)
	var cpu time.Duration
	storetest.BenchDrain(b, openPostgres(b, dsn, Options{}), outbox.Options{AllowDestinations: loopback},
		func() { cpu = serverCPU(dsn) },
		func() {
			// The database's CPU per delivery does not depend on how busy
			// the machine is, as the rate does.
			if cpu > 0 {
				b.ReportMetric(float64((serverCPU(dsn)-cpu).Microseconds())/float64(b.N), "pg-cpu-µs/delivery")
			}
		})
}
