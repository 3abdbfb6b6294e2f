package outbox_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// An attempt that fails, its retry and a later resend each continue the
// ingest request's trace: the claim of a retry or a resend reads the
// event's stored context, not only the first claim.
func TestTraceContextOnRetryAndResend(t *testing.T) {
	const traceID, ingestParent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	var mu sync.Mutex
	var got []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		first := len(got) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	received := func() []http.Header {
		mu.Lock()
		defer mu.Unlock()
		return append([]http.Header(nil), got...)
	}
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{10 * time.Millisecond}})
	ctx := context.Background()
	w, err := o.CreateWebhook(ctx, "a", hookInput(srv.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	in := http.Header{}
	in.Set("traceparent", "00-"+traceID+"-"+ingestParent+"-01")
	in.Set("tracestate", "vendor=opaque")
	if _, err := o.Ingest(outbox.ExtractTrace(ctx, in), []byte(`{"event":"job_created","data":{"appId":"a"}}`), ""); err != nil {
		t.Fatal(err)
	}
	d := onlyDelivery(t, o, "a", w.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if len(d.Attempts) != 2 {
		t.Fatalf("delivered after %d attempts, want a failure and its retry", len(d.Attempts))
	}
	if _, err := o.Resend(ctx, "a", w.ID, d.ID); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "the resend's attempt", func() bool { return len(received()) == 3 })

	parents := map[string]bool{ingestParent: true}
	for i, h := range received() {
		what := []string{"the failed attempt", "its retry", "the resend"}[i]
		tp := strings.Split(h.Get("traceparent"), "-")
		if len(tp) != 4 || tp[1] != traceID || tp[3] != "01" {
			t.Errorf("%s sent traceparent %q, want trace %s with flags 01", what, h.Get("traceparent"), traceID)
			continue
		}
		if parents[tp[2]] {
			t.Errorf("%s sent parent id %s again; want a new one per attempt", what, tp[2])
		}
		parents[tp[2]] = true
		if h.Get("tracestate") != "vendor=opaque" {
			t.Errorf("%s sent tracestate %q, want it as received", what, h.Get("tracestate"))
		}
	}
}
