package pgstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
)

const pgWebhookCols = `id, app_id, name, url, events, enabled, secret, previous_secret,
	previous_secret_until, failing_since, disabled_reason, created_at, updated_at, options`

// pgWebhookColsW are pgWebhookCols of a join, where the webhook is w.
var pgWebhookColsW = "w." + strings.Join(strings.Split(strings.Join(strings.Fields(pgWebhookCols), " "), ", "), ", w.")

func scanWebhook(row pgx.Row) (*outbox.Webhook, error) {
	var w outbox.Webhook
	var prevUntil, failing *time.Time
	var options []byte
	if err := row.Scan(&w.ID, &w.AppID, &w.Name, &w.URL, &w.Events, &w.Enabled, &w.Secret, &w.PreviousSecret,
		&prevUntil, &failing, &w.DisabledReason, &w.CreatedAt, &w.UpdatedAt, &options); err != nil {
		return nil, err
	}
	w.PreviousSecretUntil, w.FailingSince = timeOrZero(prevUntil), timeOrZero(failing)
	if err := decodeOptions(options, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// optionsRecord is the options column: a webhook's per-webhook delivery
// options. Durations are nanoseconds.
type optionsRecord struct {
	Headers       map[string]string `json:"headers,omitempty"`
	Filter        string            `json:"filter,omitempty"`
	RetrySchedule []time.Duration   `json:"retrySchedule,omitempty"`
	// NoRetries tells an empty RetrySchedule (one attempt) from none.
	NoRetries   bool          `json:"noRetries,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	MaxInFlight int           `json:"maxInFlight,omitempty"`
	RateLimit   int           `json:"rateLimit,omitempty"`
}

func optionsJSON(w *outbox.Webhook) (string, error) {
	b, err := json.Marshal(optionsRecord{
		Headers: w.Headers, Filter: w.Filter, RetrySchedule: w.RetrySchedule,
		NoRetries: w.RetrySchedule != nil && len(w.RetrySchedule) == 0,
		Timeout:   w.Timeout, MaxInFlight: w.MaxInFlight, RateLimit: w.RateLimit,
	})
	return string(b), err
}

func decodeOptions(v []byte, w *outbox.Webhook) error {
	var r optionsRecord
	if len(v) > 0 {
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding the options of webhook %s: %w", w.ID, err)
		}
	}
	w.Headers, w.Filter, w.RetrySchedule = r.Headers, r.Filter, r.RetrySchedule
	if r.NoRetries {
		w.RetrySchedule = []time.Duration{}
	}
	w.Timeout, w.MaxInFlight, w.RateLimit = r.Timeout, r.MaxInFlight, r.RateLimit
	return nil
}

const pgDeliveryCols = `d.id, d.app_id, d.webhook_id, d.event_id, d.event, d.status, d.created_at,
	d.next_attempt_at, d.round, d.resend, d.pending_since, d.attempts`

// deliveryScan holds the scan targets of pgDeliveryCols.
type deliveryScan struct {
	d        outbox.Delivery
	status   string
	since    *time.Time
	attempts []byte
}

func (x *deliveryScan) targets() []any {
	d := &x.d
	return []any{&d.ID, &d.AppID, &d.WebhookID, &d.EventID, &d.Event, &x.status, &d.CreatedAt,
		&d.NextAttemptAt, &d.Round, &d.Resend, &x.since, &x.attempts}
}

func (x *deliveryScan) result() (*outbox.Delivery, time.Time, error) {
	d := x.d
	d.Status = outbox.Status(x.status)
	if len(x.attempts) > 0 {
		var err error
		if d.Attempts, err = decodeAttempts(x.attempts); err != nil {
			return nil, time.Time{}, fmt.Errorf("decoding the attempts of delivery %s: %w", d.ID, err)
		}
	}
	return &d, timeOrZero(x.since), nil
}

func scanDelivery(row pgx.Row) (*outbox.Delivery, time.Time, error) {
	var x deliveryScan
	if err := row.Scan(x.targets()...); err != nil {
		return nil, time.Time{}, err
	}
	return x.result()
}

// eventScan holds the scan targets of an event LEFT JOINed as e.
type eventScan struct {
	id, appID, typ        *string
	receivedAt, expiresAt *time.Time
	body                  []byte
	traceParent, traceSt  *string
}

const pgEventCols = `e.id, e.app_id, e.type, e.received_at, e.expires_at, e.body, e.trace_parent, e.trace_state`

func (x *eventScan) targets() []any {
	return []any{&x.id, &x.appID, &x.typ, &x.receivedAt, &x.expiresAt, &x.body, &x.traceParent, &x.traceSt}
}

// result is nil when the join found no event (expired).
func (x *eventScan) result() *outbox.Event {
	if x.id == nil {
		return nil
	}
	body := x.body
	if body == nil {
		body = []byte{}
	}
	return &outbox.Event{ID: *x.id, AppID: *x.appID, Type: *x.typ, ReceivedAt: *x.receivedAt, Body: body,
		TraceParent: *x.traceParent, TraceState: *x.traceSt}
}

// attemptRecord is an attempt as the attempts jsonb column holds it; its
// member names are the ones the first schema wrote.
type attemptRecord struct {
	SentAt             time.Time `json:"sentAt"`
	ResponseStatusCode int       `json:"responseStatusCode,omitempty"`
	ResponseBody       string    `json:"responseBody,omitempty"`
	Error              string    `json:"error,omitempty"`
	DurationMs         int64     `json:"durationMs"`
}

func attemptsJSON(a []outbox.Attempt) (string, error) {
	recs := make([]attemptRecord, len(a))
	for i, x := range a {
		recs[i] = attemptRecord(x)
	}
	b, err := json.Marshal(recs)
	return string(b), err
}

func decodeAttempts(v []byte) ([]outbox.Attempt, error) {
	var recs []attemptRecord
	if err := json.Unmarshal(v, &recs); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, nil
	}
	out := make([]outbox.Attempt, len(recs))
	for i, r := range recs {
		out[i] = outbox.Attempt(r)
	}
	return out, nil
}
