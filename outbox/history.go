package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// MaxPageSize bounds a history page.
const MaxPageSize = 100

// Deliveries returns a page of a webhook's history, newest first, and the
// cursor of the next page ("" on the last).
func (o *Outbox) Deliveries(ctx context.Context, appID, webhookID string, f DeliveryFilter) ([]*Delivery, string, error) {
	if _, err := o.store.GetWebhook(ctx, appID, webhookID); err != nil {
		return nil, "", err
	}
	switch f.Status {
	case "", StatusPending, StatusSucceeded, StatusFailed, StatusSkipped:
	default:
		return nil, "", invalid("status", "must be one of pending, succeeded, failed, skipped")
	}
	if f.Limit <= 0 {
		f.Limit = 20
	}
	if f.Limit > MaxPageSize {
		return nil, "", invalid("limit", "must be at most %d", MaxPageSize)
	}
	return o.store.Deliveries(ctx, appID, webhookID, f)
}

// Delivery returns one delivery and its event.
func (o *Outbox) Delivery(ctx context.Context, appID, webhookID, id string) (*Delivery, *Event, error) {
	return o.store.Delivery(ctx, appID, webhookID, id)
}

func resendable(d *Delivery) error {
	if d.Status == StatusPending {
		return fmt.Errorf("delivery is already pending: %w", ErrConflict)
	}
	return nil
}

// Resend queues a finished delivery for one more attempt now.
func (o *Outbox) Resend(ctx context.Context, appID, webhookID, id string) (*Delivery, error) {
	ds, err := o.store.Requeue(ctx, appID, webhookID, []string{id}, time.Now(), resendable)
	if err != nil {
		return nil, err
	}
	o.notify()
	return ds[0], nil
}

// Test sends a sample event of the webhook's first type to it alone, now,
// recorded in its history like any delivery.
func (o *Outbox) Test(ctx context.Context, appID, webhookID string) (*Delivery, error) {
	w, err := o.store.GetWebhook(ctx, appID, webhookID)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	body, err := json.Marshal(map[string]any{
		"event": w.Events[0],
		"data":  map[string]any{"id": newID(), "appId": appID, "test": true, "createdAt": now.UnixMilli()},
	})
	if err != nil {
		return nil, err
	}
	ev := &Event{ID: newID(), AppID: appID, Type: w.Events[0], ReceivedAt: now, Body: body}
	d := newDelivery(w, ev, now)
	// An explicit test is one attempt, and goes out even to a disabled webhook.
	d.Status, d.NextAttemptAt, d.Resend = StatusPending, &now, true
	if err := o.commit(ctx, &Ingest{Event: ev, Deliveries: []*Delivery{d}}); err != nil {
		return nil, err
	}
	o.notify()
	return d, nil
}
