package outbox_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// A delivery claimed ahead of its webhook's free slot waits parked for up
// to one attempt; when it starts it reads the webhook as it is then, so an
// edit, a disable or a delete made while it waited applies to it.
func TestClaimedAheadReadsCurrentWebhook(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(o *outbox.Outbox, w *outbox.Webhook, newURL string) error
		sentToNew int
	}{
		{"edited", func(o *outbox.Outbox, w *outbox.Webhook, newURL string) error {
			_, err := o.UpdateWebhook(context.Background(), w.AppID, w.ID, outbox.WebhookInput{URL: &newURL, Secret: ptr("second-secret")})
			return err
		}, 1},
		{"disabled", func(o *outbox.Outbox, w *outbox.Webhook, _ string) error {
			_, err := o.UpdateWebhook(context.Background(), w.AppID, w.ID, outbox.WebhookInput{Enabled: ptr(false)})
			return err
		}, 0},
		{"deleted", func(o *outbox.Outbox, w *outbox.Webhook, _ string) error {
			return o.DeleteWebhook(context.Background(), w.AppID, w.ID)
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			t.Cleanup(unblock)
			var mu sync.Mutex
			oldHits := 0
			old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				oldHits++
				mu.Unlock()
				<-release
			}))
			t.Cleanup(old.Close)
			next := testkit.NewRecorder(t)

			s, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			o := outbox.New(s, outbox.Options{AllowDestinations: loopback})
			o.Start()
			t.Cleanup(func() { o.Close() })
			ctx := context.Background()
			w, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(old.URL), Events: &[]string{"job_created"},
				Secret: ptr("first-secret"), MaxInFlight: ptr(1)})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
					t.Fatal(err)
				}
			}
			wait.Until(t, "one attempt held and the other delivery claimed ahead", func() bool {
				parked, sending := outbox.Parked(o, w.ID)
				return parked == 1 && sending == 1
			})
			if err := tc.change(o, w, next.URL("/next")); err != nil {
				t.Fatal(err)
			}
			unblock()
			if tc.sentToNew > 0 {
				got := next.WaitFor(t, "/next", 1)
				if sig := got[0].Header.Get("X-Signature"); sig != signature.XSignature([]byte("second-secret"), got[0].Body) {
					t.Fatalf("the parked delivery was signed %q, not with the secret set while it waited", sig)
				}
			}
			wait.Until(t, "nothing left pending", func() bool {
				st, err := s.Stats(ctx)
				return err == nil && st.Pending == 0
			})
			mu.Lock()
			defer mu.Unlock()
			if oldHits != 1 || next.Count("") != tc.sentToNew {
				t.Fatalf("the old URL got %d requests and the new %d, want 1 and %d: the parked delivery used the webhook as it was claimed",
					oldHits, next.Count(""), tc.sentToNew)
			}
		})
	}
}

// leased is a store whose claims hold for a lease, as PostgreSQL's do.
type leased struct {
	outbox.Store
	lease time.Duration
}

func (l leased) Lease() time.Duration { return l.lease }

// A webhook is claimed ahead (twice its maxInFlight) unless it is rate
// limited or a delivery waiting one attempt and making its own might
// outlive the store's lease.
func TestClaimAheadAdmission(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lease time.Duration
		hook  outbox.Webhook
		want  int
	}{
		{"no lease", 0, outbox.Webhook{}, 16},
		{"own maxInFlight", 0, outbox.Webhook{MaxInFlight: 3}, 6},
		{"rate limited", 0, outbox.Webhook{RateLimit: 5}, 8},
		{"two attempts fit the lease", 45 * time.Second, outbox.Webhook{}, 16},
		{"two of its attempts outlive the lease", 45 * time.Second, outbox.Webhook{Timeout: 30 * time.Second}, 8},
		{"a short lease", time.Second, outbox.Webhook{MaxInFlight: 2}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var store outbox.Store = s
			if tc.lease > 0 {
				store = leased{s, tc.lease}
			}
			o := outbox.New(store, outbox.Options{AllowDestinations: loopback, Timeout: 15 * time.Second, MaxInFlightPerWebhook: 8})
			t.Cleanup(func() { o.Close() })
			if got := outbox.Admission(o, &tc.hook); got != tc.want {
				t.Fatalf("a claim may hold %d deliveries of the webhook, want %d", got, tc.want)
			}
		})
	}
}
