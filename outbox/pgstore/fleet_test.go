package pgstore

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// An attempt that outlasts its lease while another sidecar takes the
// delivery over ends in a refused save: the sidecar logs it as a warning
// naming the delivery, without the webhook's secret, and the other
// sidecar's result stands. The late attempt failed its last try, yet it
// is not reported as a failed delivery: its end is the other sidecar's.
func TestPostgresLateSaveLogged(t *testing.T) {
	const secret = "late-save-secret-never-logged"
	dsn := pgtest.DSN(t)
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	stalled := openPostgres(t, dsn, Options{Lease: 500 * time.Millisecond, Logger: logger})
	other := openPostgres(t, dsn, Options{})

	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-release // the attempt outlasts the lease
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)

	o := outbox.New(stalled, outbox.Options{AllowDestinations: loopback, Timeout: time.Minute, Logger: logger})
	o.Start()
	t.Cleanup(func() { o.Close() })
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}, Secret: ptr(secret),
		RetrySchedule: &[]time.Duration{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Ingest(ctx, storetest.EventBody("app1", "job_created", 1), ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(wait.Default):
		t.Fatal("the first attempt never reached the endpoint")
	}

	// Once the lease runs out (on the database's clock), the other
	// sidecar takes the delivery and succeeds first.
	var taken []*outbox.Job
	wait.Until(t, "the other sidecar to take the delivery over", func() bool {
		jobs, _, err := other.Claim(ctx, &outbox.ClaimRequest{Now: time.Now(), Limit: 10, MaxInFlight: 10})
		taken = append(taken, jobs...)
		return err == nil && len(taken) > 0
	})
	if len(taken) != 1 {
		t.Fatalf("the other sidecar claimed %v, want the one delivery", storetest.JobIDs(taken))
	}
	id := taken[0].Delivery.ID
	storetest.Finish(t, other, taken[0], outbox.StatusSucceeded, 204)

	unblock()
	var late []observer.LoggedEntry
	wait.Until(t, "a log line about the late save", func() bool {
		late = logs.Filter(func(e observer.LoggedEntry) bool {
			return e.Level >= zapcore.WarnLevel && e.ContextMap()["delivery_id"] == id
		}).All()
		return len(late) > 0
	})
	if e := late[0]; len(late) != 1 || e.Level != zapcore.WarnLevel || !strings.Contains(e.Message, "another sidecar took the delivery over") ||
		e.ContextMap()["webhook_id"] != w.ID {
		t.Fatalf("late save logged as %s %q %v (%d lines), want one warning that another sidecar took delivery %s of webhook %s over",
			e.Level, e.Message, e.ContextMap(), len(late), id, w.ID)
	}
	for _, e := range logs.All() {
		if e.Message == "delivery failed" {
			t.Fatalf("the refused late save was logged as a failed delivery: %v", e.ContextMap())
		}
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, secret) {
			t.Fatalf("a log line shows the webhook's secret: %s", line)
		}
	}
	d, _, err := other.Delivery(ctx, "app1", w.ID, id)
	if err != nil || d.Status != outbox.StatusSucceeded || len(d.Attempts) != 1 || d.Attempts[0].ResponseStatusCode != 204 {
		t.Fatalf("delivery after the late save: %+v %v, want the other sidecar's one attempt", d, err)
	}
}

// A webhook's URL and secret edited through another sidecar while its
// deliveries are pending apply to their next attempts: a claim reads the
// webhook as it is in the database, not as it was when the event came.
func TestPostgresDeliveriesReadCurrentWebhook(t *testing.T) {
	dsn := pgtest.DSN(t)
	sender := openPostgres(t, dsn, Options{})
	editor := openPostgres(t, dsn, Options{})

	type hit struct {
		endpoint, delivery, xsig string
		body                     []byte
	}
	var (
		mu   sync.Mutex
		hits []hit
	)
	record := func(name string, status int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			hits = append(hits, hit{name, r.Header.Get("webhook-id"), r.Header.Get("X-Signature"), body})
			mu.Unlock()
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	count := func(endpoint string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, h := range hits {
			if h.endpoint == endpoint {
				n++
			}
		}
		return n
	}
	oldURL, newURL := record("old", http.StatusInternalServerError).URL, record("new", http.StatusOK).URL

	schedule := make([]time.Duration, 50)
	for i := range schedule {
		schedule[i] = 200 * time.Millisecond
	}
	opts := outbox.Options{AllowDestinations: loopback, RetrySchedule: schedule}
	o := outbox.New(sender, opts)
	o.Start()
	t.Cleanup(func() { o.Close() })
	// The other sidecar's API; it delivers nothing itself, so every
	// attempt is the sender's.
	api := outbox.New(editor, opts)
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr(oldURL), Events: &[]string{"job_created"},
		Secret: ptr("old-secret"), MaxInFlight: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	const events = 3
	for i := range events {
		if _, err := o.Ingest(ctx, storetest.EventBody("app1", "job_created", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	wait.Until(t, "failed attempts to the old URL", func() bool { return count("old") >= events })

	if _, err := api.UpdateWebhook(ctx, "app1", w.ID, outbox.WebhookInput{URL: ptr(newURL), Secret: ptr("new-secret")}); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "every delivery to finish", func() bool {
		st, err := editor.Stats(ctx)
		return err == nil && st.Pending == 0
	})
	if ds, _, err := editor.Deliveries(ctx, "app1", w.ID, outbox.DeliveryFilter{Status: outbox.StatusSucceeded, Limit: 10}); err != nil || len(ds) != events {
		t.Fatalf("%d of %d deliveries succeeded (%v), want all, at the new URL", len(ds), events, err)
	}

	mu.Lock()
	defer mu.Unlock()
	first := -1
	for i, h := range hits {
		if h.endpoint != "new" {
			continue
		}
		if first < 0 {
			first = i
		}
		if h.xsig != signature.XSignature([]byte("new-secret"), h.body) {
			t.Errorf("attempt %d of delivery %s to the new URL is not signed with the new secret", i, h.delivery)
		}
	}
	// Attempts to one webhook are one at a time (maxInFlight 1), so once
	// one went to the new URL, none may go to the old.
	for _, h := range hits[first:] {
		if h.endpoint == "old" {
			t.Fatalf("an attempt of delivery %s went to the old URL after one went to the new: %d attempts in all", h.delivery, len(hits))
		}
	}
	if n := len(hits) - first; n != events {
		t.Fatalf("%d attempts to the new URL, want one per delivery (%d)", n, events)
	}
}

// The pending figure (what caddy_webhooks_outbox_pending shows) counts the
// fleet's queue: deliveries queued through one sidecar, claimed by it or
// not, are in every sidecar's figure, and leave it once finished anywhere.
func TestPostgresPendingIsTheFleets(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := openPostgres(t, dsn, Options{})
	b := openPostgres(t, dsn, Options{})
	w := storetest.CreateWebhook(t, a, "app1")
	var first *outbox.Ingest
	for i := range 5 {
		in := storetest.CommitOne(t, a, "app1", "job_created", w)
		if i == 0 {
			first = in
		}
	}
	jobs := storetest.Claim(t, a, time.Now(), 2)
	if len(jobs) != 2 {
		t.Fatalf("claimed %d, want 2", len(jobs))
	}
	sa, sb := storetest.Stats(t, a), storetest.Stats(t, b)
	if sa.Pending != 5 || sb.Pending != 5 {
		t.Fatalf("pending %d through the sidecar that queued them, %d through another, want 5 on both", sa.Pending, sb.Pending)
	}
	if !sb.OldestPending.Equal(sa.OldestPending) || sb.OldestPending.IsZero() {
		t.Fatalf("oldest pending %v through another sidecar, want %v", sb.OldestPending, sa.OldestPending)
	}
	if first.Deliveries[0].CreatedAt.Sub(sb.OldestPending).Abs() > time.Millisecond {
		t.Fatalf("oldest pending %v, want the first delivery's creation %v", sb.OldestPending, first.Deliveries[0].CreatedAt)
	}
	for _, j := range jobs {
		storetest.Finish(t, a, j, outbox.StatusSucceeded, 200)
	}
	// Queued through the other sidecar too.
	storetest.CommitOne(t, b, "app1", "job_created", w)
	sa, sb = storetest.Stats(t, a), storetest.Stats(t, b)
	if sa.Pending != 4 || sb.Pending != 4 {
		t.Fatalf("pending %d and %d after 2 finished and 1 more queued elsewhere, want 4 on both", sa.Pending, sb.Pending)
	}
}
