package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// OperationalApp is the app that operational events and their deliveries
// belong to. It is not a valid app id, so no service can post to it and no
// app route reaches it.
const OperationalApp = "@operational"

// OperationalWebhookID is the id of the operational webhook, the same on
// every sidecar of a fleet.
const OperationalWebhookID = "operational"

// Operational event types.
const (
	EventWebhookDisabled   = "webhook.disabled"
	EventWebhookFailing    = "webhook.failing"
	EventWebhookRecovered  = "webhook.recovered"
	EventDeliveryExhausted = "delivery.exhausted"
)

// OperationalEvents are the types the sender reports on itself.
var OperationalEvents = []string{EventWebhookDisabled, EventWebhookFailing, EventWebhookRecovered, EventDeliveryExhausted}

// DefaultFailingAfter is how long a webhook's deliveries fail with no
// success before webhook.failing is reported.
const DefaultFailingAfter = time.Hour

// failuresScan bounds the deliveries read to count a failing webhook's
// failed attempts for its report.
const failuresScan = 1000

// OperationalWebhook is where the sender reports on itself: webhooks it
// disabled, webhooks failing and recovering, deliveries that gave up. The
// reports are events of OperationalApp delivered through the outbox like
// any other (stored, signed with Secret, retried, destination-checked),
// and never about the operational webhook itself.
type OperationalWebhook struct {
	URL    string
	Secret string
	// FailingAfter is how long deliveries fail before webhook.failing;
	// default DefaultFailingAfter.
	FailingAfter time.Duration
}

// OperationalObserver is an Observer that also counts operational events.
type OperationalObserver interface {
	OperationalEvent(eventType string)
}

// operationalState remembers which failing periods this process has seen
// reported, so a failing webhook costs the store one check per period
// rather than one per failed attempt.
type operationalState struct {
	mu       sync.Mutex
	reported map[string]time.Time // webhook id -> failing since
}

func isOperational(w *Webhook) bool { return w.AppID == OperationalApp }

// syncOperational makes the stored operational webhook match the
// configuration: created or updated when one is configured, disabled when
// none is (its pending reports are then skipped, not sent elsewhere).
func (o *Outbox) syncOperational(op *OperationalWebhook) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := o.options().Logger
	now := time.Now().UTC()
	apply := func(w *Webhook) error {
		enabled, url, secret := op != nil, w.URL, w.Secret
		if op != nil {
			url, secret = op.URL, op.Secret
		}
		if w.Enabled == enabled && w.URL == url && w.Secret == secret && slices.Equal(w.Events, OperationalEvents) {
			return errUnchanged
		}
		w.Enabled, w.URL, w.Secret, w.Events, w.UpdatedAt = enabled, url, secret, slices.Clone(OperationalEvents), now
		w.PreviousSecret, w.PreviousSecretUntil, w.DisabledReason, w.FailingSince = "", time.Time{}, "", time.Time{}
		return nil
	}
	for range 2 {
		_, err := o.store.UpdateWebhook(ctx, OperationalApp, OperationalWebhookID, apply)
		if err == nil || errors.Is(err, errUnchanged) {
			return
		}
		if !errors.Is(err, ErrNotFound) {
			log.Error("configuring the operational webhook", zap.Error(err))
			return
		}
		if op == nil {
			return
		}
		err = o.store.CreateWebhook(ctx, &Webhook{
			ID: OperationalWebhookID, AppID: OperationalApp, Name: "operational webhook",
			URL: op.URL, Secret: op.Secret, Events: slices.Clone(OperationalEvents), Enabled: true,
			CreatedAt: now, UpdatedAt: now,
		})
		if err == nil {
			return
		}
		// Another sidecar may have created it meanwhile: update that one.
	}
	log.Error("configuring the operational webhook: could not create or update it")
}

// OperationalDeliveries returns a page of the operational webhook's history.
func (o *Outbox) OperationalDeliveries(ctx context.Context, f DeliveryFilter) ([]*Delivery, string, error) {
	ds, next, err := o.Deliveries(ctx, OperationalApp, OperationalWebhookID, f)
	if errors.Is(err, ErrNotFound) {
		// Never configured: an empty history.
		return nil, "", nil
	}
	return ds, next, err
}

// OperationalDelivery returns one delivery of the operational webhook.
func (o *Outbox) OperationalDelivery(ctx context.Context, id string) (*Delivery, *Event, error) {
	return o.store.Delivery(ctx, OperationalApp, OperationalWebhookID, id)
}

// report stores an operational event about webhook w with one delivery to
// the operational webhook. Its data never carries a secret or a header.
func (o *Outbox) report(eventType string, w *Webhook, extra map[string]any) {
	opts := o.options()
	if opts.Operational == nil || isOperational(w) {
		return
	}
	log := opts.Logger.With(zap.String("webhook_id", w.ID), zap.String("report", eventType))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	op, err := o.store.GetWebhook(ctx, OperationalApp, OperationalWebhookID)
	if err != nil {
		log.Error("reading the operational webhook", zap.Error(err))
		return
	}
	now := time.Now()
	data := map[string]any{
		"appId": w.AppID, "webhookId": w.ID, "webhookName": w.Name, "url": w.URL, "at": now.UTC(),
	}
	maps.Copy(data, extra)
	body, err := json.Marshal(struct {
		Event string         `json:"event"`
		Data  map[string]any `json:"data"`
	}{eventType, data})
	if err != nil {
		log.Error("encoding an operational event", zap.Error(err))
		return
	}
	ev := &Event{ID: newID(), AppID: OperationalApp, Type: eventType, ReceivedAt: now, Body: body}
	in := &Ingest{Event: ev, Deliveries: []*Delivery{newDelivery(op, ev, now)}}
	if err := o.commit(ctx, in); err != nil {
		log.Error("storing an operational event", zap.Error(err))
		return
	}
	if ob, ok := opts.Observer.(OperationalObserver); ok {
		ob.OperationalEvent(eventType)
	}
	log.Info("operational event", zap.String("event_id", ev.ID))
	o.notify()
}

func (o *Outbox) reportDisabled(w *Webhook, reason string) {
	o.report(EventWebhookDisabled, w, map[string]any{"reason": reason})
}

// reportFailing reports a webhook failing for FailingAfter, once per
// failing period in the whole fleet: the store's mark decides who reports.
func (o *Outbox) reportFailing(w *Webhook, now time.Time) {
	op := o.options().Operational
	if op == nil || isOperational(w) || w.FailingSince.IsZero() {
		return
	}
	after := op.FailingAfter
	if after <= 0 {
		after = DefaultFailingAfter
	}
	if now.Sub(w.FailingSince) < after {
		return
	}
	o.ops.mu.Lock()
	seen := o.ops.reported[w.ID].Equal(w.FailingSince)
	o.ops.mu.Unlock()
	if seen {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := o.store.MarkFailingReported(ctx, w.ID, w.FailingSince)
	if err != nil {
		o.options().Logger.Error("marking a failing webhook reported", zap.String("webhook_id", w.ID), zap.Error(err))
		return
	}
	o.ops.mu.Lock()
	if o.ops.reported == nil {
		o.ops.reported = map[string]time.Time{}
	}
	o.ops.reported[w.ID] = w.FailingSince
	o.ops.mu.Unlock()
	if first {
		o.report(EventWebhookFailing, w, map[string]any{
			"since": w.FailingSince.UTC(), "failures": o.countFailures(ctx, w),
		})
	}
}

// countFailures counts the failed attempts of a webhook since its failing
// period began, over its newest failuresScan deliveries.
func (o *Outbox) countFailures(ctx context.Context, w *Webhook) int {
	n, scanned := 0, 0
	f := DeliveryFilter{Limit: MaxPageSize}
	for scanned < failuresScan {
		ds, next, err := o.store.Deliveries(ctx, w.AppID, w.ID, f)
		if err != nil {
			break
		}
		for _, d := range ds {
			for _, a := range d.Attempts {
				ok := a.Error == "" && a.ResponseStatusCode >= 200 && a.ResponseStatusCode < 300
				if !ok && !a.SentAt.Before(w.FailingSince.Truncate(time.Second)) {
					n++
				}
			}
		}
		scanned += len(ds)
		if next == "" {
			break
		}
		f.Cursor = next
	}
	return n
}

// reportRecovered reports a webhook reported failing that succeeded again.
func (o *Outbox) reportRecovered(w *Webhook) {
	if o.options().Operational == nil || isOperational(w) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since, err := o.store.ClearFailingReported(ctx, w.ID)
	if err != nil {
		o.options().Logger.Error("clearing a failing report", zap.String("webhook_id", w.ID), zap.Error(err))
		return
	}
	o.ops.mu.Lock()
	delete(o.ops.reported, w.ID)
	o.ops.mu.Unlock()
	if !since.IsZero() {
		o.report(EventWebhookRecovered, w, map[string]any{"since": since.UTC()})
	}
}

// reportExhausted reports a delivery that gave up after its last attempt.
func (o *Outbox) reportExhausted(j *Job) {
	dl := j.Delivery
	extra := map[string]any{
		"deliveryId": dl.ID, "eventId": dl.EventID, "event": dl.Event, "attempts": len(dl.Attempts),
	}
	if last := dl.LastAttempt(); last != nil {
		if last.ResponseStatusCode != 0 {
			extra["responseStatusCode"] = last.ResponseStatusCode
		} else {
			extra["error"] = last.Error
		}
	}
	o.report(EventDeliveryExhausted, j.Webhook, extra)
}
