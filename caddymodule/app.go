package caddymodule

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

func init() {
	caddy.RegisterModule(new(App))
}

// DefaultMaxBody is the ingest body cap when none is configured: 1 MB, as
// the receiver's.
const DefaultMaxBody = 1_000_000

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
	// Storage is the directory of the embedded database, or a postgres://
	// DSN to share one PostgreSQL database among a fleet of sidecars.
	// Relative paths are relative to Caddy's working directory. Placeholders
	// such as {env.WEBHOOKS_DSN} are expanded. Default: Caddy's data
	// directory + "/webhooks".
	Storage string `json:"storage,omitempty"`

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

	// EncryptionKey encrypts the database at rest: the standard base64
	// encoding of 16, 24 or 32 random bytes (AES-128, -192 or -256), for
	// example from `openssl rand -base64 32`. Placeholders such as
	// {env.WEBHOOKS_KEY} are expanded; one that expands to nothing is an
	// error, not a silently unencrypted database. Default: no encryption.
	// The key of an existing database cannot be changed by a reload.
	EncryptionKey string `json:"encryption_key,omitempty"`

	dir     string // absolute storage directory: the key in outboxes
	key     []byte
	opts    outbox.Options
	maxBody int64
	logger  *zap.Logger

	started bool
	shared  *sharedOutbox
	ob      atomic.Pointer[outbox.Outbox]
}

// outboxes holds the open stores and their dispatchers across config
// reloads, keyed by absolute storage directory.
var outboxes = caddy.NewUsagePool()

// sharedOutbox is an outbox in the pool.
type sharedOutbox struct {
	ob  *outbox.Outbox
	key string // base64 of the encryption key it was opened with

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

	// Placeholders such as {env.WEBHOOKS_DSN} keep a database password
	// out of the config.
	a.dir = caddy.NewReplacer().ReplaceKnown(a.Storage, "")
	if a.dir == "" {
		a.dir = filepath.Join(caddy.AppDataDir(), "webhooks")
	}
	if !isDSN(a.dir) {
		dir, err := filepath.Abs(a.dir)
		if err != nil {
			return fmt.Errorf("storage: %v", err)
		}
		a.dir = dir
	}

	allow := make([]netip.Prefix, 0, len(a.AllowDestinations))
	for _, s := range a.AllowDestinations {
		p, err := parseDestination(s)
		if err != nil {
			return fmt.Errorf("allow_destinations: %v", err)
		}
		allow = append(allow, p)
	}

	if a.EncryptionKey != "" {
		raw := caddy.NewReplacer().ReplaceAll(a.EncryptionKey, "")
		key, err := decodeEncryptionKey(raw)
		if err != nil {
			return fmt.Errorf("encryption_key: %v", err)
		}
		a.key = key
	}

	a.maxBody = a.MaxBody
	if a.maxBody == 0 {
		a.maxBody = DefaultMaxBody
	}

	a.opts = outbox.Options{
		Events:                a.Events,
		Timeout:               time.Duration(a.Timeout),
		Retention:             time.Duration(a.Retention),
		AllowDestinations:     allow,
		Workers:               a.Workers,
		MaxInFlightPerWebhook: a.MaxInFlightPerWebhook,
		RotationGrace:         time.Duration(a.RotationGrace),
		DisableAfter:          time.Duration(a.DisableAfter),
		Logger:                a.logger,
		Observer:              observer{},
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
	if isDSN(a.dir) && a.EncryptionKey != "" {
		return errors.New("encryption_key: applies to the embedded store only; encrypt PostgreSQL storage with the database's own means")
	}
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
	return nil
}

// Start opens the store, or reuses the one a running config has open on the
// same directory, applies this config's options and starts delivering.
func (a *App) Start() error {
	keyID := base64.StdEncoding.EncodeToString(a.key)
	val, loaded, err := outboxes.LoadOrNew(a.dir, func() (caddy.Destructor, error) {
		if isDSN(a.dir) {
			timeout := a.opts.Timeout
			if timeout <= 0 {
				timeout = 15 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			store, err := outbox.OpenPostgres(ctx, a.dir, outbox.PostgresOptions{Logger: a.logger, Lease: timeout + 30*time.Second})
			if err != nil {
				return nil, fmt.Errorf("opening PostgreSQL storage %s: %w", redactDSN(a.dir), err)
			}
			return &sharedOutbox{ob: outbox.New(store, a.opts), key: keyID}, nil
		}
		store, err := outbox.OpenBadger(a.dir, outbox.BadgerOptions{Logger: a.logger, EncryptionKey: a.key})
		if err != nil {
			return nil, fmt.Errorf("opening storage %s (if another Caddy runs on it, use 'caddy reload' to change its config): %w", a.dir, err)
		}
		return &sharedOutbox{ob: outbox.New(store, a.opts), key: keyID}, nil
	})
	if err != nil {
		return err
	}
	shared := val.(*sharedOutbox)
	if loaded && shared.key != keyID {
		_, _ = outboxes.Delete(a.dir)
		return fmt.Errorf("encryption_key: the database in %s is open with another key; a reload cannot change it, restart Caddy instead", a.dir)
	}
	shared.use(a)
	shared.ob.Start()
	a.shared = shared
	a.ob.Store(shared.ob)
	a.started = true
	a.logger.Info("webhooks started", zap.String("storage", redactDSN(a.dir)), zap.Bool("reused", loaded))
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
	_, err := outboxes.Delete(a.dir)
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
	var found *outbox.Outbox
	outboxes.Range(func(k, v any) bool {
		if k == a.dir {
			found = v.(*sharedOutbox).ob
			return false
		}
		return true
	})
	return found
}

// maxBodyBytes is the ingest cap of handlers that set none.
func (a *App) maxBodyBytes() int64 { return a.maxBody }

// redactDSN hides the password of a postgres:// DSN for logs and errors.
func redactDSN(s string) string {
	if !isDSN(s) {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "postgres://(unparsable DSN)"
	}
	return u.Redacted()
}

func isDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
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

// decodeEncryptionKey decodes a base64 key of 16, 24 or 32 bytes.
func decodeEncryptionKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty after placeholder expansion (is the environment variable set?)")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not valid standard base64 (generate one with: openssl rand -base64 32)")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("decodes to %d bytes; want 16, 24 or 32 (generate one with: openssl rand -base64 32)", len(key))
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
	_ caddy.Destructor  = (*sharedOutbox)(nil)
)
