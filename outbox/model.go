package outbox

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// DefaultEvents is the event catalog when none is configured.
var DefaultEvents = []string{"app_build_created", "app_deployment_created", "job_created", "job_finished"}

// DefaultTimeout bounds one attempt when no timeout is configured.
const DefaultTimeout = 15 * time.Second

// DefaultRetrySchedule is the wait before each retry when none is configured.
var DefaultRetrySchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
	10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour,
}

// Webhook is a subscription of one app: events of the listed types are
// POSTed to URL, signed with Secret when it is set.
type Webhook struct {
	ID        string
	AppID     string
	Name      string
	URL       string
	Events    []string
	Enabled   bool
	CreatedAt time.Time
	UpdatedAt time.Time

	// Secret signs deliveries. It is write-only: no API view shows it.
	Secret string
	// PreviousSecret stays valid until PreviousSecretUntil after a rotation,
	// so receivers can roll their configuration without dropping requests.
	PreviousSecret      string
	PreviousSecretUntil time.Time
	// FailingSince is when the current run of failed deliveries started;
	// zero after a success.
	FailingSince time.Time
	// DisabledReason says why the sender disabled the webhook ("gone",
	// "failing"); empty when a user did or it is enabled.
	DisabledReason string

	// Headers are extra request headers sent on every attempt. Values of
	// sensitive names (see SensitiveHeader) are write-only like Secret.
	Headers map[string]string
	// Filter is a CEL expression over event and data; an event for which
	// it is not true creates no delivery for this webhook. Empty: every
	// event of the subscribed types.
	Filter string
	// RetrySchedule, Timeout, MaxInFlight and RateLimit override the
	// app's options for this webhook; nil or zero means the app's.
	// A non-nil empty RetrySchedule means a single attempt.
	RetrySchedule []time.Duration
	Timeout       time.Duration
	MaxInFlight   int
	// RateLimit is at most this many attempts a second, spaced evenly;
	// zero is no limit.
	RateLimit int
}

// Subscribes reports whether the webhook wants events of type ev.
func (w *Webhook) Subscribes(ev string) bool {
	for _, e := range w.Events {
		if e == ev {
			return true
		}
	}
	return false
}

// signingKeys returns the keys to sign with: the current secret, then the
// previous one while its grace lasts.
func (w *Webhook) signingKeys(now time.Time) [][]byte {
	if w.Secret == "" {
		return nil
	}
	keys := [][]byte{[]byte(w.Secret)}
	if w.PreviousSecret != "" && now.Before(w.PreviousSecretUntil) {
		keys = append(keys, []byte(w.PreviousSecret))
	}
	return keys
}

// Clone returns a copy that shares nothing mutable with w.
func (w *Webhook) Clone() *Webhook {
	c := *w
	c.Events = slices.Clone(w.Events)
	c.Headers = maps.Clone(w.Headers)
	c.RetrySchedule = slices.Clone(w.RetrySchedule)
	return &c
}

// Event is what a service posted, kept byte for byte.
type Event struct {
	ID         string
	AppID      string
	Type       string
	ReceivedAt time.Time
	Body       []byte
	// TraceParent and TraceState are the W3C trace context of the ingest
	// request, empty when it had none; every attempt continues that trace.
	TraceParent string
	TraceState  string
}

// Status is where a delivery stands.
type Status string

// Delivery statuses.
const (
	StatusPending   Status = "pending"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	// StatusSkipped is a delivery recorded while its webhook was disabled;
	// it can be resent once the webhook is enabled again.
	StatusSkipped Status = "skipped"
)

// Delivery is one event to one webhook.
type Delivery struct {
	ID            string
	AppID         string
	WebhookID     string
	EventID       string
	Event         string
	Status        Status
	CreatedAt     time.Time
	NextAttemptAt *time.Time
	Attempts      []Attempt
	// RequestBody is the event's body as sent, filled by history reads;
	// nil once the event is no longer retained. Stores do not keep it
	// with the delivery.
	RequestBody []byte
	// Round counts attempts in the current retry round; a resend starts a
	// round of one attempt.
	Round  int
	Resend bool
}

// Attempt is one HTTP request of a delivery.
type Attempt struct {
	SentAt             time.Time
	ResponseStatusCode int
	ResponseBody       string
	Error              string
	DurationMs         int64
}

// LastAttempt returns the latest attempt, or nil before the first.
func (d *Delivery) LastAttempt() *Attempt {
	if len(d.Attempts) == 0 {
		return nil
	}
	return &d.Attempts[len(d.Attempts)-1]
}

// ValidationError is bad input; Field names what is wrong.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Message)
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// UnknownEventError is an event type outside the catalog.
type UnknownEventError struct{ Type string }

func (e *UnknownEventError) Error() string {
	return fmt.Sprintf("event type %q is not in the catalog", e.Type)
}

// KeyReusedError is an Idempotency-Key used again with another body.
type KeyReusedError struct{ Key string }

func (e *KeyReusedError) Error() string {
	return fmt.Sprintf("Idempotency-Key %q was already used with another body", e.Key)
}

var (
	// ErrNotFound is a webhook or delivery that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is a request that does not fit the current state, such as
	// resending a delivery that is still pending.
	ErrConflict = errors.New("conflict")
	// ErrClosed is an operation on a closed outbox.
	ErrClosed = errors.New("outbox closed")
	// ErrUnavailable is a store that cannot commit (disk full, I/O error);
	// the caller should retry later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrLeaseLost is a Save refused because the claim ran out while the
	// attempt ran and another sidecar took the delivery over: its attempt
	// stands, this one's result is dropped.
	ErrLeaseLost = errors.New("the claim ran out and another sidecar took the delivery over")
)
