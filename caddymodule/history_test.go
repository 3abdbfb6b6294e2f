package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
)

// startOutbox runs an outbox with opts on a Badger store in a temp dir.
func startOutbox(t *testing.T, opts outbox.Options) *outbox.Outbox {
	t.Helper()
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	opts.AllowDestinations = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	ob := outbox.New(store, opts)
	ob.Start()
	t.Cleanup(func() { ob.Close() })
	return ob
}

// A delivery whose event expired before its first attempt shows
// requestBody null, and its attempt fails with "the event is no longer
// retained" instead of sending anything.
func TestExpiredEventNotSent(t *testing.T) {
	release := make(chan struct{})
	endpoint := testkit.NewRecorder(t)
	endpoint.SetRespond(func(_ testkit.Request, nth int) (int, string) {
		if nth == 1 {
			<-release
		}
		return http.StatusOK, "ok"
	})
	defer close(release)
	// One attempt at a time: the second event waits behind the first,
	// whose endpoint holds it, until its event has expired. With no
	// retries an event is kept as long as the history, and Badger counts
	// TTLs in whole seconds.
	ob := startOutbox(t, outbox.Options{Retention: 3 * time.Second, RetrySchedule: []time.Duration{}, MaxInFlightPerWebhook: 1, Timeout: time.Minute})
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	const base = "/webhooks/apps/app1/webhooks"
	var hook struct{ ID string }
	call(t, h, "POST", base, `{"name":"one at a time","url":"`+endpoint.URL("")+`","events":["job_created"]}`).decode(t, &hook)
	ctx := context.Background()
	if _, err := ob.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"app1","n":1}}`), ""); err != nil {
		t.Fatal(err)
	}
	endpoint.WaitFor(t, "", 1)
	second, err := ob.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"app1","n":2}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		ID          string  `json:"id"`
		EventID     string  `json:"eventId"`
		Status      string  `json:"status"`
		RequestBody *string `json:"requestBody"`
		LastError   string  `json:"lastError"`
	}
	find := func() view {
		var page struct{ Data []view }
		call(t, h, "GET", base+"/"+hook.ID+"/deliveries", "").decode(t, &page)
		for _, d := range page.Data {
			if d.EventID == second.ID {
				return d
			}
		}
		t.Fatalf("the history has no delivery of event %s", second.ID)
		return view{}
	}
	if d := find(); d.RequestBody == nil || d.Status != "pending" {
		t.Fatalf("the waiting delivery shows status %s requestBody %v, want pending with its body", d.Status, d.RequestBody)
	}
	var d view
	wait.Until(t, "the waiting delivery's event to expire", func() bool {
		d = find()
		return d.RequestBody == nil
	})
	res := call(t, h, "GET", base+"/"+hook.ID+"/deliveries/"+d.ID, "")
	if !strings.Contains(res.body, `"requestBody":null`) {
		t.Errorf("the delivery of an expired event answered %s, want \"requestBody\":null", res.body)
	}
	release <- struct{}{}
	wait.Until(t, "the delivery of the expired event to fail", func() bool {
		d = find()
		return d.Status == "failed"
	})
	if d.LastError != "the event is no longer retained" {
		t.Errorf("the delivery of an expired event failed with %q, want %q", d.LastError, "the event is no longer retained")
	}
	if n := endpoint.Count(""); n != 1 {
		t.Errorf("the endpoint got %d requests, want only the first event's", n)
	}
}

// The stats route takes 1 to 168 hours and counts at most the newest
// 10,000 deliveries of its window, saying so with "truncated".
func TestStatsLimits(t *testing.T) {
	ob := startOutbox(t, outbox.Options{})
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	const base = "/webhooks/apps/app1/webhooks"
	// A disabled webhook records a skipped delivery per event and sends
	// nothing, so the counts stay put.
	var hook struct{ ID string }
	call(t, h, "POST", base, `{"name":"off","url":"https://example.com/hook","events":["job_created"],"enabled":false}`).decode(t, &hook)
	stats := base + "/" + hook.ID + "/stats"

	runAPICases(t, h, []apiCase{
		{"no hours", "GET", stats + "?hours=0", "", 400, "hours"},
		{"over a week", "GET", stats + "?hours=169", "", 400, "hours"},
		{"not a number", "GET", stats + "?hours=day", "", 400, "hours"},
	})
	type answer struct {
		Data []struct {
			Start   time.Time `json:"start"`
			Skipped int       `json:"skipped"`
		} `json:"data"`
		Truncated bool `json:"truncated"`
	}
	var week answer
	call(t, h, "GET", stats+"?hours=168", "").decode(t, &week)
	if len(week.Data) != 168 || !week.Data[0].Start.Before(week.Data[167].Start) {
		t.Fatalf("a week of stats has %d hours, want 168, oldest first", len(week.Data))
	}

	ingest := func(n int) {
		t.Helper()
		ingestMany(t, ob, n, func(i int) []byte {
			return fmt.Appendf(nil, `{"event":"job_created","data":{"appId":"app1","n":%d}}`, i)
		})
	}
	// Two hours hold every delivery made now, even across an hour's end.
	count := func() (int, bool) {
		t.Helper()
		var a answer
		res := call(t, h, "GET", stats+"?hours=2", "")
		if res.status != 200 {
			t.Fatalf("stats answered %d %s", res.status, res.body)
		}
		res.decode(t, &a)
		n := 0
		for _, b := range a.Data {
			n += b.Skipped
		}
		return n, a.Truncated
	}
	ingest(statsMaxScan)
	if n, truncated := count(); n != statsMaxScan || truncated {
		t.Fatalf("with exactly 10,000 deliveries stats counted %d, truncated %v; want all 10000, not truncated", n, truncated)
	}
	ingest(1)
	if n, truncated := count(); n != statsMaxScan || !truncated {
		t.Fatalf("with 10,001 deliveries stats counted %d, truncated %v; want 10000 and truncated", n, truncated)
	}
}

// ingestMany ingests n events, body(i) for i from 0, from 32 goroutines,
// so a test can queue thousands quickly.
func ingestMany(t *testing.T, ob *outbox.Outbox, n int, body func(i int) []byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := ob.Ingest(context.Background(), body(i), ""); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
