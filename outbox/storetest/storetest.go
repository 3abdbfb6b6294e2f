// Package storetest is the conformance suite of outbox.Store: every store
// runs Run in its own tests, so the engine can rely on one behaviour
// whatever the storage. Its helpers serve store-specific tests too.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// Run checks what the outbox relies on from a Store, so every
// implementation behaves the same. open returns a fresh, empty store and
// closes it when the test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) outbox.Store) {
	t.Run("WebhookCRUD", func(t *testing.T) { suiteWebhookCRUD(t, open(t)) })
	t.Run("CommitClaimSave", func(t *testing.T) { suiteCommitClaimSave(t, open(t)) })
	t.Run("ClaimAdmit", func(t *testing.T) { suiteClaimAdmit(t, open(t)) })
	t.Run("ClaimOwnCap", func(t *testing.T) { suiteClaimOwnCap(t, open(t)) })
	t.Run("Release", func(t *testing.T) { suiteRelease(t, open(t)) })
	t.Run("Requeue", func(t *testing.T) { suiteRequeue(t, open(t)) })
	t.Run("FailedSince", func(t *testing.T) { suiteFailedSince(t, open(t)) })
	t.Run("DeliveriesPaging", func(t *testing.T) { suiteDeliveriesPaging(t, open(t)) })
	t.Run("Idempotency", func(t *testing.T) { suiteIdempotency(t, open(t)) })
	t.Run("Stats", func(t *testing.T) { suiteStats(t, open(t)) })
	t.Run("EventBodyByteForByte", func(t *testing.T) { suiteEventBody(t, open(t)) })
	t.Run("DeleteWhileInFlight", func(t *testing.T) { suiteDeleteInFlight(t, open(t)) })
	t.Run("EventOutlivesLateRetry", func(t *testing.T) { suiteEventOutlivesLateRetry(t, open(t)) })
	t.Run("Portal", func(t *testing.T) { suitePortal(t, open(t)) })
	t.Run("AppIDs", func(t *testing.T) { suiteAppIDs(t, open(t)) })
	t.Run("IdempotencyBodyHash", func(t *testing.T) { suiteIdempotencyBodyHash(t, open(t)) })
	RunEvents(t, open)
	t.Run("WebhookOptions", func(t *testing.T) { suiteWebhookOptions(t, open(t)) })
	t.Run("EventTraceContext", func(t *testing.T) { suiteEventTraceContext(t, open(t)) })
	t.Run("RateLimiter", func(t *testing.T) {
		s := open(t)
		rl, ok := s.(outbox.RateLimiter)
		if !ok {
			t.Skip("the store keeps no rate limits; the outbox does, in memory")
		}
		RateLimiterSlots(t, func() string { return CreateWebhook(t, s, "app1").ID }, rl)
	})
}

// ---- helpers ----

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// all admits as many deliveries per webhook as the limit allows.
func all(now time.Time, limit int) *outbox.ClaimRequest {
	return &outbox.ClaimRequest{Now: now, Limit: limit, MaxInFlight: limit}
}

// newDelivery is what the outbox makes for an event to a webhook.
func newDelivery(w *outbox.Webhook, ev *outbox.Event, now time.Time) *outbox.Delivery {
	d := &outbox.Delivery{
		ID: newID(), AppID: w.AppID, WebhookID: w.ID, EventID: ev.ID, Event: ev.Type,
		Status: outbox.StatusPending, CreatedAt: now, NextAttemptAt: &now,
	}
	if !w.Enabled {
		d.Status, d.NextAttemptAt = outbox.StatusSkipped, nil
	}
	return d
}

func resendable(d *outbox.Delivery) error {
	if d.Status == outbox.StatusPending {
		return fmt.Errorf("delivery is already pending: %w", outbox.ErrConflict)
	}
	return nil
}

// CreateWebhook stores an enabled webhook of appID subscribed to events
// (default job_created and job_finished).
func CreateWebhook(t *testing.T, s outbox.Store, appID string, events ...string) *outbox.Webhook {
	t.Helper()
	if len(events) == 0 {
		events = []string{"job_created", "job_finished"}
	}
	now := time.Now().UTC()
	w := &outbox.Webhook{ID: newID(), AppID: appID, Name: "hook " + appID, URL: "https://example.test/" + appID,
		Events: events, Enabled: true, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateWebhook(context.Background(), w); err != nil {
		t.Fatalf("creating webhook: %v", err)
	}
	return w
}

// NewIngest builds what Outbox.Ingest would commit for body.
func NewIngest(appID, evType string, body []byte, key string, hooks ...*outbox.Webhook) *outbox.Ingest {
	now := time.Now()
	ev := &outbox.Event{ID: newID(), AppID: appID, Type: evType, ReceivedAt: now, Body: body}
	in := &outbox.Ingest{Event: ev, IdempotencyKey: key}
	for _, w := range hooks {
		if w.Subscribes(evType) {
			in.Deliveries = append(in.Deliveries, newDelivery(w, ev, now))
		}
	}
	return in
}

// EventBody is a small event of type evType for appID; n makes it unique.
func EventBody(appID, evType string, n int) []byte {
	return []byte(fmt.Sprintf(`{"event":%q,"data":{"appId":%q,"n":%d}}`, evType, appID, n))
}

// CommitOne commits one event of evType with a delivery per subscribed hook.
func CommitOne(t *testing.T, s outbox.Store, appID, evType string, hooks ...*outbox.Webhook) *outbox.Ingest {
	t.Helper()
	in := NewIngest(appID, evType, EventBody(appID, evType, 0), "", hooks...)
	if err := s.Commit(context.Background(), []*outbox.Ingest{in}); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return in
}

// Claim claims up to limit deliveries due at now, any number per webhook.
func Claim(t *testing.T, s outbox.Store, now time.Time, limit int) []*outbox.Job {
	t.Helper()
	jobs, _, err := s.Claim(context.Background(), all(now, limit))
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return jobs
}

// Finish records one attempt and saves the job with status s.
func Finish(t *testing.T, st outbox.Store, j *outbox.Job, s outbox.Status, code int) {
	t.Helper()
	d := j.Delivery
	d.Attempts = append(d.Attempts, outbox.Attempt{SentAt: time.Now().UTC(), ResponseStatusCode: code, DurationMs: 3})
	d.Round++
	d.Status, d.NextAttemptAt = s, nil
	if err := st.Save(context.Background(), j); err != nil {
		t.Fatalf("save: %v", err)
	}
}

// near compares times at the database's precision (microseconds) and
// across time zones.
func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Millisecond && d < time.Millisecond
}

// JobIDs lists the delivery ids of jobs.
func JobIDs(jobs []*outbox.Job) []string {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.Delivery.ID
	}
	return ids
}

// Stats reads the store's queue stats.
func Stats(t *testing.T, s outbox.Store) outbox.Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st
}

// ---- cases ----

func suiteWebhookCRUD(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	a1 := CreateWebhook(t, s, "app-a")
	a2 := CreateWebhook(t, s, "app-a", "job_created")
	b1 := CreateWebhook(t, s, "app-b")

	got, err := s.GetWebhook(ctx, "app-a", a1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a1.ID || got.AppID != "app-a" || got.Name != a1.Name || got.URL != a1.URL ||
		!slices.Equal(got.Events, a1.Events) || !got.Enabled || !near(got.CreatedAt, a1.CreatedAt) {
		t.Fatalf("got %+v, want %+v", got, a1)
	}
	if _, err := s.GetWebhook(ctx, "app-b", a1.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("webhook of another app: %v, want ErrNotFound", err)
	}
	if _, err := s.GetWebhook(ctx, "app-a", newID()); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("unknown webhook: %v, want ErrNotFound", err)
	}

	list, err := s.ListWebhooks(ctx, "app-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a1.ID || list[1].ID != a2.ID {
		t.Fatalf("list of app-a: %v, want [%s %s] oldest first", list, a1.ID, a2.ID)
	}
	if list, _ := s.ListWebhooks(ctx, "app-none"); len(list) != 0 {
		t.Fatalf("list of an app without webhooks: %v", list)
	}
	if apps, err := s.ListApps(ctx); err != nil || !slices.Equal(apps, []string{"app-a", "app-b"}) {
		t.Fatalf("apps %v %v", apps, err)
	}

	until := time.Now().Add(time.Hour).UTC()
	failing := time.Now().Add(-time.Minute).UTC()
	up, err := s.UpdateWebhook(ctx, "app-a", a1.ID, func(w *outbox.Webhook) error {
		w.Name, w.Secret, w.PreviousSecret, w.PreviousSecretUntil = "renamed", "new", "old", until
		w.FailingSince, w.Enabled, w.DisabledReason = failing, false, "failing"
		w.Events = []string{"job_finished"}
		return nil
	})
	if err != nil || up.Name != "renamed" {
		t.Fatalf("update: %+v %v", up, err)
	}
	got, _ = s.GetWebhook(ctx, "app-a", a1.ID)
	if got.Name != "renamed" || got.Secret != "new" || got.PreviousSecret != "old" ||
		!near(got.PreviousSecretUntil, until) || !near(got.FailingSince, failing) || got.Enabled ||
		got.DisabledReason != "failing" || !slices.Equal(got.Events, []string{"job_finished"}) {
		t.Fatalf("after update: %+v", got)
	}
	// What a read returns is a copy.
	got.Events[0] = "mutated"
	if again, _ := s.GetWebhook(ctx, "app-a", a1.ID); again.Events[0] != "job_finished" {
		t.Fatalf("a returned webhook shares memory with the store: %v", again.Events)
	}
	// Clearing optional times stores zero.
	if _, err := s.UpdateWebhook(ctx, "app-a", a1.ID, func(w *outbox.Webhook) error {
		w.FailingSince, w.PreviousSecretUntil, w.PreviousSecret = time.Time{}, time.Time{}, ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetWebhook(ctx, "app-a", a1.ID); !got.FailingSince.IsZero() || !got.PreviousSecretUntil.IsZero() {
		t.Fatalf("cleared times came back as %v, %v", got.FailingSince, got.PreviousSecretUntil)
	}

	abort := errors.New("abort")
	if _, err := s.UpdateWebhook(ctx, "app-a", a2.ID, func(w *outbox.Webhook) error { w.Name = "no"; return abort }); !errors.Is(err, abort) {
		t.Fatalf("update whose fn fails: %v", err)
	}
	if got, _ := s.GetWebhook(ctx, "app-a", a2.ID); got.Name != a2.Name {
		t.Fatalf("an aborted update was written: %q", got.Name)
	}
	if _, err := s.UpdateWebhook(ctx, "app-b", a2.ID, func(*outbox.Webhook) error { return nil }); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("update through another app: %v", err)
	}

	if err := s.DeleteWebhook(ctx, "app-a", b1.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("delete through another app: %v", err)
	}
	if err := s.DeleteWebhook(ctx, "app-b", b1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetWebhook(ctx, "app-b", b1.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("deleted webhook: %v", err)
	}
	if err := s.DeleteWebhook(ctx, "app-b", b1.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if apps, _ := s.ListApps(ctx); !slices.Equal(apps, []string{"app-a"}) {
		t.Fatalf("apps after deleting app-b's only webhook: %v", apps)
	}
	if list, _ := s.ListWebhooks(ctx, "app-b"); len(list) != 0 {
		t.Fatalf("list after delete: %v", list)
	}
}

func suiteCommitClaimSave(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	in := CommitOne(t, s, "a", "job_created", w)
	if in.Result.ID != in.Event.ID || in.Result.Deliveries != 1 || in.Result.Duplicate {
		t.Fatalf("result %+v", in.Result)
	}
	d0 := in.Deliveries[0]

	jobs := Claim(t, s, time.Now(), 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d, want 1", len(jobs))
	}
	j := jobs[0]
	if j.Delivery.ID != d0.ID || j.Delivery.Status != outbox.StatusPending || j.Delivery.EventID != in.Event.ID ||
		j.Delivery.WebhookID != w.ID || j.Delivery.AppID != "a" || j.Delivery.Event != "job_created" {
		t.Fatalf("claimed %+v", j.Delivery)
	}
	if j.Webhook == nil || j.Webhook.ID != w.ID || j.Webhook.URL != w.URL {
		t.Fatalf("job webhook %+v", j.Webhook)
	}
	if j.Event == nil || !bytes.Equal(j.Event.Body, in.Event.Body) || j.Event.Type != "job_created" {
		t.Fatalf("job event %+v", j.Event)
	}
	if !near(j.PendingSince, d0.CreatedAt) || !near(j.Due, *d0.NextAttemptAt) {
		t.Fatalf("pending since %v due %v, want %v", j.PendingSince, j.Due, d0.CreatedAt)
	}
	if again := Claim(t, s, time.Now().Add(time.Hour), 10); len(again) != 0 {
		t.Fatalf("a claimed delivery was claimed again: %v", JobIDs(again))
	}

	// A failed attempt with retries left: pending, due later.
	retryAt := time.Now().Add(time.Hour)
	j.Delivery.Attempts = append(j.Delivery.Attempts, outbox.Attempt{SentAt: time.Now().UTC(), ResponseStatusCode: 500, ResponseBody: "oops", DurationMs: 7})
	j.Delivery.Round = 1
	j.Delivery.NextAttemptAt = &retryAt
	if err := s.Save(ctx, j); err != nil {
		t.Fatal(err)
	}
	jobs, next, err := s.Claim(ctx, all(time.Now(), 10))
	if err != nil || len(jobs) != 0 {
		t.Fatalf("claimed %v %v before the retry is due", JobIDs(jobs), err)
	}
	if next.IsZero() || next.After(retryAt) {
		t.Fatalf("next due %v, want a time no later than the retry at %v", next, retryAt)
	}
	if st := Stats(t, s); st.Pending != 1 {
		t.Fatalf("pending %d while a retry waits, want 1", st.Pending)
	}
	if ds, _, _ := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 10}); len(ds) != 1 ||
		ds[0].Status != outbox.StatusPending || ds[0].NextAttemptAt == nil || !near(*ds[0].NextAttemptAt, retryAt) {
		t.Fatalf("history while retrying: %+v", ds)
	}

	jobs = Claim(t, s, retryAt.Add(time.Second), 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d when the retry is due, want 1", len(jobs))
	}
	j = jobs[0]
	if len(j.Delivery.Attempts) != 1 || j.Delivery.Attempts[0].ResponseStatusCode != 500 ||
		j.Delivery.Attempts[0].ResponseBody != "oops" || j.Delivery.Round != 1 || !near(j.Due, retryAt) {
		t.Fatalf("retried delivery %+v due %v", j.Delivery, j.Due)
	}
	if !near(j.PendingSince, d0.CreatedAt) {
		t.Fatalf("a retry moved pending-since to %v", j.PendingSince)
	}
	Finish(t, s, j, outbox.StatusSucceeded, 204)

	if st := Stats(t, s); st.Pending != 0 || !st.OldestPending.IsZero() {
		t.Fatalf("stats after success %+v", st)
	}
	if jobs := Claim(t, s, retryAt.Add(24*time.Hour), 10); len(jobs) != 0 {
		t.Fatalf("a succeeded delivery was claimed: %v", JobIDs(jobs))
	}
	ds, cursor, err := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 10})
	if err != nil || cursor != "" || len(ds) != 1 {
		t.Fatalf("history %v %q %v", ds, cursor, err)
	}
	if d := ds[0]; d.Status != outbox.StatusSucceeded || d.NextAttemptAt != nil || len(d.Attempts) != 2 ||
		d.Attempts[1].ResponseStatusCode != 204 || d.Attempts[1].DurationMs != 3 {
		t.Fatalf("succeeded delivery %+v", d)
	}
	d, ev, err := s.Delivery(ctx, "a", w.ID, d0.ID)
	if err != nil || d.Status != outbox.StatusSucceeded || ev == nil || ev.ID != in.Event.ID {
		t.Fatalf("delivery %+v %+v %v", d, ev, err)
	}
	if _, _, err := s.Delivery(ctx, "b", w.ID, d0.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("delivery through another app: %v", err)
	}
	if _, _, err := s.Delivery(ctx, "a", w.ID, newID()); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("unknown delivery: %v", err)
	}
}

func suiteClaimAdmit(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	slow := CreateWebhook(t, s, "a", "job_created")
	fast := CreateWebhook(t, s, "a", "job_finished")
	// The slow webhook's backlog is due first and longer than a scan.
	var batch []*outbox.Ingest
	for i := range 40 {
		batch = append(batch, NewIngest("a", "job_created", EventBody("a", "job_created", i), "", slow, fast))
	}
	for i := range 2 {
		batch = append(batch, NewIngest("a", "job_finished", EventBody("a", "job_finished", i), "", slow, fast))
	}
	if err := s.Commit(ctx, batch); err != nil {
		t.Fatal(err)
	}

	// One in flight per webhook, as the dispatcher's cap would allow.
	req := &outbox.ClaimRequest{Now: time.Now(), Limit: 10, MaxInFlight: 1}
	jobs, _, err := s.Claim(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Fatalf("claimed %d, want one per webhook", len(jobs))
	}
	if req.InFlight[slow.ID] != 1 || req.InFlight[fast.ID] != 1 {
		t.Fatalf("admitted %v, want one of each webhook", req.InFlight)
	}
	seen := map[string]bool{}
	for _, j := range jobs {
		seen[j.Delivery.ID] = true
	}

	// Refused candidates were not claimed: the rest come now, once each.
	rest := Claim(t, s, time.Now(), 100)
	if len(rest) != 40 {
		t.Fatalf("claimed %d after the refusals, want the other 40", len(rest))
	}
	for _, j := range rest {
		if seen[j.Delivery.ID] {
			t.Fatalf("delivery %s claimed twice", j.Delivery.ID)
		}
		seen[j.Delivery.ID] = true
	}
	if again := Claim(t, s, time.Now(), 100); len(again) != 0 {
		t.Fatalf("claimed %d more with everything in flight", len(again))
	}

	// The limit holds, and what it leaves stays claimable.
	for _, j := range append(jobs, rest...) {
		if err := s.Release(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	some, next, err := s.Claim(ctx, all(time.Now(), 5))
	if err != nil || len(some) != 5 {
		t.Fatalf("claimed %d %v with limit 5", len(some), err)
	}
	if next.IsZero() || next.After(time.Now()) {
		t.Fatalf("next %v after a full claim, want now: more is due", next)
	}
	if more := Claim(t, s, time.Now(), 100); len(more) != 37 {
		t.Fatalf("claimed %d after the limited claim, want 37", len(more))
	}
}

func suiteRelease(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	in := CommitOne(t, s, "a", "job_created", w)
	jobs := Claim(t, s, time.Now(), 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d", len(jobs))
	}
	if err := s.Release(ctx, jobs[0]); err != nil {
		t.Fatal(err)
	}
	again := Claim(t, s, time.Now(), 10)
	if len(again) != 1 || again[0].Delivery.ID != in.Deliveries[0].ID || again[0].Event == nil {
		t.Fatalf("after release claimed %v", JobIDs(again))
	}
	if d, _, _ := s.Delivery(ctx, "a", w.ID, in.Deliveries[0].ID); d.Status != outbox.StatusPending || len(d.Attempts) != 0 {
		t.Fatalf("a release changed the delivery: %+v", d)
	}
	if st := Stats(t, s); st.Pending != 1 {
		t.Fatalf("pending %d", st.Pending)
	}
	Finish(t, s, again[0], outbox.StatusSucceeded, 200)
}

func suiteRequeue(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	other := CreateWebhook(t, s, "b")
	var ins []*outbox.Ingest
	for i := range 3 {
		ins = append(ins, NewIngest("a", "job_created", EventBody("a", "job_created", i), "", w))
	}
	if err := s.Commit(ctx, ins); err != nil {
		t.Fatal(err)
	}
	jobs := Claim(t, s, time.Now(), 10)
	if len(jobs) != 3 {
		t.Fatalf("claimed %d", len(jobs))
	}
	byID := map[string]*outbox.Job{}
	for _, j := range jobs {
		byID[j.Delivery.ID] = j
	}
	f1, f2, p := ins[0].Deliveries[0].ID, ins[1].Deliveries[0].ID, ins[2].Deliveries[0].ID
	Finish(t, s, byID[f1], outbox.StatusFailed, 500)
	Finish(t, s, byID[f2], outbox.StatusFailed, 500)
	retry := time.Now().Add(time.Hour)
	byID[p].Delivery.NextAttemptAt = &retry
	if err := s.Save(ctx, byID[p]); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Requeue(ctx, "a", w.ID, []string{p}, time.Now(), resendable); !errors.Is(err, outbox.ErrConflict) {
		t.Fatalf("requeue of a pending delivery: %v, want ErrConflict", err)
	}
	if _, err := s.Requeue(ctx, "a", w.ID, []string{newID()}, time.Now(), resendable); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("requeue of an unknown delivery: %v, want ErrNotFound", err)
	}
	if _, err := s.Requeue(ctx, "b", w.ID, []string{f1}, time.Now(), resendable); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("requeue through another app: %v, want ErrNotFound", err)
	}
	if _, err := s.Requeue(ctx, "b", other.ID, []string{f1}, time.Now(), resendable); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("requeue through another webhook: %v, want ErrNotFound", err)
	}
	if _, err := s.Requeue(ctx, "a", newID(), []string{f1}, time.Now(), resendable); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("requeue on an unknown webhook: %v, want ErrNotFound", err)
	}
	// All or nothing: f2 is not requeued when p is refused.
	if _, err := s.Requeue(ctx, "a", w.ID, []string{f2, p}, time.Now(), resendable); !errors.Is(err, outbox.ErrConflict) {
		t.Fatalf("requeue of a failed and a pending delivery: %v, want ErrConflict", err)
	}
	if d, _, _ := s.Delivery(ctx, "a", w.ID, f2); d.Status != outbox.StatusFailed {
		t.Fatalf("a refused requeue changed f2 to %s", d.Status)
	}
	if st := Stats(t, s); st.Pending != 1 {
		t.Fatalf("pending %d before requeue, want 1", st.Pending)
	}

	now := time.Now()
	out, err := s.Requeue(ctx, "a", w.ID, []string{f1}, now, resendable)
	if err != nil || len(out) != 1 {
		t.Fatalf("requeue: %v %v", out, err)
	}
	if d := out[0]; d.ID != f1 || d.Status != outbox.StatusPending || !d.Resend || d.Round != 0 ||
		d.NextAttemptAt == nil || !near(*d.NextAttemptAt, now) || len(d.Attempts) != 1 {
		t.Fatalf("requeued %+v", d)
	}
	if st := Stats(t, s); st.Pending != 2 {
		t.Fatalf("pending %d after requeue, want 2", st.Pending)
	}
	if _, err := s.Requeue(ctx, "a", w.ID, []string{f1}, time.Now(), resendable); !errors.Is(err, outbox.ErrConflict) {
		t.Fatalf("requeue of a requeued delivery: %v, want ErrConflict", err)
	}
	jobs = Claim(t, s, now.Add(time.Second), 10)
	if len(jobs) != 1 || jobs[0].Delivery.ID != f1 || !jobs[0].Delivery.Resend || jobs[0].Event == nil ||
		!near(jobs[0].PendingSince, now) {
		t.Fatalf("claimed after requeue %+v", jobs)
	}
	Finish(t, s, jobs[0], outbox.StatusSucceeded, 200)
	if d, _, _ := s.Delivery(ctx, "a", w.ID, f1); d.Status != outbox.StatusSucceeded || len(d.Attempts) != 2 {
		t.Fatalf("resent delivery %+v", d)
	}
}

func suiteFailedSince(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	before := time.Now().Add(-time.Second)
	var ins []*outbox.Ingest
	for i := range 4 {
		ins = append(ins, NewIngest("a", "job_created", EventBody("a", "job_created", i), "", w))
	}
	if err := s.Commit(ctx, ins); err != nil {
		t.Fatal(err)
	}
	jobs := Claim(t, s, time.Now(), 10)
	byID := map[string]*outbox.Job{}
	for _, j := range jobs {
		byID[j.Delivery.ID] = j
	}
	ids := make([]string, 4)
	for i, in := range ins {
		ids[i] = in.Deliveries[0].ID
	}
	Finish(t, s, byID[ids[0]], outbox.StatusFailed, 500)
	Finish(t, s, byID[ids[1]], outbox.StatusSucceeded, 200)
	Finish(t, s, byID[ids[2]], outbox.StatusFailed, 0)
	// ids[3] stays in flight.

	got, err := s.FailedSince(ctx, "a", w.ID, before)
	if err != nil || !slices.Equal(got, []string{ids[0], ids[2]}) {
		t.Fatalf("failed since before: %v %v, want %v", got, err, []string{ids[0], ids[2]})
	}
	// A delivery created exactly at since counts.
	got, _ = s.FailedSince(ctx, "a", w.ID, ins[2].Deliveries[0].CreatedAt)
	if !slices.Contains(got, ids[2]) {
		t.Fatalf("failed since the third's creation: %v, want it included", got)
	}
	if got, _ := s.FailedSince(ctx, "a", w.ID, time.Now().Add(time.Hour)); len(got) != 0 {
		t.Fatalf("failed since the future: %v", got)
	}
	if _, err := s.FailedSince(ctx, "b", w.ID, before); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("through another app: %v", err)
	}
	if _, err := s.FailedSince(ctx, "a", newID(), before); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("unknown webhook: %v", err)
	}
	if err := s.Release(ctx, byID[ids[3]]); err != nil {
		t.Fatal(err)
	}
}

func suiteDeliveriesPaging(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	other := CreateWebhook(t, s, "a")
	types := []string{"job_created", "job_finished"}
	var want []string // delivery ids of w, oldest first
	for i := range 7 {
		in := NewIngest("a", types[i%2], EventBody("a", types[i%2], i), "", w, other)
		if err := s.Commit(ctx, []*outbox.Ingest{in}); err != nil {
			t.Fatal(err)
		}
		want = append(want, in.Deliveries[0].ID)
	}
	status := map[string]outbox.Status{}
	for _, j := range Claim(t, s, time.Now(), 100) {
		if j.Delivery.WebhookID != w.ID {
			Finish(t, s, j, outbox.StatusSucceeded, 200)
			continue
		}
		st := outbox.StatusSucceeded
		if slices.Index(want, j.Delivery.ID)%2 == 1 {
			st = outbox.StatusFailed
		}
		status[j.Delivery.ID] = st
		Finish(t, s, j, st, 200)
	}
	slices.Reverse(want) // newest first

	var got []string
	var sizes []int
	cursor := ""
	for page := 0; page < 10; page++ {
		ds, next, err := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(ds))
		for _, d := range ds {
			if d.WebhookID != w.ID {
				t.Fatalf("history of %s lists a delivery of %s", w.ID, d.WebhookID)
			}
			got = append(got, d.ID)
		}
		if next == "" {
			break
		}
		if next != ds[len(ds)-1].ID {
			t.Fatalf("cursor %q, want the last id of the page %q", next, ds[len(ds)-1].ID)
		}
		cursor = next
	}
	if !slices.Equal(got, want) || !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Fatalf("pages of %v gave %v, want %v newest first", sizes, got, want)
	}

	failed, cursor, err := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Status: outbox.StatusFailed, Limit: 3})
	if err != nil || len(failed) != 3 || cursor != "" {
		// Exactly a page of matches: no cursor, since nothing follows.
		t.Fatalf("failed filter: %d %q %v", len(failed), cursor, err)
	}
	for _, d := range failed {
		if d.Status != outbox.StatusFailed || status[d.ID] != outbox.StatusFailed {
			t.Fatalf("failed filter returned %s %s", d.ID, d.Status)
		}
	}
	finished, _, _ := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Event: "job_finished", Limit: 100})
	if len(finished) != 3 {
		t.Fatalf("event filter: %d, want 3", len(finished))
	}
	for _, d := range finished {
		if d.Event != "job_finished" {
			t.Fatalf("event filter returned %s", d.Event)
		}
	}
	both, _, _ := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Event: "job_created", Status: outbox.StatusSucceeded, Limit: 100})
	if len(both) != 4 {
		t.Fatalf("event and status filter: %d, want 4", len(both))
	}
	if ds, _, _ := s.Deliveries(ctx, "b", w.ID, outbox.DeliveryFilter{Limit: 100}); len(ds) != 0 {
		t.Fatalf("history through another app: %d deliveries", len(ds))
	}
}

func suiteIdempotency(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	first := NewIngest("a", "job_created", EventBody("a", "job_created", 1), "k1", w)
	if err := s.Commit(ctx, []*outbox.Ingest{first}); err != nil {
		t.Fatal(err)
	}
	if first.Result.Duplicate || first.Result.ID != first.Event.ID || first.Result.Deliveries != 1 {
		t.Fatalf("first use of a key: %+v", first.Result)
	}
	repeat := NewIngest("a", "job_created", EventBody("a", "job_created", 2), "k1", w)
	otherApp := NewIngest("b", "job_created", EventBody("b", "job_created", 3), "k1")
	k2 := NewIngest("a", "job_created", EventBody("a", "job_created", 4), "k2", w)
	k2again := NewIngest("a", "job_created", EventBody("a", "job_created", 5), "k2", w)
	noKey := NewIngest("a", "job_created", EventBody("a", "job_created", 6), "", w)
	if err := s.Commit(ctx, []*outbox.Ingest{repeat, otherApp, k2, k2again, noKey}); err != nil {
		t.Fatal(err)
	}
	if r := repeat.Result; !r.Duplicate || r.ID != first.Event.ID || r.Deliveries != 1 {
		t.Fatalf("repeated key: %+v, want the first event %s", r, first.Event.ID)
	}
	if r := otherApp.Result; r.Duplicate || r.ID != otherApp.Event.ID || r.Deliveries != 0 {
		t.Fatalf("same key in another app: %+v", r)
	}
	if r := k2.Result; r.Duplicate || r.ID != k2.Event.ID {
		t.Fatalf("new key: %+v", r)
	}
	if r := k2again.Result; !r.Duplicate || r.ID != k2.Event.ID || r.Deliveries != 1 {
		t.Fatalf("key repeated within one batch: %+v, want %s", r, k2.Event.ID)
	}
	if r := noKey.Result; r.Duplicate || r.ID != noKey.Event.ID {
		t.Fatalf("no key: %+v", r)
	}
	if st := Stats(t, s); st.Pending != 3 {
		t.Fatalf("pending %d, want 3 (duplicates create nothing)", st.Pending)
	}
	ds, _, _ := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 100})
	if len(ds) != 3 {
		t.Fatalf("history has %d deliveries, want 3", len(ds))
	}
	for _, d := range ds {
		if d.EventID == repeat.Event.ID || d.EventID == k2again.Event.ID {
			t.Fatalf("a duplicate's delivery was stored: %+v", d)
		}
	}
}

func suiteStats(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	if st := Stats(t, s); st.Pending != 0 || !st.OldestPending.IsZero() {
		t.Fatalf("empty store stats %+v", st)
	}
	on := CreateWebhook(t, s, "a")
	off := CreateWebhook(t, s, "a")
	if _, err := s.UpdateWebhook(ctx, "a", off.ID, func(w *outbox.Webhook) error { w.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	off.Enabled = false
	var ins []*outbox.Ingest
	for i := range 3 {
		in := NewIngest("a", "job_created", EventBody("a", "job_created", i), "", on, off)
		if err := s.Commit(ctx, []*outbox.Ingest{in}); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
		time.Sleep(2 * time.Millisecond)
	}
	st := Stats(t, s)
	if st.Pending != 3 || !near(st.OldestPending, ins[0].Event.ReceivedAt) {
		t.Fatalf("stats %+v, want 3 pending since %v (skipped deliveries do not count)", st, ins[0].Event.ReceivedAt)
	}
	if ds, _, _ := s.Deliveries(ctx, "a", off.ID, outbox.DeliveryFilter{Limit: 10}); len(ds) != 3 || ds[0].Status != outbox.StatusSkipped {
		t.Fatalf("disabled webhook's history %+v, want 3 skipped", ds)
	}
	jobs := Claim(t, s, time.Now(), 10)
	if len(jobs) != 3 {
		t.Fatalf("claimed %d, want only the 3 pending", len(jobs))
	}
	for _, j := range jobs {
		if j.Delivery.WebhookID != on.ID {
			t.Fatalf("claimed a skipped delivery %+v", j.Delivery)
		}
	}
	// In flight still counts as pending.
	if st := Stats(t, s); st.Pending != 3 {
		t.Fatalf("pending %d with all in flight, want 3", st.Pending)
	}
	for _, j := range jobs {
		if j.Delivery.ID == ins[0].Deliveries[0].ID {
			Finish(t, s, j, outbox.StatusSucceeded, 200)
		}
	}
	st = Stats(t, s)
	if st.Pending != 2 || !near(st.OldestPending, ins[1].Event.ReceivedAt) {
		t.Fatalf("stats after one success %+v, want 2 since %v", st, ins[1].Event.ReceivedAt)
	}
	for _, j := range jobs {
		if j.Delivery.ID != ins[0].Deliveries[0].ID {
			Finish(t, s, j, outbox.StatusFailed, 500)
		}
	}
	if st := Stats(t, s); st.Pending != 0 || !st.OldestPending.IsZero() {
		t.Fatalf("stats after all finished %+v", st)
	}
}

func suiteEventBody(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	// Whitespace, key order, escapes and raw UTF-8 that a JSON round trip
	// would change, and a body larger than a page.
	body := []byte("{ \"event\" : \"job_created\",\n\t\"data\":{\"z\":1,\"appId\":\"a\",\"s\":\"\\u00e9 é 😀 \\\"q\\\"\",\"pad\":\"" +
		strings.Repeat("x", 70<<10) + "\"} }  \n")
	in := NewIngest("a", "job_created", body, "", w)
	if err := s.Commit(ctx, []*outbox.Ingest{in}); err != nil {
		t.Fatal(err)
	}
	jobs := Claim(t, s, time.Now(), 1)
	if len(jobs) != 1 || jobs[0].Event == nil || !bytes.Equal(jobs[0].Event.Body, body) {
		t.Fatal("the claimed event's body differs from what was committed")
	}
	ev := jobs[0].Event
	if ev.ID != in.Event.ID || ev.AppID != "a" || ev.Type != "job_created" || !near(ev.ReceivedAt, in.Event.ReceivedAt) {
		t.Fatalf("event %s %s %s %v", ev.ID, ev.AppID, ev.Type, ev.ReceivedAt)
	}
	Finish(t, s, jobs[0], outbox.StatusSucceeded, 200)
	_, ev, err := s.Delivery(ctx, "a", w.ID, in.Deliveries[0].ID)
	if err != nil || ev == nil || !bytes.Equal(ev.Body, body) {
		t.Fatalf("the stored event's body differs: %v", err)
	}
}

func suiteDeleteInFlight(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	keep := CreateWebhook(t, s, "a")
	for range 2 {
		CommitOne(t, s, "a", "job_created", w, keep)
	}
	var mine *outbox.Job
	var others []*outbox.Job
	for _, j := range Claim(t, s, time.Now(), 10) {
		if j.Delivery.WebhookID == w.ID && mine == nil {
			mine = j
		} else if j.Delivery.WebhookID == w.ID {
			if err := s.Release(ctx, j); err != nil {
				t.Fatal(err)
			}
		} else {
			others = append(others, j)
		}
	}
	if mine == nil || len(others) != 2 {
		t.Fatalf("claimed mine=%v others=%d", mine, len(others))
	}
	if err := s.DeleteWebhook(ctx, "a", w.ID); err != nil {
		t.Fatal(err)
	}
	// The attempt in flight ends: its delivery goes with the webhook.
	Finish(t, s, mine, outbox.StatusSucceeded, 200)
	if _, _, err := s.Delivery(ctx, "a", w.ID, mine.Delivery.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("delivery of a deleted webhook after its attempt: %v, want ErrNotFound", err)
	}
	if jobs := Claim(t, s, time.Now().Add(time.Hour), 10); len(jobs) != 0 {
		t.Fatalf("claimed %d deliveries of a deleted webhook", len(jobs))
	}
	for _, j := range others {
		Finish(t, s, j, outbox.StatusSucceeded, 200)
	}
	// The embedded store drops the deleted webhook's queue in the background.
	wait.Until(t, "no pending deliveries", func() bool { return Stats(t, s).Pending == 0 })
	if ds, _, _ := s.Deliveries(ctx, "a", keep.ID, outbox.DeliveryFilter{Limit: 10}); len(ds) != 2 || ds[0].Status != outbox.StatusSucceeded {
		t.Fatalf("the other webhook's history %+v", ds)
	}
}

// suiteEventOutlivesLateRetry: a retry pushed past the event's retention
// (a Retry-After, a throttling floor) still finds the event to send.
func suiteEventOutlivesLateRetry(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	// TTLs count whole seconds in Badger.
	s.SetRetention(2*time.Second, 3*time.Second)
	w := CreateWebhook(t, s, "late")
	in := CommitOne(t, s, "late", "job_created", w)
	jobs := Claim(t, s, time.Now(), 10)
	if len(jobs) != 1 || jobs[0].Event == nil {
		t.Fatalf("claimed %d jobs, want the one delivery with its event", len(jobs))
	}
	j := jobs[0]
	next := time.Now().Add(5 * time.Second)
	j.Delivery.Attempts = append(j.Delivery.Attempts, outbox.Attempt{SentAt: time.Now().UTC(), ResponseStatusCode: 503})
	j.Delivery.Round++
	j.Delivery.NextAttemptAt = &next
	if err := s.Save(ctx, j); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(next.Add(500 * time.Millisecond)))
	jobs = Claim(t, s, time.Now(), 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d jobs after the retry's wait, want 1", len(jobs))
	}
	if jobs[0].Event == nil || string(jobs[0].Event.Body) != string(in.Event.Body) {
		t.Fatalf("the retry due after the event's retention found event %v, want the body %s", jobs[0].Event, in.Event.Body)
	}
	Finish(t, s, jobs[0], outbox.StatusSucceeded, 200)
	if _, ev, err := s.Delivery(ctx, "late", w.ID, j.Delivery.ID); err != nil || ev == nil {
		t.Fatalf("after the late retry, the history's event: %v, %v; want it kept for a resend", ev, err)
	}
}

// suiteClaimOwnCap: a webhook's own cap, above or below the request's
// default, is what a claim admits for it.
func suiteClaimOwnCap(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	wide, narrow := CreateWebhook(t, s, "a"), CreateWebhook(t, s, "a")
	var batch []*outbox.Ingest
	for i := range 10 {
		batch = append(batch, NewIngest("a", "job_created", EventBody("a", "job_created", i), "", wide, narrow))
	}
	if err := s.Commit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	req := &outbox.ClaimRequest{Now: time.Now(), Limit: 100, MaxInFlight: 2,
		MaxInFlightOf: map[string]int{wide.ID: 5, narrow.ID: 1}}
	jobs, _, err := s.Claim(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, j := range jobs {
		per[j.Delivery.WebhookID]++
	}
	if per[wide.ID] != 5 || per[narrow.ID] != 1 {
		t.Fatalf("claimed %d of the webhook capped at 5 and %d of the one capped at 1", per[wide.ID], per[narrow.ID])
	}
}
