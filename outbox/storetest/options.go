package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// suiteWebhookOptions: a webhook's per-webhook options come back as
// written from every read, the claim's included, and an empty retry
// schedule (a single attempt) stays apart from none (the app's).
func suiteWebhookOptions(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "app1")
	opts := func(w *outbox.Webhook) []any {
		return []any{w.Headers, w.Filter, w.RetrySchedule, w.Timeout, w.MaxInFlight, w.RateLimit}
	}
	if got, _ := s.GetWebhook(ctx, "app1", w.ID); got.Headers != nil || got.RetrySchedule != nil || got.Timeout != 0 {
		t.Fatalf("a webhook without options reads back with some: %v", opts(got))
	}
	set := func(cur *outbox.Webhook) error {
		cur.Headers = map[string]string{"X-Api-Key": "k1", "X-Team": "ops"}
		cur.Filter = `data.amount > 100`
		cur.RetrySchedule = []time.Duration{time.Second, time.Minute}
		cur.Timeout, cur.MaxInFlight, cur.RateLimit = 3*time.Second, 2, 5
		return nil
	}
	want := *w.Clone()
	_ = set(&want)
	if _, err := s.UpdateWebhook(ctx, "app1", w.ID, set); err != nil {
		t.Fatal(err)
	}
	in := CommitOne(t, s, "app1", "job_created", w)
	check := func(how string, got *outbox.Webhook) {
		t.Helper()
		if !reflect.DeepEqual(opts(got), opts(&want)) {
			t.Errorf("%s: options %v, want %v", how, opts(got), opts(&want))
		}
	}
	got, err := s.GetWebhook(ctx, "app1", w.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("GetWebhook", got)
	list, _ := s.ListWebhooks(ctx, "app1")
	check("ListWebhooks", list[0])
	jobs := Claim(t, s, time.Now().Add(time.Second), 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d jobs, want 1", len(jobs))
	}
	check("Claim", jobs[0].Webhook)
	if jobs[0].Delivery.ID != in.Deliveries[0].ID {
		t.Fatalf("claimed %s", jobs[0].Delivery.ID)
	}
	Finish(t, s, jobs[0], outbox.StatusSucceeded, 200)

	// A single attempt, and no headers any more.
	if _, err := s.UpdateWebhook(ctx, "app1", w.ID, func(cur *outbox.Webhook) error {
		cur.RetrySchedule, cur.Headers = []time.Duration{}, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetWebhook(ctx, "app1", w.ID)
	if got.RetrySchedule == nil || len(got.RetrySchedule) != 0 || got.Headers != nil {
		t.Errorf("an empty retry schedule read back as %#v (headers %v)", got.RetrySchedule, got.Headers)
	}
}

// suiteEventTraceContext: the trace context stored with an event comes back
// with the claimed job, so every attempt can continue the trace.
func suiteEventTraceContext(t *testing.T, s outbox.Store) {
	w := CreateWebhook(t, s, "app1")
	in := NewIngest("app1", "job_created", EventBody("app1", "job_created", 1), "", w)
	in.Event.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	in.Event.TraceState = "vendor=opaque"
	plain := NewIngest("app1", "job_created", EventBody("app1", "job_created", 2), "", w)
	if err := s.Commit(context.Background(), []*outbox.Ingest{in, plain}); err != nil {
		t.Fatal(err)
	}
	jobs := Claim(t, s, time.Now().Add(time.Second), 10)
	if len(jobs) != 2 {
		t.Fatalf("claimed %d jobs, want 2", len(jobs))
	}
	var traced *outbox.Job
	for _, j := range jobs {
		want := outbox.Event{}
		if j.Event.ID == in.Event.ID {
			want, traced = *in.Event, j
		}
		if j.Event.TraceParent != want.TraceParent || j.Event.TraceState != want.TraceState {
			t.Errorf("event %s came back with trace %q %q, want %q %q", j.Event.ID,
				j.Event.TraceParent, j.Event.TraceState, want.TraceParent, want.TraceState)
		}
	}
	if traced == nil {
		t.Fatal("the traced event's job was not claimed")
	}

	// Its retry and a later resend are claimed with it too.
	ctx := context.Background()
	now := time.Now()
	traced.Delivery.Attempts = append(traced.Delivery.Attempts, outbox.Attempt{SentAt: now.UTC(), ResponseStatusCode: 500, DurationMs: 1})
	traced.Delivery.Round = 1
	traced.Delivery.NextAttemptAt = &now
	if err := s.Save(ctx, traced); err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"retry", "resend"} {
		var again *outbox.Job
		for _, j := range Claim(t, s, time.Now().Add(time.Second), 10) {
			if j.Delivery.ID == traced.Delivery.ID {
				again = j
			} else {
				_ = s.Release(ctx, j)
			}
		}
		if again == nil {
			t.Fatalf("the %s was not claimed", what)
		}
		if again.Event.TraceParent != in.Event.TraceParent || again.Event.TraceState != in.Event.TraceState {
			t.Errorf("the %s came back with trace %q %q, want %q %q", what,
				again.Event.TraceParent, again.Event.TraceState, in.Event.TraceParent, in.Event.TraceState)
		}
		if what == "retry" {
			Finish(t, s, again, outbox.StatusFailed, 500)
			if _, err := s.Requeue(ctx, "app1", w.ID, []string{traced.Delivery.ID}, time.Now(), resendable); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// RateLimiterSlots checks a RateLimiter, such as a store that implements
// it: slots are handed out one at a time, never more than the limit's
// worth in the time they were taken over, and the wait it answers is
// until the next slot. limiters are several handles on the same state
// (for a fleet store: one per sidecar), taken from concurrently; webhook
// returns the id of a new webhook to limit.
func RateLimiterSlots(t *testing.T, webhook func() string, limiters ...outbox.RateLimiter) {
	const perSecond = 20
	const runFor = 1500 * time.Millisecond
	ctx := context.Background()
	// At one a second, the slot after the first is a second away
	// whichever handle asks.
	slow := webhook()
	if w, err := limiters[0].TakeSlot(ctx, slow, 1); err != nil || w != 0 {
		t.Fatalf("first slot: wait %v, %v; want it taken", w, err)
	}
	w, err := limiters[len(limiters)-1].TakeSlot(ctx, slow, 1)
	if err != nil || w <= 0 || w > time.Second {
		t.Fatalf("second slot: wait %v, %v; want up to 1s", w, err)
	}
	id := webhook()
	start := time.Now()
	taken := make(chan int, len(limiters)*2)
	for _, l := range limiters {
		for range 2 {
			go func() {
				n := 0
				for time.Since(start) < runFor {
					w, err := l.TakeSlot(ctx, id, perSecond)
					if err != nil {
						t.Error(err)
						break
					}
					if w == 0 {
						n++
						continue
					}
					time.Sleep(min(w, 5*time.Millisecond))
				}
				taken <- n
			}()
		}
	}
	total := 0
	for range len(limiters) * 2 {
		total += <-taken
	}
	elapsed := time.Since(start)
	// Slots are 1/perSecond apart, so this many fit in the time at most.
	most := int(elapsed.Seconds()*perSecond) + 1
	if total > most || total == 0 {
		t.Fatalf("%d slots taken in %v at %d/s by %d handles, want 1 to %d", total, elapsed, perSecond, len(limiters), most)
	}
}
