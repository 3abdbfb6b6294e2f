package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/bodysize"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the webhook sender: it owns the durable store of webhooks, events
// and deliveries, and the dispatcher that delivers them. The webhook_events
// handler posts events to it; webhook_admin and the admin endpoint's
// /webhooks/ routes manage it.
//
// The store is opened when the app starts, not when it is provisioned, so
// `caddy validate` works beside a running server; it is shared across config
// reloads (keyed by its directory), so a reload neither reopens it nor drops
// deliveries in flight.
type App struct {
	// StorageRaw is where webhooks, events and deliveries are kept: a
	// module of the webhooks.storage namespace, "badger" (an embedded
	// directory, the default, in Caddy's data directory + "/webhooks") or
	// "postgres" (one database shared by a fleet of sidecars). A bare
	// string is shorthand: a postgres:// DSN or a Badger directory.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=webhooks.storage inline_key=module"`

	// Events is the catalog of event types the service may post and
	// webhooks may subscribe to. Default: app_build_created,
	// app_deployment_created, job_created, job_finished.
	Events []string `json:"events,omitempty"`

	// RetrySchedule is the wait before each retry of a failed delivery; a
	// delivery gets one attempt more than the schedule has entries.
	// Default: 5s 5m 30m 2h 5h 10h 14h 20h 24h.
	RetrySchedule []caddy.Duration `json:"retry_schedule,omitempty"`

	// Timeout bounds one delivery attempt. Default: 15s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// MaxBody is the largest event body, in bytes, that webhook_events
	// accepts (a handler may set its own). Default: 1 MB (1000000).
	MaxBody int64 `json:"max_body,omitempty"`

	// Retention is how long finished deliveries stay in the history.
	// Default: 720h (30 days).
	Retention caddy.Duration `json:"retention,omitempty"`

	// AllowDestinations lists ranges (CIDRs; a bare IP is one address)
	// that webhook URLs may reach although they are loopback, private,
	// link-local, unspecified or multicast, which are refused otherwise.
	AllowDestinations []string `json:"allow_destinations,omitempty"`

	// Proxy is an HTTP proxy (http:// or https://, credentials in the
	// URL if it needs them) that carries every delivery: absolute-form
	// requests for http URLs, CONNECT for https. The proxy resolves host
	// names, so the destination check on resolved addresses is its job;
	// URLs with a literal IP are still checked. Placeholders such as
	// {env.WEBHOOKS_PROXY} are expanded. Default: none (deliveries dial
	// directly; the environment's HTTP_PROXY is ignored).
	Proxy string `json:"proxy,omitempty"`

	// NoProxy lists destinations dialled directly despite Proxy: CIDRs
	// and IP addresses match URLs with a literal IP, host names match
	// themselves and their subdomains.
	NoProxy []string `json:"no_proxy,omitempty"`

	// Workers is how many delivery attempts run at once. Default: 64.
	Workers int `json:"workers,omitempty"`

	// MaxInFlightPerWebhook caps the concurrent attempts to one webhook,
	// so a slow endpoint cannot take every worker. Default: 8.
	MaxInFlightPerWebhook int `json:"max_in_flight_per_webhook,omitempty"`

	// DisableAfter disables a webhook whose deliveries have failed, without
	// a success, for this long. Default: 120h (5 days).
	DisableAfter caddy.Duration `json:"disable_after,omitempty"`

	// RotationGrace is how long a replaced signing secret keeps signing
	// (a second signature) after a webhook's secret is changed, so the
	// receiver can roll over. Default: 24h.
	RotationGrace caddy.Duration `json:"rotation_grace,omitempty"`

	// OperationalWebhook, when set, is where the sender reports on itself
	// (webhooks disabled, failing and recovered; deliveries exhausted).
	OperationalWebhook *OperationalWebhook `json:"operational_webhook,omitempty"`

	storage Storage
	opts    outbox.Options
	maxBody int64
	logger  *zap.Logger

	started bool
	shared  *sharedOutbox
	ob      atomic.Pointer[outbox.Outbox]
}

// outboxes holds the open stores and their dispatchers across config
// reloads, keyed by the storage's StorageKey.
var outboxes = caddy.NewUsagePool()

// sharedOutbox is an outbox in the pool.
type sharedOutbox struct {
	ob          *outbox.Outbox
	fingerprint string // of the storage it was opened with

	// users are the running configs' apps, newest last; the newest one's
	// options are in force. When a config stops, its predecessor's options
	// come back, so a reload that fails after this app started leaves the
	// running config as it was.
	mu    sync.Mutex
	users []*App
}

func (s *sharedOutbox) use(a *App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users = append(s.users, a)
	s.ob.Configure(a.opts)
}

func (s *sharedOutbox) release(a *App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.users, a)
	if i < 0 {
		return
	}
	wasActive := i == len(s.users)-1
	s.users = slices.Delete(s.users, i, i+1)
	if wasActive && len(s.users) > 0 {
		s.ob.Configure(s.users[len(s.users)-1].opts)
	}
}

// Destruct closes the outbox and its store when the last config using them stops.
func (s *sharedOutbox) Destruct() error { return s.ob.Close() }

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhooks",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision builds the outbox options and registers the metrics. It does not
// open the store: that happens in Start.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}

	st, err := a.loadStorage(ctx)
	if err != nil {
		return err
	}
	a.storage = st

	allow := make([]netip.Prefix, 0, len(a.AllowDestinations))
	for _, s := range a.AllowDestinations {
		p, err := parseDestination(s)
		if err != nil {
			return fmt.Errorf("allow_destinations: %v", err)
		}
		allow = append(allow, p)
	}

	var proxy *url.URL
	if a.Proxy != "" {
		if proxy, err = outbox.CheckProxyURL(caddy.NewReplacer().ReplaceKnown(a.Proxy, "")); err != nil {
			return fmt.Errorf("proxy: %v", err)
		}
	}

	a.maxBody = a.MaxBody
	if a.maxBody == 0 {
		a.maxBody = bodysize.Default
	}

	a.opts = outbox.Options{
		Events:                a.Events,
		Timeout:               time.Duration(a.Timeout),
		Retention:             time.Duration(a.Retention),
		AllowDestinations:     allow,
		DenyEndpoints:         adminEndpoints(ctx),
		Proxy:                 proxy,
		NoProxy:               a.NoProxy,
		Workers:               a.Workers,
		MaxInFlightPerWebhook: a.MaxInFlightPerWebhook,
		RotationGrace:         time.Duration(a.RotationGrace),
		DisableAfter:          time.Duration(a.DisableAfter),
		Logger:                a.logger,
		Observer:              observer{},
		Operational:           a.OperationalWebhook.options(),
	}
	if a.RetrySchedule != nil {
		a.opts.RetrySchedule = make([]time.Duration, len(a.RetrySchedule))
		for i, d := range a.RetrySchedule {
			a.opts.RetrySchedule[i] = time.Duration(d)
		}
	}
	events := a.Events
	if len(events) == 0 {
		events = outbox.DefaultEvents
	}
	initMetricLabels(events)
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	seen := make(map[string]bool, len(a.Events))
	for _, e := range a.Events {
		if e == "" || strings.ContainsAny(e, " \t\r\n") {
			return fmt.Errorf("events: invalid event type %q", e)
		}
		if seen[e] {
			return fmt.Errorf("events: %q listed twice", e)
		}
		seen[e] = true
	}
	for _, d := range a.RetrySchedule {
		if d < 0 {
			return fmt.Errorf("retry_schedule: negative duration %v", time.Duration(d))
		}
	}
	for name, d := range map[string]caddy.Duration{
		"timeout": a.Timeout, "retention": a.Retention,
		"disable_after": a.DisableAfter, "rotation_grace": a.RotationGrace,
	} {
		if d < 0 {
			return fmt.Errorf("%s: negative duration %v", name, time.Duration(d))
		}
	}
	if a.MaxBody < 0 {
		return fmt.Errorf("max_body: must not be negative")
	}
	if a.Workers < 0 {
		return fmt.Errorf("workers: must not be negative")
	}
	if a.MaxInFlightPerWebhook < 0 {
		return fmt.Errorf("max_in_flight_per_webhook: must not be negative")
	}
	if err := a.OperationalWebhook.validate(); err != nil {
		return err
	}
	for _, e := range a.NoProxy {
		if err := outbox.CheckNoProxy(e); err != nil {
			return fmt.Errorf("no_proxy: %v", err)
		}
	}
	if len(a.NoProxy) > 0 && a.Proxy == "" {
		return fmt.Errorf("no_proxy: applies only with proxy")
	}
	return nil
}

// Start opens the store, or reuses the one a running config has open on the
// same storage, applies this config's options and starts delivering.
func (a *App) Start() error {
	key, fingerprint := a.storage.StorageKey(), a.storage.Fingerprint()
	val, loaded, err := outboxes.LoadOrNew(key, func() (caddy.Destructor, error) {
		store, err := a.storage.OpenStore(a.logger, a.attemptTimeout())
		if err != nil {
			return nil, err
		}
		return &sharedOutbox{ob: outbox.New(store, a.opts), fingerprint: fingerprint}, nil
	})
	if err != nil {
		return err
	}
	shared := val.(*sharedOutbox)
	if loaded && shared.fingerprint != fingerprint {
		_, _ = outboxes.Delete(key)
		return fmt.Errorf("encryption_key: the database in %s is open with another key; a reload cannot change it, restart Caddy instead", a.storage)
	}
	shared.use(a)
	shared.ob.Start()
	a.shared = shared
	a.ob.Store(shared.ob)
	a.started = true
	a.logger.Info("webhooks started", zap.Stringer("storage", a.storage), zap.Bool("reused", loaded))
	return nil
}

// Stop releases this config's use of the store; the last user closes it,
// after the attempts in flight finish.
func (a *App) Stop() error {
	if !a.started {
		return nil
	}
	a.started = false
	a.shared.release(a)
	// The outbox stays reachable from this config's handlers, which may
	// still be draining; once closed it answers ErrClosed (503).
	_, err := outboxes.Delete(a.storage.StorageKey())
	return err
}

// Outbox returns the running outbox, or nil before the app has started.
// A config that never started (a reload that failed) can still be serving
// the admin endpoint, since Caddy replaces that before starting apps; it
// finds the store its storage names if another config has it open.
func (a *App) Outbox() *outbox.Outbox {
	if ob := a.ob.Load(); ob != nil {
		return ob
	}
	if a.storage == nil {
		return nil
	}
	var found *outbox.Outbox
	key := a.storage.StorageKey()
	outboxes.Range(func(k, v any) bool {
		if k == key {
			found = v.(*sharedOutbox).ob
			return false
		}
		return true
	})
	return found
}

// maxBodyBytes is the ingest cap of handlers that set none.
func (a *App) maxBodyBytes() int64 { return a.maxBody }

// attemptTimeout bounds one delivery attempt: the timeout option, or the
// outbox's default.
func (a *App) attemptTimeout() time.Duration {
	if a.opts.Timeout > 0 {
		return a.opts.Timeout
	}
	return outbox.DefaultTimeout
}

// parseDestination parses a CIDR, or a bare IP as a single address.
func parseDestination(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return p.Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR or IP address %q", s)
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
	_ caddy.Destructor  = (*sharedOutbox)(nil)
)
