package badgerstore

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// TestStore runs the store conformance suite on a fresh directory.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) outbox.Store {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// openTest starts an outbox on a fresh store; both close with the test.
func openTest(t *testing.T, opts outbox.Options) (*outbox.Outbox, *Store) {
	t.Helper()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.AllowDestinations == nil {
		opts.AllowDestinations = loopback
	}
	o := outbox.New(s, opts)
	o.Start()
	t.Cleanup(func() { o.Close() })
	return o, s
}

func ingestOne(t *testing.T, o *outbox.Outbox, app, ev string) outbox.IngestResult {
	t.Helper()
	r, err := o.Ingest(context.Background(), []byte(`{"event":"`+ev+`","data":{"appId":"`+app+`"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func newDelivery(w *outbox.Webhook, ev *outbox.Event, now time.Time) *outbox.Delivery {
	return &outbox.Delivery{
		ID: newID(), AppID: w.AppID, WebhookID: w.ID, EventID: ev.ID, Event: ev.Type,
		Status: outbox.StatusPending, CreatedAt: now, NextAttemptAt: &now,
	}
}

func ptr[T any](v T) *T { return &v }
