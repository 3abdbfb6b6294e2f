// Package outbox is the webhook sender's engine, a plain Go library: a
// durable store of webhooks, events and deliveries, a dispatcher that POSTs
// each delivery signed and retries it on a schedule, and the delivery
// history. It knows nothing of Caddy.
package outbox

import (
	"context"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/cel"
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
	// DenyEndpoints are never reached, even inside AllowDestinations:
	// Caddy's admin endpoint, which a delivery could otherwise reconfigure.
	DenyEndpoints []Endpoint
	// Proxy, when set, carries every delivery (absolute-form requests for
	// http URLs, CONNECT for https); the proxy resolves host names, so the
	// destination check on resolved addresses is its job. NoProxy lists
	// destinations dialled directly and checked as usual: CIDRs and IP
	// addresses match URLs with a literal IP, host names match themselves
	// and their subdomains.
	Proxy   *url.URL
	NoProxy []string
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
	// Operational, when set, is where the sender reports on itself
	// (see OperationalWebhook).
	Operational *OperationalWebhook
}

func (o Options) withDefaults() Options {
	if len(o.Events) == 0 {
		o.Events = DefaultEvents
	}
	if o.RetrySchedule == nil {
		o.RetrySchedule = DefaultRetrySchedule
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
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
	// EventFiltered counts a webhook that an event was not delivered to
	// because the webhook's filter did not match it.
	EventFiltered(eventType string)
	AttemptFinished(eventType string, success bool, took time.Duration)
	DeliveryFailed(eventType string)
	QueueStats(Stats)
}

type nopObserver struct{}

func (nopObserver) EventReceived(string)                        {}
func (nopObserver) EventFiltered(string)                        {}
func (nopObserver) AttemptFinished(string, bool, time.Duration) {}
func (nopObserver) DeliveryFailed(string)                       {}
func (nopObserver) QueueStats(Stats)                            {}

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

	d   *dispatcher
	ops operationalState

	portalKey atomic.Pointer[[]byte] // read once from the store

	filterEnv    *cel.Env
	filterEnvErr error
	filters      filterCache
}

// New makes an Outbox on store. Start begins committing and delivering.
func New(store Store, opts Options) *Outbox {
	o := &Outbox{
		store:   store,
		ingest:  make(chan *pendingIngest, 4096),
		stopped: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
	o.filterEnv, o.filterEnvErr = newFilterEnv()
	o.Configure(opts)
	o.d = newDispatcher(o)
	return o
}

// Configure replaces the options; a running outbox uses them from its next
// attempt on, so a config reload needs no restart.
func (o *Outbox) Configure(opts Options) {
	opts = opts.withDefaults()
	o.opts.Store(&opts)
	// An event outlives every delivery of it: the history's retention plus
	// the longest retry round, and the store extends it for a delivery
	// that waits longer (Retry-After, throttling). (An idempotency key
	// keeps only the event's id, so it needs no body.)
	var round time.Duration
	for _, d := range opts.RetrySchedule {
		round += d + d/5 + opts.Timeout
	}
	o.store.SetRetention(opts.Retention, opts.Retention+round)
	if o.d != nil {
		o.d.configure(&opts)
	}
	o.syncOperational(opts.Operational)
}

func (o *Outbox) options() *Options { return o.opts.Load() }

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
