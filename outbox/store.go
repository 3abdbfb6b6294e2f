package outbox

import (
	"bytes"
	"context"
	"io"
	"time"
)

// Store is what the outbox needs from durable storage. Package badgerstore
// implements it on an embedded Badger directory, package pgstore on a
// PostgreSQL database shared by a fleet of sidecars; package storetest
// checks that an implementation behaves as the outbox relies on.
type Store interface {
	io.Closer

	// Commit writes a batch of ingested events with their deliveries
	// durably: when it returns nil, a crash loses none of them. Each ingest
	// is atomic. Commit is called concurrently (a few batches at a time)
	// and must keep idempotency keys exact across concurrent calls.
	// An Ingest whose idempotency key was seen before is not written; its
	// Result is filled with the first event's id and delivery count, and
	// KeyReused when the key was stored with another BodyHash (a key
	// stored without one matches any body).
	Commit(ctx context.Context, batch []*Ingest) error

	// Webhooks, by app.
	CreateWebhook(ctx context.Context, w *Webhook) error
	// UpdateWebhook reads the webhook, applies fn and writes it back
	// atomically. fn may return an error to abort.
	UpdateWebhook(ctx context.Context, appID, id string, fn func(*Webhook) error) (*Webhook, error)
	DeleteWebhook(ctx context.Context, appID, id string) error
	GetWebhook(ctx context.Context, appID, id string) (*Webhook, error)
	ListWebhooks(ctx context.Context, appID string) ([]*Webhook, error)
	// ListApps returns the ids of apps that have webhooks.
	ListApps(ctx context.Context) ([]string, error)

	// Claim returns up to req.Limit deliveries due at req.Now that no one
	// is working on, and marks them claimed until Save or Release. It takes
	// a delivery only if req.Admit agrees. It also returns when the next
	// unclaimed delivery falls due (zero if none).
	Claim(ctx context.Context, req *ClaimRequest) ([]*Job, time.Time, error)
	// Save writes a claimed delivery back after an attempt and ends the
	// claim. A pending delivery is queued again for NextAttemptAt.
	Save(ctx context.Context, j *Job) error
	// Release ends a claim without an attempt.
	Release(ctx context.Context, j *Job) error

	// Deliveries returns a page of a webhook's history, newest first,
	// each delivery with its RequestBody while the event is retained.
	Deliveries(ctx context.Context, appID, webhookID string, f DeliveryFilter) ([]*Delivery, string, error)
	// Delivery returns one delivery with its event.
	Delivery(ctx context.Context, appID, webhookID, id string) (*Delivery, *Event, error)
	// Requeue makes finished deliveries pending again, due at now, after
	// check approves each; it returns the deliveries requeued.
	Requeue(ctx context.Context, appID, webhookID string, ids []string, now time.Time, check func(*Delivery) error) ([]*Delivery, error)
	// FailedSince returns the ids of a webhook's failed deliveries created
	// at or after since.
	FailedSince(ctx context.Context, appID, webhookID string, since time.Time) ([]string, error)

	// Stats counts pending deliveries and says when the oldest was created.
	Stats(ctx context.Context) (Stats, error)

	// SetRetention says how long finished deliveries (history) and events
	// are kept; the store expires them itself.
	SetRetention(history, events time.Duration)

	// PortalKey returns the key that signs portal tokens. The first call
	// on a store without one stores fresh; every later call, from any
	// process sharing the store, returns that first key, so every sidecar
	// of a fleet accepts the tokens of the others.
	PortalKey(ctx context.Context, fresh []byte) ([]byte, error)
	// PortalGeneration returns the generation of an app's portal tokens:
	// 0 until they are first revoked. Tokens carry the generation they
	// were minted in and are valid only while it is current.
	PortalGeneration(ctx context.Context, appID string) (uint64, error)
	// RevokePortalTokens increments an app's generation durably, which
	// invalidates every token minted before, and returns the new one.
	RevokePortalTokens(ctx context.Context, appID string) (uint64, error)
	// Events returns a page of an app's retained events, newest first
	// (see EventFilter), each with its count of deliveries.
	Events(ctx context.Context, appID string, f EventFilter) (EventPage, error)
	// Event returns one retained event of the app and its deliveries
	// (without their attempts), oldest first.
	Event(ctx context.Context, appID, id string) (*Event, []*Delivery, error)
	// Replay creates, atomically per event, a pending delivery to the
	// webhook for every retained event of the app received in the window
	// that req.Match accepts and that has no delivery to the webhook yet.
	// Concurrent replays of one webhook (from any sidecar) never create
	// two deliveries of one event. It refuses a window holding more than
	// req.MaxEvents events with ErrWindowTooLarge, creating nothing.
	Replay(ctx context.Context, appID, webhookID string, req *ReplayRequest) (int, error)
	// FinishedSince returns the ids of a webhook's deliveries in one of
	// the statuses, created at or after since, oldest first.
	FinishedSince(ctx context.Context, appID, webhookID string, since time.Time, statuses []Status) ([]string, error)
	// MarkFailingReported records that the webhook's failing period that
	// began at since has been reported, and says whether this call did it
	// (false when any sidecar did before).
	MarkFailingReported(ctx context.Context, webhookID string, since time.Time) (bool, error)
	// ClearFailingReported forgets the webhook's reported failing period
	// and returns when it began; zero when none was reported. Of several
	// concurrent calls one gets the time.
	ClearFailingReported(ctx context.Context, webhookID string) (time.Time, error)
}

// Notifier is a Store shared with other processes that hears when one of
// them queues work: the dispatcher wakes on its channel instead of polling.
type Notifier interface {
	Notifications() <-chan struct{}
}

// Leaser is a Store whose claim holds a delivery only for a lease, after
// which another process may take it. The dispatcher claims ahead of a
// webhook's free slots only while a delivery waiting for one would still
// be sent and saved within the lease.
type Leaser interface {
	Lease() time.Duration
}

// WebhookCache is a Store that can tell a webhook's current state from
// memory: Badger's webhooks live there, PostgreSQL's cache is kept current
// by notifications. ok is false when it cannot say, and GetWebhook asks.
type WebhookCache interface {
	CachedWebhook(appID, id string) (w *Webhook, ok bool)
}

// Ingest is one event to commit with its deliveries.
type Ingest struct {
	Event          *Event
	Deliveries     []*Delivery
	IdempotencyKey string
	// BodyHash is the SHA-256 of the event's body, set with an
	// IdempotencyKey and stored with it, so a key reused for another body
	// is told from a retry of the same one.
	BodyHash []byte
	// Result is filled by Commit.
	Result IngestResult
}

// IdempotencyWindow is how long an idempotency key is remembered.
const IdempotencyWindow = 24 * time.Hour

// IngestResult is what ingest answers.
type IngestResult struct {
	ID         string
	Deliveries int
	// Duplicate is set when an idempotency key matched an earlier event.
	Duplicate bool
	// KeyReused is set with Duplicate when that earlier event's body was
	// another one.
	KeyReused bool
}

// SameBody reports whether a stored idempotency key's body hash matches
// this ingest's: a key stored before hashes were kept matches any body.
func (in *Ingest) SameBody(stored []byte) bool {
	return len(stored) == 0 || bytes.Equal(stored, in.BodyHash)
}

// ClaimRequest is what the dispatcher can take in one claim. The store
// decides admission from it alone, so no caller's lock is held across the
// store's work.
type ClaimRequest struct {
	Now   time.Time
	Limit int
	// InFlight counts the attempts each webhook has running; Admit adds
	// the ones it admits.
	InFlight map[string]int
	// MaxInFlight caps concurrent attempts per webhook, and
	// MaxInFlightOf the webhooks with a cap of their own.
	MaxInFlight   int
	MaxInFlightOf map[string]int
	// NotBefore holds back rate-limited webhooks until their next slot;
	// once it has come, one delivery of the webhook is admitted, since a
	// slot is one attempt.
	NotBefore map[string]time.Time
}

// Admit reports whether a delivery of the webhook may be claimed, and
// counts it if so.
func (r *ClaimRequest) Admit(webhookID string) bool {
	limit := r.MaxInFlight
	if n := r.MaxInFlightOf[webhookID]; n > 0 {
		limit = n
	}
	if r.InFlight[webhookID] >= limit {
		return false
	}
	if t, ok := r.NotBefore[webhookID]; ok {
		if r.Now.Before(t) {
			return false
		}
		// Later in the same claim, Now is before this: no second one.
		r.NotBefore[webhookID] = r.Now.Add(1)
	}
	if r.InFlight == nil {
		r.InFlight = map[string]int{}
	}
	r.InFlight[webhookID]++
	return true
}

// Job is a claimed delivery with what it takes to attempt it.
type Job struct {
	Delivery *Delivery
	Event    *Event
	Webhook  *Webhook // nil when the webhook was deleted
	// Gone is a queue entry whose delivery record no longer exists (its
	// webhook was deleted): there is nothing to attempt, only the claim
	// to release.
	Gone bool
	// Due is the time the delivery was queued for and PendingSince when it
	// became pending; stores use them to find their index entries again.
	Due          time.Time
	PendingSince time.Time
	// EventExpires is when the event's retention ends as claimed; Save
	// extends it when the delivery is to outlive it.
	EventExpires time.Time
}

// KeepEventUntil is when a job's event must be kept until, once saved:
// past the next attempt, or the end of the delivery, by the history's
// retention, so that the attempt finds it and a resend from the history
// can send it. Events are retained long enough for the retry schedule from
// the start; Retry-After, throttling and a late first attempt can go
// beyond it, so stores extend the event when Save is past it.
func (j *Job) KeepEventUntil(now time.Time, history time.Duration) time.Time {
	from := now
	if j.Delivery.Status == StatusPending && j.Delivery.NextAttemptAt != nil {
		from = *j.Delivery.NextAttemptAt
	}
	return from.Add(history)
}

// DeliveryFilter narrows a history listing.
type DeliveryFilter struct {
	Status Status
	Event  string
	Limit  int
	Cursor string // the id of the last delivery of the previous page
}

// Stats describe the queue.
type Stats struct {
	Pending       int64
	OldestPending time.Time // zero when nothing is pending
	// StoreBytes is the disk space the store takes: the Badger directory's
	// files, or the PostgreSQL database.
	StoreBytes int64
}
