package badgerstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

type webhookRecord struct {
	ID                  string    `json:"id"`
	AppID               string    `json:"appId"`
	Name                string    `json:"name"`
	URL                 string    `json:"url"`
	Events              []string  `json:"events"`
	Enabled             bool      `json:"enabled"`
	CreatedAt           time.Time `json:"createdAt"`
	UpdatedAt           time.Time `json:"updatedAt"`
	Secret              string    `json:"secret,omitempty"`
	PreviousSecret      string    `json:"previousSecret,omitempty"`
	PreviousSecretUntil time.Time `json:"previousSecretUntil,omitzero"`
	FailingSince        time.Time `json:"failingSince,omitzero"`
	DisabledReason      string    `json:"disabledReason,omitempty"`

	Headers       map[string]string `json:"headers,omitempty"`
	Filter        string            `json:"filter,omitempty"`
	RetrySchedule []time.Duration   `json:"retrySchedule"`
	Timeout       time.Duration     `json:"timeout,omitempty"`
	MaxInFlight   int               `json:"maxInFlight,omitempty"`
	RateLimit     int               `json:"rateLimit,omitempty"`
}

func encodeWebhook(w *outbox.Webhook) ([]byte, error) {
	return json.Marshal(webhookRecord(*w))
}

func decodeWebhook(v []byte, w *outbox.Webhook) error {
	var r webhookRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return err
	}
	*w = outbox.Webhook(r)
	return nil
}

type eventMeta struct {
	ID          string    `json:"id"`
	AppID       string    `json:"appId"`
	Type        string    `json:"event"`
	ReceivedAt  time.Time `json:"receivedAt"`
	TraceParent string    `json:"traceparent,omitempty"`
	TraceState  string    `json:"tracestate,omitempty"`
}

// encodeEvent keeps the body outside the JSON so it stays byte for byte.
func encodeEvent(e *outbox.Event) ([]byte, error) {
	meta, err := json.Marshal(eventMeta{e.ID, e.AppID, e.Type, e.ReceivedAt, e.TraceParent, e.TraceState})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(meta)+len(e.Body))
	binary.BigEndian.PutUint32(out, uint32(len(meta)))
	out = append(out, meta...)
	return append(out, e.Body...), nil
}

func decodeEvent(v []byte) (*outbox.Event, error) {
	if len(v) < 4 {
		return nil, errors.New("short event record")
	}
	n := int(binary.BigEndian.Uint32(v))
	if len(v) < 4+n {
		return nil, errors.New("short event record")
	}
	var m eventMeta
	if err := json.Unmarshal(v[4:4+n], &m); err != nil {
		return nil, err
	}
	return &outbox.Event{ID: m.ID, AppID: m.AppID, Type: m.Type, ReceivedAt: m.ReceivedAt, Body: slices.Clone(v[4+n:]),
		TraceParent: m.TraceParent, TraceState: m.TraceState}, nil
}

// deliveryRecord is a delivery as stored. Its member names are the ones
// the first releases wrote, so existing directories keep reading.
type deliveryRecord struct {
	ID            string          `json:"id"`
	AppID         string          `json:"appId"`
	WebhookID     string          `json:"webhookId"`
	EventID       string          `json:"eventId"`
	Event         string          `json:"event"`
	Status        outbox.Status   `json:"status"`
	CreatedAt     time.Time       `json:"createdAt"`
	NextAttemptAt *time.Time      `json:"nextAttemptAt,omitempty"`
	Attempts      []attemptRecord `json:"attemptLog"`
	Round         int             `json:"round,omitempty"`
	Resend        bool            `json:"resend,omitempty"`
	PendingSince  time.Time       `json:"pendingSince,omitzero"`
}

type attemptRecord struct {
	SentAt             time.Time `json:"sentAt"`
	ResponseStatusCode int       `json:"responseStatusCode,omitempty"`
	ResponseBody       string    `json:"responseBody,omitempty"`
	Error              string    `json:"error,omitempty"`
	DurationMs         int64     `json:"durationMs"`
}

func encodeDelivery(d *outbox.Delivery, pendingSince time.Time) ([]byte, error) {
	r := deliveryRecord{
		ID: d.ID, AppID: d.AppID, WebhookID: d.WebhookID, EventID: d.EventID, Event: d.Event,
		Status: d.Status, CreatedAt: d.CreatedAt, NextAttemptAt: d.NextAttemptAt,
		Attempts: make([]attemptRecord, len(d.Attempts)),
		Round:    d.Round, Resend: d.Resend, PendingSince: pendingSince,
	}
	for i, a := range d.Attempts {
		r.Attempts[i] = attemptRecord(a)
	}
	return json.Marshal(r)
}

func decodeDelivery(v []byte) (*outbox.Delivery, time.Time, error) {
	var r deliveryRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, time.Time{}, err
	}
	d := &outbox.Delivery{
		ID: r.ID, AppID: r.AppID, WebhookID: r.WebhookID, EventID: r.EventID, Event: r.Event,
		Status: r.Status, CreatedAt: r.CreatedAt, NextAttemptAt: r.NextAttemptAt,
		Round: r.Round, Resend: r.Resend,
	}
	if len(r.Attempts) > 0 {
		d.Attempts = make([]outbox.Attempt, len(r.Attempts))
		for i, a := range r.Attempts {
			d.Attempts[i] = outbox.Attempt(a)
		}
	}
	return d, r.PendingSince, nil
}

// idemRecord is what an idempotency key remembers of its first event.
// Records written before BodyHash existed have none and match any body.
type idemRecord struct {
	ID         string `json:"id"`
	Deliveries int    `json:"deliveries"`
	BodyHash   []byte `json:"bodyHash,omitempty"`
}

func webhookKey(appID, id string) []byte {
	return slices.Concat(prefixWebhook, []byte(appID), []byte{0}, []byte(id))
}

func eventKey(id string) []byte { return slices.Concat(prefixEvent, []byte(id)) }

func deliveryPrefix(webhookID string) []byte {
	return slices.Concat(prefixDelivery, []byte(webhookID), []byte{'/'})
}

func deliveryKey(webhookID, id string) []byte {
	return slices.Concat(deliveryPrefix(webhookID), []byte(id))
}

func be64(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return b[:]
}

func queuePrefix(webhookID string) []byte {
	return slices.Concat(prefixQueue, []byte(webhookID), []byte{'/'})
}

func queueKey(due time.Time, webhookID, id string) []byte {
	return slices.Concat(queuePrefix(webhookID), be64(due), []byte(id))
}

// parseQueueEntry splits what follows a webhook's queue prefix.
func parseQueueEntry(rest []byte) (due time.Time, id string, ok bool) {
	if len(rest) <= 8 {
		return time.Time{}, "", false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(rest))), string(rest[8:]), true
}

func pendingKey(since time.Time, id string) []byte {
	return slices.Concat(prefixPending, be64(since), []byte(id))
}

func idemKey(appID, key string) []byte {
	return slices.Concat(prefixIdem, []byte(appID), []byte{0}, []byte(key))
}
