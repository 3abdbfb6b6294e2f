package pgstore

import (
	"context"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

func BenchmarkPostgresEventLog(b *testing.B) {
	s := openPostgres(b, pgtest.DSN(b), Options{})
	storetest.BenchEventLog(b, s, func() {
		if _, err := s.pool.Exec(context.Background(), `ANALYZE events; ANALYZE deliveries`); err != nil {
			b.Fatal(err)
		}
	})
}
