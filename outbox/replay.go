package outbox

import (
	"context"
	"errors"
	"slices"
	"time"
)

// MaxReplayEvents bounds the work of one replay: a window holding more
// retained events of the app is refused, so one request never queues an
// unbounded backfill; replay such a window in shorter parts.
const MaxReplayEvents = 10_000

// ErrWindowTooLarge is a replay window holding more than
// ReplayRequest.MaxEvents events.
var ErrWindowTooLarge = errors.New("replay window too large")

// ReplayRequest is a replay for the store to carry out.
type ReplayRequest struct {
	// Since and Until bound the events' ReceivedAt, both included.
	Since, Until time.Time
	MaxEvents    int
	// Match says whether the webhook subscribes to an event.
	Match func(*Event) bool
	// NewDelivery builds the delivery of a matched event.
	NewDelivery func(*Event) *Delivery
}

// Replay creates the missing deliveries to a webhook of the app's retained
// events received in [since, until] (until zero: now) that the webhook
// subscribes to, each with its event's id, so receivers see the original
// webhook-id. An event the webhook already has a delivery of is left
// alone, so replaying a window twice replays nothing the second time.
func (o *Outbox) Replay(ctx context.Context, appID, webhookID string, since, until time.Time) (int, error) {
	if err := CheckAppID(appID); err != nil {
		return 0, err
	}
	if since.IsZero() {
		return 0, invalid("since", "required")
	}
	if until.IsZero() {
		until = time.Now()
	}
	if until.Before(since) {
		return 0, invalid("until", "is before since")
	}
	w, err := o.store.GetWebhook(ctx, appID, webhookID)
	if err != nil {
		return 0, err
	}
	match := func(ev *Event) bool { return w.Subscribes(ev.Type) }
	if w.Filter != "" {
		// The webhook's own filter, as at ingest: replay creates only
		// what ingest would have.
		f, err := o.filterOf(w)
		if err != nil {
			return 0, invalid("filter", "%s", err)
		}
		match = func(ev *Event) bool {
			if !w.Subscribes(ev.Type) {
				return false
			}
			in, err := NewFilterInput(ev.Type, ev.Body)
			if err != nil {
				return false
			}
			ok, _ := f.Match(in)
			return ok
		}
	}
	n, err := o.store.Replay(ctx, appID, webhookID, &ReplayRequest{
		Since: since, Until: until, MaxEvents: MaxReplayEvents,
		Match: match,
		NewDelivery: func(ev *Event) *Delivery {
			now := time.Now()
			return newDelivery(w, ev, now)
		},
	})
	if errors.Is(err, ErrWindowTooLarge) {
		return 0, invalid("since", "the window holds more than %d events; replay it in shorter windows", MaxReplayEvents)
	}
	if err != nil {
		return 0, err
	}
	if n > 0 {
		o.notify()
	}
	return n, nil
}

// recoverable are the statuses Recover may resend.
var recoverable = []Status{StatusFailed, StatusSkipped}

// Recover resends every delivery of a webhook created since the given time
// whose status is one of statuses (default failed: skipped deliveries are
// those recorded while the webhook was disabled), and returns how many.
func (o *Outbox) Recover(ctx context.Context, appID, webhookID string, since time.Time, statuses ...Status) (int, error) {
	if since.IsZero() {
		return 0, invalid("since", "required")
	}
	if len(statuses) == 0 {
		statuses = []Status{StatusFailed}
	}
	for _, s := range statuses {
		if !slices.Contains(recoverable, s) {
			return 0, invalid("status", "%q cannot be recovered: use failed or skipped", s)
		}
	}
	ids, err := o.store.FinishedSince(ctx, appID, webhookID, since, statuses)
	if err != nil {
		return 0, err
	}
	var n int
	for chunk := range slices.Chunk(ids, 500) {
		ds, err := o.store.Requeue(ctx, appID, webhookID, chunk, time.Now(), resendable)
		n += len(ds)
		if err != nil {
			return n, err
		}
	}
	if n > 0 {
		o.notify()
	}
	return n, nil
}
