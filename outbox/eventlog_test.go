package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

func TestEventLogFilterAndReplay(t *testing.T) {
	o := openTest(t, outbox.Options{RetrySchedule: []time.Duration{}})
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	var ids []string
	for _, b := range []string{
		`{"event":"job_finished","data":{"appId":"app1","status":"failed","n":1}}`,
		`{"event":"job_finished","data":{"appId":"app1","status":"ok","n":2}}`,
		`{"event":"job_created","data":{"appId":"app1","n":3}}`,
	} {
		res, err := o.Ingest(ctx, []byte(b), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	for _, c := range []struct {
		filter string
		want   []string
	}{
		{`data.status == "failed"`, []string{ids[0]}},
		{`event == "job_finished" && data.n > 1`, []string{ids[1]}},
		{`has(data.status)`, []string{ids[1], ids[0]}},
		{`data.status.startsWith("o")`, []string{ids[1]}}, // a missing field fails, so no match for ids[2]
		{`true`, []string{ids[2], ids[1], ids[0]}},
	} {
		page, err := o.ListEvents(ctx, "app1", outbox.EventQuery{Filter: c.filter})
		if err != nil {
			t.Fatalf("filter %s: %v", c.filter, err)
		}
		var got []string
		for _, e := range page.Events {
			got = append(got, e.Event.ID)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("filter %s: %v, want %v", c.filter, got, c.want)
		}
	}
	for _, c := range []struct {
		q     outbox.EventQuery
		field string
	}{
		{outbox.EventQuery{Filter: `data.`}, "filter"},
		{outbox.EventQuery{Filter: `data.n + 1`}, "filter"},
		{outbox.EventQuery{Filter: strings.Repeat("x", outbox.MaxFilterLen+1)}, "filter"},
		{outbox.EventQuery{Type: "nope"}, "event"},
		{outbox.EventQuery{Limit: 101}, "limit"},
		{outbox.EventQuery{Since: time.Now(), Until: time.Now().Add(-time.Hour)}, "until"},
	} {
		var ve *outbox.ValidationError
		if _, err := o.ListEvents(ctx, "app1", c.q); !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("query %+v: %v, want a validation error of %s", c.q, err, c.field)
		}
	}

	w, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("late"), URL: ptr("http://127.0.0.1:1/"), Events: &[]string{"job_finished"}})
	if err != nil {
		t.Fatal(err)
	}
	var ve *outbox.ValidationError
	if _, err := o.Replay(ctx, "app1", w.ID, time.Time{}, time.Time{}); !errors.As(err, &ve) || ve.Field != "since" {
		t.Errorf("replay without since: %v", err)
	}
	if _, err := o.Replay(ctx, "app1", w.ID, time.Now(), start); !errors.As(err, &ve) || ve.Field != "until" {
		t.Errorf("replay with until before since: %v", err)
	}
	if _, err := o.Replay(ctx, "app1", "nope", start, time.Time{}); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("replay to an unknown webhook: %v", err)
	}
	if n, err := o.Replay(ctx, "app1", w.ID, start, time.Time{}); err != nil || n != 2 {
		t.Fatalf("replay: %d, %v; want the 2 job_finished events", n, err)
	}
	if n, err := o.Replay(ctx, "app1", w.ID, start, time.Time{}); err != nil || n != 0 {
		t.Fatalf("second replay: %d, %v; want 0", n, err)
	}
	if _, err := o.Recover(ctx, "app1", w.ID, start, outbox.StatusPending); !errors.As(err, &ve) || ve.Field != "status" {
		t.Errorf("recover of pending deliveries: %v, want a validation error of status", err)
	}
}
