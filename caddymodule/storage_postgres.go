package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/pgstore"
)

func init() {
	caddy.RegisterModule(new(PostgresStorage))
}

// PostgresStorage keeps the webhooks app's data in a PostgreSQL database
// that every sidecar of a fleet shares, so the fleet acts as one sender.
type PostgresStorage struct {
	// DSN is the database: a postgres:// or postgresql:// URL, with pgx's
	// pool parameters if wanted (pool_max_conns, connect_timeout).
	// Placeholders such as {env.WEBHOOKS_DSN} are expanded, which keeps
	// a password out of the config. Required.
	DSN string `json:"dsn,omitempty"`

	// Lease is how long a claim holds a delivery for one sidecar; a
	// sidecar that dies mid-attempt delays its deliveries by up to this
	// much. It must outlast an attempt. Default: the app's timeout + 30s.
	Lease caddy.Duration `json:"lease,omitempty"`

	// PollInterval is how often an idle sidecar looks for work that other
	// sidecars queued while its notification connection is down; while it
	// is up, they announce new work with NOTIFY. Default: 1s.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`

	dsn          string
	pollInterval time.Duration
}

// CaddyModule returns the Caddy module information.
func (*PostgresStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhooks.storage.postgres",
		New: func() caddy.Module { return new(PostgresStorage) },
	}
}

// Provision expands the DSN and fills in the default poll interval; it
// connects to nothing.
func (s *PostgresStorage) Provision(ctx caddy.Context) error {
	s.dsn = caddy.NewReplacer().ReplaceKnown(s.DSN, "")
	s.pollInterval = time.Duration(s.PollInterval)
	if s.pollInterval == 0 {
		s.pollInterval = time.Second
	}
	return nil
}

// Validate checks the DSN's form and the durations.
func (s *PostgresStorage) Validate() error {
	if s.dsn == "" {
		return errors.New("dsn: required (a postgres:// URL)")
	}
	if !isDSN(s.dsn) {
		return errors.New("dsn: must be a postgres:// or postgresql:// URL")
	}
	if s.Lease < 0 {
		return errors.New("lease: must not be negative")
	}
	if s.PollInterval < 0 {
		return errors.New("poll_interval: must not be negative")
	}
	return nil
}

// StorageKey is the DSN as expanded.
func (s *PostgresStorage) StorageKey() string { return s.dsn }

// Fingerprint is empty: every option may change with a reopen.
func (s *PostgresStorage) Fingerprint() string { return "" }

// OpenStore connects and migrates the schema.
func (s *PostgresStorage) OpenStore(logger *zap.Logger, attemptTimeout time.Duration) (outbox.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := pgstore.Open(ctx, s.dsn, pgstore.Options{
		Logger: logger, Lease: s.lease(attemptTimeout), PollInterval: s.pollInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("opening PostgreSQL storage %s: %w", s, err)
	}
	return store, nil
}

// lease is how long a claim holds a delivery: as configured, or long
// enough for an attempt of attemptTimeout and the save after it.
func (s *PostgresStorage) lease(attemptTimeout time.Duration) time.Duration {
	if s.Lease > 0 {
		return time.Duration(s.Lease)
	}
	return attemptTimeout + 30*time.Second
}

// String is the DSN with its password hidden.
func (s *PostgresStorage) String() string { return redactDSN(s.dsn) }

// UnmarshalCaddyfile sets up the storage from Caddyfile tokens. Syntax:
//
//	storage postgres {
//	    dsn           <postgres:// URL>
//	    lease         <duration>
//	    poll_interval <duration>
//	}
func (s *PostgresStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "dsn":
			if !d.NextArg() {
				return d.ArgErr()
			}
			s.DSN = d.Val()
			if d.NextArg() {
				return d.Errf("dsn: too many arguments")
			}
		case "lease", "poll_interval":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			if opt == "lease" {
				s.Lease = dur
			} else {
				s.PollInterval = dur
			}
		case "encryption_key":
			return d.Errf("encryption_key: applies to storage badger only; encrypt a PostgreSQL database with the database's own means")
		default:
			return d.Errf("unrecognized storage postgres option '%s'", opt)
		}
	}
	return nil
}

// redactDSN hides the password of a postgres:// DSN, in the user info or
// in the password parameter, which pgx reads as well.
func redactDSN(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "postgres://(unparsable DSN)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Interface guards
var (
	_ Storage               = (*PostgresStorage)(nil)
	_ caddy.Provisioner     = (*PostgresStorage)(nil)
	_ caddy.Validator       = (*PostgresStorage)(nil)
	_ caddyfile.Unmarshaler = (*PostgresStorage)(nil)
)
