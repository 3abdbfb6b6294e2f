package caddymodule

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// The API's replay bound: a window of 10,001 events answers 400 naming
// since and creates nothing; the same events but the first, 10,000, are
// replayed.
func TestReplayWindowBound(t *testing.T) {
	ob, endpoint := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	ctx := context.Background()
	body := []byte(`{"event":"job_created","data":{"appId":"app1"}}`)

	start := time.Now().Add(-time.Second)
	first, err := ob.Ingest(ctx, body, "")
	if err != nil {
		t.Fatal(err)
	}
	ev, _, err := ob.GetEvent(ctx, "app1", first.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The other events come strictly later, so a window can leave out
	// the first alone.
	wait.Until(t, "the clock to pass the first event", func() bool { return time.Now().After(ev.ReceivedAt) })
	const rest = 10_000
	ingestMany(t, ob, rest, func(int) []byte { return body })

	// Disabled, so the replayed deliveries are recorded, not sent.
	res := call(t, h, "POST", "/webhooks/apps/app1/webhooks",
		`{"name":"late","url":"`+endpoint+`/h","events":["job_created"],"enabled":false}`)
	if res.status != 201 {
		t.Fatalf("create answered %d %s", res.status, res.body)
	}
	var hook struct{ ID string }
	res.decode(t, &hook)
	replay := "/webhooks/apps/app1/webhooks/" + hook.ID + "/replay"

	res = call(t, h, "POST", replay, fmt.Sprintf(`{"since":%q}`, start.Format(time.RFC3339Nano)))
	if want := `{"error":"since: the window holds more than 10000 events; replay it in shorter windows"}`; res.status != 400 || strings.TrimSpace(res.body) != want {
		t.Fatalf("replay of %d events answered %d %s, want 400 %s", rest+1, res.status, res.body, want)
	}
	if ds, _, err := ob.Deliveries(ctx, "app1", hook.ID, outbox.DeliveryFilter{Limit: 1}); err != nil || len(ds) != 0 {
		t.Fatalf("a refused replay created deliveries: %d (%v)", len(ds), err)
	}

	since := ev.ReceivedAt.Add(time.Nanosecond).Format(time.RFC3339Nano)
	res = call(t, h, "POST", replay, fmt.Sprintf(`{"since":%q}`, since))
	if want := fmt.Sprintf(`{"replayed":%d}`, rest); res.status != 202 || strings.TrimSpace(res.body) != want {
		t.Fatalf("replay of %d events answered %d %s, want 202 %s", rest, res.status, res.body, want)
	}
}
