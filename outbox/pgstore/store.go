package pgstore

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// The schema, applied in file name order (NNNN_name.sql) by Open.
//
//go:embed migrations/*.sql
var pgMigrations embed.FS

// Advisory lock keys. migrationLockKey serializes schema migrations of
// sidecars that start at once; the value is arbitrary but fixed forever,
// since sidecars of different versions must agree on it.
const migrationLockKey int64 = 0x77656268_6f6f6b01

// Options configure the fleet store. Zero fields take their defaults.
type Options struct {
	// Lease is how long a claim holds a delivery for one sidecar. It must
	// outlast an attempt (the outbox's timeout) plus the save after it:
	// a sidecar that dies mid-attempt delays its deliveries by up to this
	// much, and one whose attempt outlives it may see another sidecar
	// attempt the delivery again. Default: 45s (the default 15s timeout
	// plus 30s).
	Lease time.Duration
	// PollInterval bounds how far ahead Claim's next-due hint may lie
	// while the notification connection is down, so an idle sidecar still
	// finds work that other sidecars queued (events they ingested,
	// resends). While it is up, they announce new work with NOTIFY and
	// the hint is bounded by a minute only, as a safety net. Default: 1s.
	PollInterval time.Duration
	// WebhookCacheTTL bounds how long ListWebhooks, which every ingest
	// calls, may answer from memory. The cache is used only while the
	// notification connection is up, and every webhook write in the
	// database (through any sidecar) clears it on every sidecar through a
	// NOTIFY; while the connection is down, every ingest reads the
	// database. Claim, the API and every other read go to the database.
	// Default: 1m; negative disables the cache.
	WebhookCacheTTL time.Duration
	// CleanupInterval is how often expired history, events and
	// idempotency keys are deleted. Default: 1m.
	CleanupInterval time.Duration
	// Logger receives cleanup and migration messages; default nop.
	Logger *zap.Logger
}

func (o Options) withDefaults() Options {
	if o.Lease <= 0 {
		o.Lease = 45 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.WebhookCacheTTL == 0 {
		o.WebhookCacheTTL = time.Minute
	}
	if o.CleanupInterval <= 0 {
		o.CleanupInterval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// Store is the fleet Store: any number of sidecars share one
// PostgreSQL database. Claims are leases in the deliveries table, so a
// delivery is attempted by one sidecar at a time, and the deliveries of a
// sidecar that dies are taken over by the others when its leases run out.
//
// Expiry times (leases, retention, idempotency keys) are on the database's
// clock, so sidecars whose clocks disagree still agree on them. Due times
// are the sidecars' own, as in the embedded store.
type Store struct {
	pool  *pgxpool.Pool
	opts  Options
	owner string // this store's lease_owner: host, pid and a random part

	history atomic.Int64 // retention of finished deliveries, ns
	events  atomic.Int64 // retention of events, ns

	// held are the deliveries this store has claimed and not yet saved or
	// released. Claim skips them even once their lease has run out, so one
	// process never attempts a delivery twice at once.
	heldMu sync.Mutex
	held   map[string]bool
	// claimMu makes one Claim at a time: a claim takes back this store's
	// own leases that are not held, which a concurrent claim has leased
	// and not yet marked held.
	claimMu sync.Mutex

	cacheMu  sync.Mutex
	cache    map[string]cachedHooks // by app
	cacheGen uint64                 // bumped by every webhook write and notification

	// channel is this schema's NOTIFY channel; listening says whether the
	// notification connection is up, and wake carries its news of work.
	channel   string
	listening atomic.Bool
	wake      chan struct{}

	saves chan *pendingSave

	stop       chan struct{}
	done       chan struct{} // cleanup loop
	savesDone  chan struct{}
	listenDone chan struct{}
	closeOnce  sync.Once
}

type cachedHooks struct {
	list []*outbox.Webhook
	at   time.Time
}

// errLeaseLost is a Save after another sidecar took the delivery over,
// because the attempt outlasted the lease.
var errLeaseLost = outbox.ErrLeaseLost

// keywordPoolMaxConns finds pool_max_conns as a key of a key=value DSN.
var keywordPoolMaxConns = regexp.MustCompile(`(^|\s)pool_max_conns\s*=`)

// setsPoolMaxConns reports whether the DSN itself sets pool_max_conns, as
// a URL's query parameter or a key=value pair (not merely the word inside
// some value, such as a password).
func setsPoolMaxConns(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Query().Has("pool_max_conns")
	}
	return keywordPoolMaxConns.MatchString(dsn)
}

// Open connects to the database at dsn (a postgres:// URL or a
// key=value string, as pgx reads them, including pool_max_conns, default
// 16, and connect_timeout, default 10s), applies the schema migrations
// this version needs, and starts the cleanup loop.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx leaves the password out of its parse errors.
		return nil, fmt.Errorf("parsing the PostgreSQL DSN: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// Without one, a database host that drops packets holds ingest
		// for the operating system's TCP timeout (minutes).
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if !setsPoolMaxConns(dsn) {
		// Claims take one connection at a time and saves at most
		// maxSaveCommits, whatever the number of workers; ingest commits
		// two batches at once and reads webhooks on a cache miss. pgx's
		// default (the number of CPUs, at least 4) would make those wait
		// on each other.
		cfg.MaxConns = 16
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "caddy-webhooks"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if err := migrate(ctx, pool, opts.Logger); err != nil {
		pool.Close()
		return nil, err
	}
	var channel string
	if err := pool.QueryRow(ctx, channelSQL).Scan(&channel); err != nil {
		pool.Close()
		return nil, fmt.Errorf("naming the notification channel: %w", err)
	}
	s := &Store{
		pool:       pool,
		opts:       opts,
		owner:      leaseOwner(),
		held:       map[string]bool{},
		cache:      map[string]cachedHooks{},
		channel:    channel,
		wake:       make(chan struct{}, 1),
		saves:      make(chan *pendingSave),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		savesDone:  make(chan struct{}),
		listenDone: make(chan struct{}),
	}
	s.SetRetention(720*time.Hour, 720*time.Hour)
	go s.cleanupLoop()
	go s.saveLoop()
	go s.listenLoop(cfg.ConnConfig)
	return s, nil
}

// leaseOwner names this process in lease_owner: readable for an operator
// (which host holds a delivery) and unique across restarts.
func leaseOwner() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, all in one transaction under an advisory lock: of
// several sidecars starting at once, one migrates and the others wait and
// then find nothing to do.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) error {
	files, err := fs.Glob(pgMigrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("listing migrations: %w", err)
	}
	sort.Strings(files)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrating the schema: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("locking for schema migrations: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("reading schema_migrations: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return fmt.Errorf("reading schema_migrations: %w", err)
	}
	known := map[int]bool{}
	for _, f := range files {
		name := strings.TrimPrefix(f, "migrations/")
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("migration %s: the name must start with a number and an underscore", name)
		}
		known[version] = true
		if slices.Contains(applied, version) {
			continue
		}
		sql, err := pgMigrations.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading migration %s: %w", name, err)
		}
		// Without arguments pgx sends the file with the simple protocol,
		// which runs several statements.
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("applying migration %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, version, name); err != nil {
			return fmt.Errorf("recording migration %s: %w", name, err)
		}
		log.Info("applied schema migration", zap.String("migration", name))
	}
	for _, v := range applied {
		if !known[v] {
			// A newer sidecar migrated the database. Its migrations are
			// meant to be additive, so an older one keeps working during a
			// rolling upgrade; say so in case they were not.
			log.Warn("the database has a schema migration this version does not know; is a newer sidecar running?", zap.Int("version", v))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing schema migrations: %w", err)
	}
	return nil
}

// SetRetention sets how long finished deliveries and events are kept. Like
// a Badger TTL, it applies to what is written from now on.
func (s *Store) SetRetention(history, events time.Duration) {
	s.history.Store(int64(history))
	s.events.Store(int64(events))
}

// Lease is how long a claim holds a delivery for this sidecar.
func (s *Store) Lease() time.Duration { return s.opts.Lease }

// Close stops the cleanup loop and closes the connections. Leases still
// held run out and other sidecars take those deliveries.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		<-s.savesDone
		<-s.listenDone
		s.pool.Close()
	})
	return nil
}

// pgErr wraps a database failure with what was being done. The outbox and
// the API treat ErrUnavailable as "try again later".
func pgErr(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, errors.Join(outbox.ErrUnavailable, err))
}

// micros turns a duration into the microseconds SQL multiplies by
// interval '1 microsecond', which avoids depending on how an interval
// parameter is encoded.
func micros(d time.Duration) int64 { return d.Microseconds() }

func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

var (
	_ outbox.Store    = (*Store)(nil)
	_ outbox.Notifier = (*Store)(nil)
)
