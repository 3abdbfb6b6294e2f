// Package outbox is the webhook sender's engine, a plain Go library: a
// durable store of webhooks, events and deliveries, a dispatcher that POSTs
// each delivery signed and retries it on a schedule, and the delivery
// history. It knows nothing of Caddy.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
)

// Options configure an Outbox. Zero fields take their defaults.
type Options struct {
	// Events is the catalog of event types; default DefaultEvents.
	Events []string
	// RetrySchedule is the wait before each retry; default
	// DefaultRetrySchedule. A delivery gets len(RetrySchedule)+1 attempts.
	RetrySchedule []time.Duration
	// Timeout bounds one attempt; default 15s.
	Timeout time.Duration
	// Retention is how long finished deliveries stay in the history;
	// default 720h.
	Retention time.Duration
	// AllowDestinations are ranges a delivery may reach although they are
	// loopback, private, link-local, unspecified or multicast.
	AllowDestinations []netip.Prefix
	// Workers is how many attempts run at once; default 64.
	Workers int
	// MaxInFlightPerWebhook caps concurrent attempts to one webhook so a
	// slow endpoint cannot take every worker; default 8.
	MaxInFlightPerWebhook int
	// RotationGrace is how long a replaced secret still signs; default 24h.
	RotationGrace time.Duration
	// DisableAfter disables a webhook whose deliveries failed without a
	// success for this long; default 120h.
	DisableAfter time.Duration
	// Logger receives attempt (debug) and give-up (warn) lines; default nop.
	Logger *zap.Logger
	// Observer receives metrics; default none.
	Observer Observer
}

func (o Options) withDefaults() Options {
	if len(o.Events) == 0 {
		o.Events = DefaultEvents
	}
	if o.RetrySchedule == nil {
		o.RetrySchedule = DefaultRetrySchedule
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 720 * time.Hour
	}
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.MaxInFlightPerWebhook <= 0 {
		o.MaxInFlightPerWebhook = 8
	}
	if o.RotationGrace <= 0 {
		o.RotationGrace = 24 * time.Hour
	}
	if o.DisableAfter <= 0 {
		o.DisableAfter = 120 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return o
}

// Observer is told what happens, for metrics.
type Observer interface {
	EventReceived(eventType string)
	AttemptFinished(eventType string, success bool, took time.Duration)
	DeliveryFailed(eventType string)
	QueueStats(Stats)
}

type nopObserver struct{}

func (nopObserver) EventReceived(string)                        {}
func (nopObserver) AttemptFinished(string, bool, time.Duration) {}
func (nopObserver) DeliveryFailed(string)                       {}
func (nopObserver) QueueStats(Stats)                            {}

// retentionSetter is implemented by stores that expire history themselves.
type retentionSetter interface {
	SetRetention(history, events time.Duration)
}

// Outbox accepts events, stores them with their deliveries and delivers them.
type Outbox struct {
	store Store
	opts  atomic.Pointer[Options]

	ingest  chan *pendingIngest
	stopped chan struct{} // closed when the committer has stopped
	wake    chan struct{}

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    sync.WaitGroup
	closed  atomic.Bool

	d *dispatcher
}

// New makes an Outbox on store. Start begins committing and delivering.
func New(store Store, opts Options) *Outbox {
	o := &Outbox{
		store:   store,
		ingest:  make(chan *pendingIngest, 4096),
		stopped: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
	o.Configure(opts)
	o.d = newDispatcher(o)
	return o
}

// Configure replaces the options; a running outbox uses them from its next
// attempt on, so a config reload needs no restart.
func (o *Outbox) Configure(opts Options) {
	opts = opts.withDefaults()
	o.opts.Store(&opts)
	if rs, ok := o.store.(retentionSetter); ok {
		// An event outlives every delivery of it: the history's retention
		// plus the longest retry round, and the store extends it for a
		// delivery that waits longer (Retry-After, throttling). (An
		// idempotency key keeps only the event's id, so it needs no body.)
		var round time.Duration
		for _, d := range opts.RetrySchedule {
			round += d + d/5 + opts.Timeout
		}
		rs.SetRetention(opts.Retention, opts.Retention+round)
	}
	if o.d != nil {
		o.d.configure(&opts)
	}
}

func (o *Outbox) options() *Options { return o.opts.Load() }

// Store returns the store the outbox runs on.
func (o *Outbox) Store() Store { return o.store }

// Start launches the committer and the dispatcher. Calling it again does nothing.
func (o *Outbox) Start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started || o.closed.Load() {
		return
	}
	o.started = true
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.done.Add(3)
	go func() { defer o.done.Done(); o.commitLoop(ctx) }()
	go func() { defer o.done.Done(); o.d.run(ctx) }()
	go func() { defer o.done.Done(); o.statsLoop(ctx) }()
}

// Close stops accepting events, lets attempts in flight finish (up to the
// attempt timeout), and closes the store. Deliveries not yet attempted stay
// in the store for the next start.
func (o *Outbox) Close() error {
	if !o.closed.CompareAndSwap(false, true) {
		return nil
	}
	o.mu.Lock()
	if o.cancel != nil {
		o.cancel()
	} else {
		close(o.stopped)
	}
	o.mu.Unlock()
	o.done.Wait()
	return o.store.Close()
}

// Events returns the event catalog.
func (o *Outbox) Events() []string { return slices.Clone(o.options().Events) }

func (o *Outbox) notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// ParseEvent checks an ingest body: valid JSON with "event" and an object
// "data" carrying "appId". Member names match exactly, and the last of a
// repeated name wins, as JSON.parse does: encoding/json's struct decoding
// folds case, which would route {"EVENT": ...} by a member that receivers
// never see.
func ParseEvent(body []byte) (eventType, appID string, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) || (len(body) > 0 && json.Valid(body)) {
			return "", "", invalid("", "body must be a JSON object")
		}
		return "", "", invalid("", "malformed JSON: %v", err)
	}
	if top == nil {
		return "", "", invalid("", "body must be a JSON object")
	}
	eventType, err = jsonString(top["event"], "event")
	if err != nil {
		return "", "", err
	}
	data := top["data"]
	if len(data) == 0 || string(data) == "null" {
		return "", "", invalid("data", "missing")
	}
	var fields map[string]json.RawMessage
	if data[0] != '{' || json.Unmarshal(data, &fields) != nil {
		return "", "", invalid("data", "must be an object")
	}
	appID, err = jsonString(fields["appId"], "data.appId")
	if err != nil {
		return "", "", err
	}
	return eventType, appID, nil
}

// jsonString reads a required, non-empty JSON string member.
func jsonString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", invalid(field, "missing")
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", invalid(field, "must be a string")
	}
	if s == "" {
		return "", invalid(field, "missing")
	}
	return s, nil
}

// Ingest stores an event posted by the service with one delivery per
// subscribed webhook, and returns once all of it is durable. A repeated
// idempotencyKey (per app, within 24h) returns the first event instead.
func (o *Outbox) Ingest(ctx context.Context, body []byte, idempotencyKey string) (IngestResult, error) {
	evType, appID, err := ParseEvent(body)
	if err != nil {
		return IngestResult{}, err
	}
	if !slices.Contains(o.options().Events, evType) {
		return IngestResult{}, &UnknownEventError{Type: evType}
	}
	hooks, err := o.store.ListWebhooks(ctx, appID)
	if err != nil {
		return IngestResult{}, fmt.Errorf("finding webhooks of app: %w", err)
	}
	now := time.Now()
	ev := &Event{ID: newID(), AppID: appID, Type: evType, ReceivedAt: now, Body: slices.Clone(body)}
	in := &Ingest{Event: ev, IdempotencyKey: idempotencyKey}
	for _, w := range hooks {
		if !w.Subscribes(evType) {
			continue
		}
		in.Deliveries = append(in.Deliveries, newDelivery(w, ev, now))
	}
	if err := o.commit(ctx, in); err != nil {
		return IngestResult{}, err
	}
	if !in.Result.Duplicate {
		o.options().Observer.EventReceived(evType)
		if len(in.Deliveries) > 0 {
			o.notify()
		}
	}
	return in.Result, nil
}

func newDelivery(w *Webhook, ev *Event, now time.Time) *Delivery {
	d := &Delivery{
		ID: newID(), AppID: w.AppID, WebhookID: w.ID, EventID: ev.ID, Event: ev.Type,
		Status: StatusPending, CreatedAt: now, NextAttemptAt: &now,
	}
	if !w.Enabled {
		d.Status = StatusSkipped
		d.NextAttemptAt = nil
	}
	return d
}

// WebhookInput is a create or edit request. On edit, nil fields stay as
// they are; an empty Secret removes the secret.
type WebhookInput struct {
	Name    *string   `json:"name,omitempty"`
	URL     *string   `json:"url,omitempty"`
	Events  *[]string `json:"events,omitempty"`
	Secret  *string   `json:"secret,omitempty"`
	Enabled *bool     `json:"enabled,omitempty"`
}

const maxSecretLen = 1024

func (o *Outbox) validate(in *WebhookInput, create bool) error {
	opts := o.options()
	if create {
		switch {
		case in.Name == nil:
			return invalid("name", "required")
		case in.URL == nil:
			return invalid("url", "required")
		case in.Events == nil:
			return invalid("events", "required")
		}
	}
	if in.Name != nil {
		n := strings.TrimSpace(*in.Name)
		if n == "" {
			return invalid("name", "must not be empty")
		}
		if len(n) > 200 {
			return invalid("name", "longer than 200 characters")
		}
		in.Name = &n
	}
	if in.URL != nil {
		if err := checkURL(*in.URL, opts.AllowDestinations); err != nil {
			return err
		}
	}
	if in.Events != nil {
		evs := *in.Events
		if len(evs) == 0 {
			return invalid("events", "at least one event type is required")
		}
		seen := make(map[string]bool, len(evs))
		clean := make([]string, 0, len(evs))
		for _, e := range evs {
			if !slices.Contains(opts.Events, e) {
				return invalid("events", "%q is not in the catalog (%s)", e, strings.Join(opts.Events, ", "))
			}
			if !seen[e] {
				seen[e] = true
				clean = append(clean, e)
			}
		}
		in.Events = &clean
	}
	if in.Secret != nil && len(*in.Secret) > maxSecretLen {
		return invalid("secret", "longer than %d bytes", maxSecretLen)
	}
	return nil
}

func checkURL(raw string, allow []netip.Prefix) error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("url", "not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid("url", "scheme must be http or https")
	}
	if u.Hostname() == "" {
		return invalid("url", "missing host")
	}
	if u.User != nil {
		return invalid("url", "must not contain credentials")
	}
	if addr, err := netip.ParseAddr(u.Hostname()); err == nil {
		if reason := blockedReason(addr, allow); reason != "" {
			return invalid("url", "destination %s is %s and not in allow_destinations", addr, reason)
		}
	}
	return nil
}

// CreateWebhook adds a webhook to an app.
func (o *Outbox) CreateWebhook(ctx context.Context, appID string, in WebhookInput) (*Webhook, error) {
	if appID == "" {
		return nil, invalid("appId", "missing")
	}
	if err := o.validate(&in, true); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	w := &Webhook{
		ID: newID(), AppID: appID, Name: *in.Name, URL: *in.URL, Events: *in.Events,
		Enabled: true, CreatedAt: now, UpdatedAt: now,
	}
	if in.Secret != nil {
		w.Secret = *in.Secret
	}
	if in.Enabled != nil {
		w.Enabled = *in.Enabled
	}
	if err := o.store.CreateWebhook(ctx, w); err != nil {
		return nil, err
	}
	return w, nil
}

// UpdateWebhook edits a webhook. A new secret keeps the old one signing for
// the rotation grace.
func (o *Outbox) UpdateWebhook(ctx context.Context, appID, id string, in WebhookInput) (*Webhook, error) {
	if err := o.validate(&in, false); err != nil {
		return nil, err
	}
	grace := o.options().RotationGrace
	return o.store.UpdateWebhook(ctx, appID, id, func(w *Webhook) error {
		now := time.Now().UTC()
		if in.Name != nil {
			w.Name = *in.Name
		}
		if in.URL != nil {
			w.URL = *in.URL
		}
		if in.Events != nil {
			w.Events = *in.Events
		}
		if in.Secret != nil && *in.Secret != w.Secret {
			if w.Secret != "" && *in.Secret != "" {
				w.PreviousSecret, w.PreviousSecretUntil = w.Secret, now.Add(grace)
			} else {
				w.PreviousSecret, w.PreviousSecretUntil = "", time.Time{}
			}
			w.Secret = *in.Secret
		}
		if in.Enabled != nil {
			w.Enabled = *in.Enabled
			if w.Enabled {
				w.DisabledReason = ""
				w.FailingSince = time.Time{}
			}
		}
		w.UpdatedAt = now
		return nil
	})
}

// DeleteWebhook removes a webhook and, in the background, its history.
func (o *Outbox) DeleteWebhook(ctx context.Context, appID, id string) error {
	return o.store.DeleteWebhook(ctx, appID, id)
}

// GetWebhook returns one webhook.
func (o *Outbox) GetWebhook(ctx context.Context, appID, id string) (*Webhook, error) {
	return o.store.GetWebhook(ctx, appID, id)
}

// ListWebhooks returns an app's webhooks, oldest first.
func (o *Outbox) ListWebhooks(ctx context.Context, appID string) ([]*Webhook, error) {
	return o.store.ListWebhooks(ctx, appID)
}

// ListApps returns the apps that have webhooks.
func (o *Outbox) ListApps(ctx context.Context) ([]string, error) {
	return o.store.ListApps(ctx)
}

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

// Recover resends every failed delivery of a webhook created since the
// given time, and returns how many.
func (o *Outbox) Recover(ctx context.Context, appID, webhookID string, since time.Time) (int, error) {
	if since.IsZero() {
		return 0, invalid("since", "required")
	}
	ids, err := o.store.FailedSince(ctx, appID, webhookID, since)
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

func (o *Outbox) statsLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if s, err := o.store.Stats(ctx); err == nil {
			o.options().Observer.QueueStats(s)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
