package badgerstore

import (
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// An idempotency key is kept for 24 hours from its ingest, then Badger
// drops it: the record carries that expiry, whatever the retention.
func TestIdempotencyKeyExpiresAfterADay(t *testing.T) {
	o, s := openTest(t, outbox.Options{Retention: time.Hour})
	before := time.Now()
	r, err := o.Ingest(context.Background(), []byte(`{"event":"job_created","data":{"appId":"a"}}`), "job-1")
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	var expires uint64
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(idemKey("a", "job-1"))
		if err != nil {
			return err
		}
		expires = item.ExpiresAt()
		return nil
	}); err != nil {
		t.Fatalf("reading the idempotency key of event %s: %v", r.ID, err)
	}
	// Badger keeps expiries in whole seconds.
	lo, hi := uint64(before.Add(24*time.Hour).Unix())-1, uint64(after.Add(24*time.Hour).Unix())+1
	if expires < lo || expires > hi {
		t.Fatalf("the idempotency key expires at %v, want 24h after the ingest (%v to %v)",
			time.Unix(int64(expires), 0), time.Unix(int64(lo), 0), time.Unix(int64(hi), 0))
	}
}
