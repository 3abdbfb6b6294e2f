package pgstore

import (
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// Two sidecars on one database share each webhook's slots: together they
// take no more than the limit allows.
func TestRateLimitHoldsForTheFleet(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := openPostgres(t, dsn, Options{})
	b := openPostgres(t, dsn, Options{})
	storetest.RateLimiterSlots(t, func() string { return storetest.CreateWebhook(t, a, "app1").ID }, a, b)
}
