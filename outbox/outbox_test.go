package outbox_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func openTest(t *testing.T, opts outbox.Options) *outbox.Outbox {
	t.Helper()
	s, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.AllowDestinations == nil {
		opts.AllowDestinations = loopback
	}
	o := outbox.New(s, opts)
	o.Start()
	t.Cleanup(func() { o.Close() })
	return o
}

func ptr[T any](v T) *T { return &v }

func TestDeliverySignedAndRecorded(t *testing.T) {
	type got struct {
		body []byte
		h    http.Header
	}
	ch := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{b, r.Header}
		w.WriteHeader(200)
		io.WriteString(w, "thanks")
	}))
	defer srv.Close()
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("ci"), URL: ptr(srv.URL), Events: &[]string{"job_finished"}, Secret: ptr("s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"job_finished",  "data":{"appId":"app1","x":1}}`)
	res, err := o.Ingest(ctx, body, "")
	if err != nil || res.Deliveries != 1 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	g := receive(t, ch, "the signed delivery")
	if string(g.body) != string(body) {
		t.Fatalf("body changed: %s", g.body)
	}
	if g.h.Get("X-Signature") != testkit.HexHMAC("s3cret", body) {
		t.Fatalf("X-Signature %q", g.h.Get("X-Signature"))
	}
	if g.h.Get("webhook-id") != res.ID {
		t.Fatalf("webhook-id %q want %q", g.h.Get("webhook-id"), res.ID)
	}
	ts := g.h.Get("webhook-timestamp")
	key, _ := signature.StandardKey("whsec_" + base64.StdEncoding.EncodeToString([]byte("s3cret")))
	want := "v1," + base64.StdEncoding.EncodeToString(signature.HMACSHA256(key, []byte(res.ID+"."+ts+"."), body))
	if g.h.Get("webhook-signature") != want {
		t.Fatalf("webhook-signature %q want %q", g.h.Get("webhook-signature"), want)
	}
	var ds []*outbox.Delivery
	wait.Until(t, "succeeded delivery", func() bool {
		ds, _, _ = o.Deliveries(ctx, "app1", w.ID, outbox.DeliveryFilter{})
		return len(ds) == 1 && ds[0].Status == outbox.StatusSucceeded
	})
	a := ds[0].LastAttempt()
	if a.ResponseStatusCode != 200 || a.ResponseBody != "thanks" || a.SentAt.IsZero() {
		t.Fatalf("attempt %+v", a)
	}
	if _, ev, _ := o.Delivery(ctx, "app1", w.ID, ds[0].ID); ev == nil || string(ev.Body) != string(body) {
		t.Fatalf("event body not kept byte for byte: %v", ev)
	}
}

func TestRetryThenSucceedAndResend(t *testing.T) {
	var n, fail atomic.Int32
	fail.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= fail.Load() {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}})
	ctx := context.Background()
	w, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(srv.URL), Events: &[]string{"job_created"}})
	if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "success after two failures", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{})
		return len(ds) == 1 && ds[0].Status == outbox.StatusSucceeded && len(ds[0].Attempts) == 3
	})

	// Always failing: exhausts the schedule, then a resend delivers it.
	fail.Store(1 << 30)
	if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
		t.Fatal(err)
	}
	var failed *outbox.Delivery
	wait.Until(t, "failed delivery", func() bool {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Status: outbox.StatusFailed})
		if len(ds) == 1 {
			failed = ds[0]
		}
		return failed != nil
	})
	if len(failed.Attempts) != 3 {
		t.Fatalf("failed after %d attempts, want 3", len(failed.Attempts))
	}
	fail.Store(0)
	if _, err := o.Resend(ctx, "a", w.ID, failed.ID); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "resent delivery", func() bool {
		d, _, _ := o.Delivery(ctx, "a", w.ID, failed.ID)
		return d.Status == outbox.StatusSucceeded && len(d.Attempts) == 4
	})
	if _, err := o.Resend(ctx, "a", w.ID, "nope"); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("resend of unknown delivery: %v", err)
	}
}

// 500 concurrent ingests share group commits: each gets its own event id
// and its delivery, and the history holds all of them.
func TestGroupCommitConcurrentIngest(t *testing.T) {
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	// A disabled webhook records a skipped delivery per event and sends nothing.
	hook, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr("https://example.test/"), Events: &[]string{"job_created"}, Enabled: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make(chan outbox.IngestResult, 500)
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := o.Ingest(ctx, []byte(fmt.Sprintf(`{"event":"job_created","data":{"appId":"a","n":%d}}`, i)), "")
			if err != nil {
				errs <- err
				return
			}
			results <- r
		}()
	}
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		t.Fatalf("concurrent ingest: %v", err)
	}
	ids := map[string]bool{}
	for r := range results {
		if r.Deliveries != 1 || ids[r.ID] {
			t.Fatalf("ingest answered %+v: want a new event id with one delivery", r)
		}
		ids[r.ID] = true
	}
	var stored int
	f := outbox.DeliveryFilter{Limit: outbox.MaxPageSize}
	for {
		ds, next, err := o.Deliveries(ctx, "a", hook.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if !ids[d.EventID] {
				t.Fatalf("history has event %s that no ingest answered", d.EventID)
			}
			stored++
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	if len(ids) != 500 || stored != 500 {
		t.Fatalf("%d events answered and %d deliveries stored, want 500 of each", len(ids), stored)
	}
}

func TestIdempotencyKey(t *testing.T) {
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	hook, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://127.0.0.1:1/"), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"job_created","data":{"appId":"a"}}`)
	r1, err := o.Ingest(ctx, body, "k1")
	if err != nil || r1.Duplicate {
		t.Fatal(r1, err)
	}
	r2, err := o.Ingest(ctx, body, "k1")
	if err != nil || !r2.Duplicate || r2.ID != r1.ID || r2.Deliveries != 1 {
		t.Fatalf("repeat: %+v %v, first %+v", r2, err, r1)
	}
	ds, _, err := o.Deliveries(ctx, "a", hook.ID, outbox.DeliveryFilter{})
	if err != nil || len(ds) != 1 {
		t.Fatalf("history after a repeated key: %d deliveries %v, want 1", len(ds), err)
	}
}

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{`, ""},
		{`{"data":{"appId":"a"}}`, "event"},
		{`{"event":"x"}`, "data"},
		{`{"event":"x","data":null}`, "data"},
		{`{"event":"x","data":[1]}`, "data"},
		{`{"event":"x","data":{}}`, "data.appId"},
		{`{"event":"x","data":{"appId":5}}`, "data.appId"},
	} {
		_, _, err := outbox.ParseEvent([]byte(tc.body))
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("ParseEvent(%s) = %v, want error on field %q", tc.body, err, tc.field)
		}
	}
}

func TestWebhookValidation(t *testing.T) {
	o := openTest(t, outbox.Options{AllowDestinations: []netip.Prefix{}})
	ctx := context.Background()
	for _, tc := range []struct {
		in    outbox.WebhookInput
		field string
	}{
		{outbox.WebhookInput{URL: ptr("https://x.test"), Events: &[]string{"job_created"}}, "name"},
		{outbox.WebhookInput{Name: ptr(" "), URL: ptr("https://x.test"), Events: &[]string{"job_created"}}, "name"},
		{outbox.WebhookInput{Name: ptr("n"), URL: ptr("ftp://x.test"), Events: &[]string{"job_created"}}, "url"},
		{outbox.WebhookInput{Name: ptr("n"), URL: ptr("https://x.test"), Events: &[]string{}}, "events"},
		{outbox.WebhookInput{Name: ptr("n"), URL: ptr("https://x.test"), Events: &[]string{"nope"}}, "events"},
		{outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://127.0.0.1/"), Events: &[]string{"job_created"}}, "url"},
		{outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://[::ffff:169.254.169.254]/"), Events: &[]string{"job_created"}}, "url"},
	} {
		_, err := o.CreateWebhook(ctx, "a", tc.in)
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("create %+v: %v, want error on %q", tc.in, err, tc.field)
		}
	}
	if apps, _ := o.ListApps(ctx); len(apps) != 0 {
		t.Fatalf("rejected creates stored webhooks: %v", apps)
	}
}

// A hanging endpoint holds at most its share of workers; the others keep
// flowing.
func TestSlowEndpointIsolated(t *testing.T) {
	release := make(chan struct{})
	var hung atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	var fast atomic.Int32
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fast.Add(1) }))
	defer healthy.Close()
	o := openTest(t, outbox.Options{Workers: 16, MaxInFlightPerWebhook: 4, Timeout: time.Minute})
	ctx := context.Background()
	for app, url := range map[string]string{"slow": slow.URL, "fast": healthy.URL} {
		if _, err := o.CreateWebhook(ctx, app, outbox.WebhookInput{Name: ptr(app), URL: ptr(url), Events: &[]string{"job_created"}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		ingestOne(t, o, "slow", "job_created")
	}
	// The hanging endpoint holds its whole share before the healthy one
	// gets any work, so the healthy one is served beside a full cap.
	wait.Until(t, "the hanging endpoint to hold its 4 attempts", func() bool { return hung.Load() == 4 })
	for range 50 {
		ingestOne(t, o, "fast", "job_created")
	}
	wait.Until(t, "healthy endpoint to get all 50 while the other hangs", func() bool { return fast.Load() == 50 })
	if n := hung.Load(); n != 4 {
		t.Fatalf("%d requests reached the hanging endpoint, want exactly its cap of 4", n)
	}
}

// Large events from many clients at once overflow one transaction; every
// ingest that returned must still be delivered.
func TestLargeBatchOverflowsTransaction(t *testing.T) {
	rc := testkit.NewRecorder(t)
	o := openTest(t, outbox.Options{Workers: 16, MaxInFlightPerWebhook: 16})
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(rc.URL("")), Events: &[]string{"job_created"}}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"job_created","data":{"appId":"a","pad":"` + strings.Repeat("y", 60<<10) + `"}}`)
	var wg sync.WaitGroup
	ids := make(chan string, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := o.Ingest(ctx, body, "")
			if err != nil {
				t.Error(err)
				return
			}
			ids <- r.ID
		}()
	}
	wg.Wait()
	close(ids)
	want := map[string]bool{}
	for id := range ids {
		want[id] = true
	}
	wait.Until(t, "every accepted large event delivered", func() bool {
		got := map[string]bool{}
		for _, r := range rc.Requests("") {
			got[r.Header.Get("Webhook-Id")] = true
		}
		for id := range want {
			if !got[id] {
				return false
			}
		}
		return true
	})
}

func TestParseEventExactNames(t *testing.T) {
	for _, body := range []string{
		`{"Event":"job_finished","DATA":{"APPID":"a"}}`,
		`{"event":"job_finished","data":{"AppId":"a"}}`,
	} {
		if _, _, err := outbox.ParseEvent([]byte(body)); err == nil {
			t.Errorf("ParseEvent(%s) accepted members receivers will not find", body)
		}
	}
	ev, app, err := outbox.ParseEvent([]byte(`{"event":"job_created","EVENT":"job_finished","data":{"AppId":"x","appId":"a"}}`))
	if err != nil || ev != "job_created" || app != "a" {
		t.Fatalf("got %q %q %v, want the exactly spelled members", ev, app, err)
	}
}
