package outbox_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// hookInput is a valid create request for url, changed by edit.
func hookInput(url string, edit func(*outbox.WebhookInput)) outbox.WebhookInput {
	in := outbox.WebhookInput{Name: ptr("n"), URL: ptr(url), Events: &[]string{"job_created", "job_finished"}}
	if edit != nil {
		edit(&in)
	}
	return in
}

func TestWebhookOptionsValidation(t *testing.T) {
	o := openTest(t, outbox.Options{Timeout: 10 * time.Second})
	ctx := context.Background()
	long := strings.Repeat("a", outbox.MaxHeaderValueLen+1)
	many := map[string]*string{}
	for i := range outbox.MaxHeaders + 1 {
		many["X-H"+string(rune('a'+i))] = ptr("v")
	}
	for _, tc := range []struct {
		name  string
		edit  func(*outbox.WebhookInput)
		field string
		words string
	}{
		{"reserved Content-Type", func(in *outbox.WebhookInput) { in.Headers = map[string]*string{"content-type": ptr("x")} }, "headers", "Content-Type"},
		{"reserved webhook-*", func(in *outbox.WebhookInput) { in.Headers = map[string]*string{"Webhook-Id": ptr("x")} }, "headers", "Webhook-Id"},
		{"reserved svix-*", func(in *outbox.WebhookInput) { in.Headers = map[string]*string{"svix-signature": ptr("x")} }, "headers", "Svix-Signature"},
		{"reserved X-Signature", func(in *outbox.WebhookInput) { in.Headers = map[string]*string{"X-Signature": ptr("x")} }, "headers", "X-Signature"},
		{"bad name", func(in *outbox.WebhookInput) { in.Headers = map[string]*string{"X Bad": ptr("x")} }, "headers", `"X Bad"`},
		{"CR LF", func(in *outbox.WebhookInput) { in.Headers = map[string]*string{"X-Api-Key": ptr("a\r\nInjected: 1")} }, "headers", "X-Api-Key"},
		{"value too long", func(in *outbox.WebhookInput) { in.Headers = map[string]*string{"X-Long": &long} }, "headers", "X-Long"},
		{"too many", func(in *outbox.WebhookInput) { in.Headers = many }, "headers", "at most 20"},
		{"filter syntax", func(in *outbox.WebhookInput) { in.Filter = ptr("data.amount >") }, "filter", "Syntax error"},
		{"filter not bool", func(in *outbox.WebhookInput) { in.Filter = ptr("event + 'x'") }, "filter", "bool"},
		{"filter unknown variable", func(in *outbox.WebhookInput) { in.Filter = ptr("request.path == '/'") }, "filter", "undeclared reference"},
		{"filter too long", func(in *outbox.WebhookInput) { in.Filter = ptr(strings.Repeat("true && ", 600) + "true") }, "filter", "4096"},
		{"negative retry", func(in *outbox.WebhookInput) { in.RetrySchedule = &[]time.Duration{-time.Second} }, "retrySchedule", "0s"},
		{"zero timeout", func(in *outbox.WebhookInput) { in.Timeout = ptr(time.Duration(0)) }, "timeout", "40s"},
		{"timeout over 4x", func(in *outbox.WebhookInput) { in.Timeout = ptr(41 * time.Second) }, "timeout", "40s"},
		{"maxInFlight 0", func(in *outbox.WebhookInput) { in.MaxInFlight = ptr(0) }, "maxInFlight", "1 to 256"},
		{"maxInFlight 257", func(in *outbox.WebhookInput) { in.MaxInFlight = ptr(257) }, "maxInFlight", "1 to 256"},
		{"rateLimit 0", func(in *outbox.WebhookInput) { in.RateLimit = ptr(0) }, "rateLimit", "1 to"},
		{"51 retries", func(in *outbox.WebhookInput) { in.RetrySchedule = ptr(make([]time.Duration, 51)) }, "retrySchedule", "at most 50"},
		{"retry over 168h", func(in *outbox.WebhookInput) {
			in.RetrySchedule = &[]time.Duration{time.Second, 168*time.Hour + time.Second}
		}, "retrySchedule", "168h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := o.CreateWebhook(ctx, "app1", hookInput("https://example.com/h", tc.edit))
			var ve *outbox.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("error %v, want a %s error mentioning %q", err, tc.field, tc.words)
			}
			if strings.Contains(err.Error(), "Injected") {
				t.Fatalf("error shows a header value: %v", err)
			}
		})
	}
	if hooks, _ := o.ListWebhooks(ctx, "app1"); len(hooks) != 0 {
		t.Fatalf("refused creates stored %d webhooks", len(hooks))
	}

	// The bounds themselves are allowed: 50 retries, a wait of exactly 168h.
	fifty := make([]time.Duration, 50)
	fifty[49] = 168 * time.Hour
	w, err := o.CreateWebhook(ctx, "app1", hookInput("https://example.com/h", func(in *outbox.WebhookInput) { in.RetrySchedule = &fifty }))
	if err != nil {
		t.Fatalf("50 retries, the last 168h: %v", err)
	}
	if len(w.RetrySchedule) != 50 || w.RetrySchedule[49] != 168*time.Hour {
		t.Fatalf("stored retry schedule has %d waits, the last %v", len(w.RetrySchedule), w.RetrySchedule[len(w.RetrySchedule)-1])
	}
	over := append(slices.Clone(fifty), time.Second)
	var ve *outbox.ValidationError
	if _, err := o.UpdateWebhook(ctx, "app1", w.ID, outbox.WebhookInput{RetrySchedule: &over}); !errors.As(err, &ve) || ve.Field != "retrySchedule" {
		t.Fatalf("edit to 51 retries: %v, want a retrySchedule error", err)
	}
	if got, _ := o.GetWebhook(ctx, "app1", w.ID); len(got.RetrySchedule) != 50 {
		t.Fatalf("a refused edit left %d retries, want the 50 as before", len(got.RetrySchedule))
	}
}

func TestHeadersMergeAndSent(t *testing.T) {
	got := make(chan http.Header, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	defer srv.Close()
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL, func(in *outbox.WebhookInput) {
		in.Headers = map[string]*string{"x-api-key": ptr("k1"), "X-Team": ptr("ops"), "X-Gone": ptr("1")}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if w.Headers["X-Api-Key"] != "k1" {
		t.Fatalf("header names not canonical: %v", w.Headers)
	}
	w, err = o.UpdateWebhook(ctx, "a", w.ID, outbox.WebhookInput{Headers: map[string]*string{"X-Gone": nil, "X-Env": ptr("prod")}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"X-Api-Key": "k1", "X-Team": "ops", "X-Env": "prod"}
	if len(w.Headers) != len(want) {
		t.Fatalf("after the merge patch headers are %v, want %v", w.Headers, want)
	}
	if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
		t.Fatal(err)
	}
	h := <-got
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s arrived as %q, want %q", k, h.Get(k), v)
		}
	}
	if h.Get("X-Gone") != "" {
		t.Errorf("removed header X-Gone still sent")
	}
	if _, err := o.Test(ctx, "a", w.ID); err != nil {
		t.Fatal(err)
	}
	if h := <-got; h.Get("X-Api-Key") != "k1" {
		t.Errorf("test delivery without the webhook's headers: %v", h)
	}
	w, err = o.UpdateWebhook(ctx, "a", w.ID, outbox.WebhookInput{ReplaceHeaders: true})
	if err != nil || w.Headers != nil {
		t.Fatalf("replacing headers with nothing left %v (%v)", w.Headers, err)
	}
}

// filterObserver counts filtered events.
type filterObserver struct {
	outbox.Observer
	filtered atomic.Int64
}

func (c *filterObserver) EventFiltered(string) { c.filtered.Add(1) }

func TestFilter(t *testing.T) {
	var hits sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := hits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}))
	defer srv.Close()
	obs := &filterObserver{Observer: nopObserver{}}
	o := openTest(t, outbox.Options{Observer: obs})
	ctx := context.Background()
	big, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL+"/big", func(in *outbox.WebhookInput) {
		in.Filter = ptr(`event == "job_finished" && data.amount > 100`)
	}))
	if err != nil {
		t.Fatal(err)
	}
	guarded, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL+"/eu", func(in *outbox.WebhookInput) {
		in.Filter = ptr(`has(data.region) && data.region.startsWith("eu")`)
	}))
	if err != nil {
		t.Fatal(err)
	}
	// Would visit 200^3 elements: the cost limit stops it.
	hostile, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL+"/hostile", func(in *outbox.WebhookInput) {
		in.Filter = ptr(`data.items.all(a, data.items.all(b, data.items.all(c, a + b + c >= 0)))`)
	}))
	if err != nil {
		t.Fatalf("a costly expression that type-checks is accepted and stopped at evaluation: %v", err)
	}
	if _, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL+"/all", nil)); err != nil {
		t.Fatal(err)
	}
	items := "[" + strings.TrimSuffix(strings.Repeat("1,", 200), ",") + "]"
	for _, tc := range []struct {
		body string
		want int // deliveries
	}{
		{`{"event":"job_finished","data":{"appId":"a","amount":500}}`, 2},               // big, all
		{`{"event":"job_finished","data":{"appId":"a","amount":5,"region":"eu-1"}}`, 2}, // eu, all
		{`{"event":"job_created","data":{"appId":"a","amount":500}}`, 1},                // all; amount of another type
		{`{"event":"job_finished","data":{"appId":"a"}}`, 1},                            // missing amount: an error, no match
		{`{"event":"job_finished","data":{"appId":"a","items":` + items + `}}`, 1},      // hostile stopped
	} {
		res, err := o.Ingest(ctx, []byte(tc.body), "")
		if err != nil {
			t.Fatal(err)
		}
		if res.Deliveries != tc.want {
			t.Errorf("%s: %d deliveries, want %d", tc.body, res.Deliveries, tc.want)
		}
	}
	wait.Until(t, "the deliveries", func() bool {
		n, ok := hits.Load("/all")
		return ok && n.(*atomic.Int64).Load() == 5
	})
	for path, want := range map[string]int64{"/big": 1, "/eu": 1, "/hostile": 0} {
		var n int64
		if v, ok := hits.Load(path); ok {
			n = v.(*atomic.Int64).Load()
		}
		if n != want {
			t.Errorf("%s got %d deliveries, want %d", path, n, want)
		}
	}
	// 5 events: big misses 4, eu 4, hostile all 5.
	if got := obs.filtered.Load(); got != 13 {
		t.Errorf("filtered count %d, want 13", got)
	}
	for _, w := range []*outbox.Webhook{big, guarded, hostile} {
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{})
		if want := map[string]int{big.ID: 1, guarded.ID: 1}[w.ID]; len(ds) != want {
			t.Errorf("%s has %d deliveries in its history, want %d", w.URL, len(ds), want)
		}
	}
	// "" removes the filter.
	if _, err := o.UpdateWebhook(ctx, "a", hostile.ID, outbox.WebhookInput{Filter: ptr("")}); err != nil {
		t.Fatal(err)
	}
	if res, _ := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); res.Deliveries != 2 {
		t.Errorf("after removing a filter: %d deliveries, want 2", res.Deliveries)
	}
}

func TestWebhookRetryScheduleAndTimeout(t *testing.T) {
	var failing, hanging atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			hanging.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		failing.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	defer close(release)
	// The app's schedule and timeout would take hours and a minute.
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{time.Hour}, Timeout: time.Minute})
	ctx := context.Background()
	fails, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL+"/fail", func(in *outbox.WebhookInput) {
		in.RetrySchedule = &[]time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	}))
	if err != nil {
		t.Fatal(err)
	}
	hangs, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL+"/hang", func(in *outbox.WebhookInput) {
		in.Timeout, in.RetrySchedule = ptr(300*time.Millisecond), &[]time.Duration{}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*outbox.Webhook{fails, hangs} {
		want := map[string]int{fails.ID: 4, hangs.ID: 1}[w.ID]
		wait.Until(t, "a failed delivery", func() bool {
			ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{})
			return len(ds) == 1 && ds[0].Status == outbox.StatusFailed
		})
		ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{})
		if len(ds[0].Attempts) != want {
			t.Errorf("%s: %d attempts, want %d", w.URL, len(ds[0].Attempts), want)
		}
		if w == hangs && ds[0].LastAttempt().Error != "timed out after 300ms" {
			t.Errorf("hanging endpoint's attempt: %q, want the webhook's own timeout", ds[0].LastAttempt().Error)
		}
	}
}

func TestMaxInFlightOne(t *testing.T) {
	var now, most, total atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		now.Add(-1)
		total.Add(1)
	}))
	defer srv.Close()
	o := openTest(t, outbox.Options{MaxInFlightPerWebhook: 16})
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL, func(in *outbox.WebhookInput) { in.MaxInFlight = ptr(1) })); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	wait.Until(t, "30 deliveries", func() bool { return total.Load() == 30 })
	if most.Load() != 1 {
		t.Fatalf("%d attempts overlapped, want 1 at a time", most.Load())
	}
}

func TestRateLimitSpacesAttempts(t *testing.T) {
	rc := testkit.NewRecorder(t)
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "a", hookInput(rc.URL(""), func(in *outbox.WebhookInput) { in.RateLimit = ptr(10) }))
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	start := time.Now()
	for range n {
		if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	at := rc.WaitFor(t, "", n)
	// Eleven gaps of at least 100ms each: the span cannot be shorter.
	if span := at[n-1].At.Sub(start); span < (n-1)*100*time.Millisecond-20*time.Millisecond {
		t.Errorf("%d attempts at 10/s took %v", n, span)
	}
	ds, _, _ := o.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 100})
	for _, d := range ds {
		if len(d.Attempts) != 1 || d.Status != outbox.StatusSucceeded {
			t.Fatalf("a rate-limited wait was recorded: %d attempts, %s", len(d.Attempts), d.Status)
		}
	}
}

func TestTraceContextContinued(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	defer srv.Close()
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	if _, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL, nil)); err != nil {
		t.Fatal(err)
	}
	in := http.Header{}
	in.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	in.Set("tracestate", "vendor=opaque")
	if _, err := o.Ingest(outbox.ExtractTrace(ctx, in), []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
		t.Fatal(err)
	}
	h := <-got
	tp := strings.Split(h.Get("traceparent"), "-")
	if len(tp) != 4 || tp[1] != "4bf92f3577b34da6a3ce929d0e0e4736" || tp[3] != "01" {
		t.Fatalf("traceparent %q does not continue the trace", h.Get("traceparent"))
	}
	if tp[2] == "00f067aa0ba902b7" {
		t.Errorf("traceparent kept the ingest's parent id; want a new one per attempt")
	}
	if h.Get("tracestate") != "vendor=opaque" {
		t.Errorf("tracestate %q", h.Get("tracestate"))
	}
}

type nopObserver struct{}

func (nopObserver) EventReceived(string)                        {}
func (nopObserver) EventFiltered(string)                        {}
func (nopObserver) AttemptFinished(string, bool, time.Duration) {}
func (nopObserver) DeliveryFailed(string)                       {}
func (nopObserver) QueueStats(outbox.Stats)                     {}
