package outbox_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// notifyingStore is a store that another process also writes to, and
// that tells of it, as a fleet's database does.
type notifyingStore struct {
	outbox.Store
	news chan struct{}
}

func (s *notifyingStore) Notifications() <-chan struct{} { return s.news }

// An idle dispatcher wakes when its store tells of work queued behind its
// back (another sidecar's ingest), instead of sleeping until it polls.
func TestDispatcherWakesOnStoreNotification(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	defer srv.Close()
	bs, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifyingStore{Store: bs, news: make(chan struct{}, 1)}
	o := outbox.New(s, outbox.Options{AllowDestinations: loopback})
	o.Start()
	t.Cleanup(func() { o.Close() })
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing is due: the dispatcher goes to sleep (for an hour, with
	// this store). The event is then written past the outbox, as another
	// sidecar's ingest would write it.
	time.Sleep(100 * time.Millisecond)
	storetest.CommitOne(t, bs, "app1", "job_created", w)
	s.news <- struct{}{}
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the notified dispatcher did not deliver the event queued behind its back within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
