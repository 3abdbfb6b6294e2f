package outbox

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// The schema, applied in file name order (NNNN_name.sql) by OpenPostgres.
//
//go:embed migrations/*.sql
var pgMigrations embed.FS

// Advisory lock keys. migrationLockKey serializes schema migrations of
// sidecars that start at once; the value is arbitrary but fixed forever,
// since sidecars of different versions must agree on it.
const migrationLockKey int64 = 0x77656268_6f6f6b01

// PostgresOptions configure the fleet store. Zero fields take their defaults.
type PostgresOptions struct {
	// Lease is how long a claim holds a delivery for one sidecar. It must
	// outlast an attempt (the outbox's timeout) plus the save after it:
	// a sidecar that dies mid-attempt delays its deliveries by up to this
	// much, and one whose attempt outlives it may see another sidecar
	// attempt the delivery again. Default: 45s (the default 15s timeout
	// plus 30s).
	Lease time.Duration
	// PollInterval bounds how far ahead Claim's next-due hint may lie, so
	// an idle sidecar still looks for work that other sidecars queued
	// (events they ingested, resends, deliveries of a dead sidecar).
	// Default: 1s.
	PollInterval time.Duration
	// WebhookCacheTTL is how long ListWebhooks, which every ingest calls,
	// may answer from memory. Writes through this store clear the cache at
	// once, but a webhook created or changed through another sidecar is
	// seen by this one's ingest only after up to this long. Claim, the API
	// and every other read go to the database. Default: 1s; negative
	// disables the cache.
	WebhookCacheTTL time.Duration
	// CleanupInterval is how often expired history, events and
	// idempotency keys are deleted. Default: 1m.
	CleanupInterval time.Duration
	// Logger receives cleanup and migration messages; default nop.
	Logger *zap.Logger
}

func (o PostgresOptions) withDefaults() PostgresOptions {
	if o.Lease <= 0 {
		o.Lease = 45 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.WebhookCacheTTL == 0 {
		o.WebhookCacheTTL = time.Second
	}
	if o.CleanupInterval <= 0 {
		o.CleanupInterval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// PostgresStore is the fleet Store: any number of sidecars share one
// PostgreSQL database. Claims are leases in the deliveries table, so a
// delivery is attempted by one sidecar at a time, and the deliveries of a
// sidecar that dies are taken over by the others when its leases run out.
//
// Expiry times (leases, retention, idempotency keys) are on the database's
// clock, so sidecars whose clocks disagree still agree on them. Due times
// are the sidecars' own, as in the embedded store.
type PostgresStore struct {
	pool  *pgxpool.Pool
	opts  PostgresOptions
	owner string // this store's lease_owner: host, pid and a random part

	history atomic.Int64 // retention of finished deliveries, ns
	events  atomic.Int64 // retention of events, ns

	// held are the deliveries this store has claimed and not yet saved or
	// released. Claim skips them even once their lease has run out, so one
	// process never attempts a delivery twice at once.
	heldMu sync.Mutex
	held   map[string]bool

	cacheMu  sync.Mutex
	cache    map[string]cachedHooks // by app
	cacheGen uint64                 // bumped by every local webhook write

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type cachedHooks struct {
	list []*Webhook
	at   time.Time
}

// errLeaseLost is a Save after another sidecar took the delivery over,
// because the attempt outlasted the lease.
var errLeaseLost = errors.New("the claim ran out and another sidecar took the delivery over")

// OpenPostgres connects to the database at dsn (a postgres:// URL or a
// key=value string, as pgx reads them, including pool_max_conns, default
// 16, and connect_timeout, default 10s), applies the schema migrations
// this version needs, and starts the cleanup loop.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*PostgresStore, error) {
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
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgx's default (the number of CPUs, at least 4) starves 64
		// workers saving their attempts beside the ingest's commits.
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
	s := &PostgresStore{
		pool:  pool,
		opts:  opts,
		owner: leaseOwner(),
		held:  map[string]bool{},
		cache: map[string]cachedHooks{},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	s.SetRetention(720*time.Hour, 720*time.Hour)
	go s.cleanupLoop()
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
func (s *PostgresStore) SetRetention(history, events time.Duration) {
	s.history.Store(int64(history))
	s.events.Store(int64(events))
}

// Close stops the cleanup loop and closes the connections. Leases still
// held run out and other sidecars take those deliveries.
func (s *PostgresStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
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
	return fmt.Errorf("%s: %w", what, errors.Join(ErrUnavailable, err))
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

// ---- scanning ----

const pgWebhookCols = `id, app_id, name, url, events, enabled, secret, previous_secret,
	previous_secret_until, failing_since, disabled_reason, created_at, updated_at`

// pgWebhookColsW are pgWebhookCols of a join, where the webhook is w.
var pgWebhookColsW = "w." + strings.Join(strings.Split(strings.Join(strings.Fields(pgWebhookCols), " "), ", "), ", w.")

func scanWebhook(row pgx.Row) (*Webhook, error) {
	var w Webhook
	var prevUntil, failing *time.Time
	if err := row.Scan(&w.ID, &w.AppID, &w.Name, &w.URL, &w.Events, &w.Enabled, &w.Secret, &w.PreviousSecret,
		&prevUntil, &failing, &w.DisabledReason, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return nil, err
	}
	w.PreviousSecretUntil, w.FailingSince = timeOrZero(prevUntil), timeOrZero(failing)
	return &w, nil
}

const pgDeliveryCols = `d.id, d.app_id, d.webhook_id, d.event_id, d.event, d.status, d.created_at,
	d.next_attempt_at, d.round, d.resend, d.pending_since, d.attempts`

// deliveryScan holds the scan targets of pgDeliveryCols.
type deliveryScan struct {
	d        Delivery
	status   string
	since    *time.Time
	attempts []byte
}

func (x *deliveryScan) targets() []any {
	d := &x.d
	return []any{&d.ID, &d.AppID, &d.WebhookID, &d.EventID, &d.Event, &x.status, &d.CreatedAt,
		&d.NextAttemptAt, &d.Round, &d.Resend, &x.since, &x.attempts}
}

func (x *deliveryScan) result() (*Delivery, time.Time, error) {
	d := x.d
	d.Status = Status(x.status)
	if len(x.attempts) > 0 {
		if err := json.Unmarshal(x.attempts, &d.Attempts); err != nil {
			return nil, time.Time{}, fmt.Errorf("decoding the attempts of delivery %s: %w", d.ID, err)
		}
	}
	return &d, timeOrZero(x.since), nil
}

func scanDelivery(row pgx.Row) (*Delivery, time.Time, error) {
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
}

const pgEventCols = `e.id, e.app_id, e.type, e.received_at, e.expires_at, e.body`

func (x *eventScan) targets() []any {
	return []any{&x.id, &x.appID, &x.typ, &x.receivedAt, &x.expiresAt, &x.body}
}

// result is nil when the join found no event (expired).
func (x *eventScan) result() *Event {
	if x.id == nil {
		return nil
	}
	body := x.body
	if body == nil {
		body = []byte{}
	}
	return &Event{ID: *x.id, AppID: *x.appID, Type: *x.typ, ReceivedAt: *x.receivedAt, Body: body}
}

func attemptsJSON(a []Attempt) (string, error) {
	if a == nil {
		return "[]", nil
	}
	b, err := json.Marshal(a)
	return string(b), err
}

// ---- ingest ----

// Commit writes the whole batch in one transaction, so the batch shares
// one fsync at COMMIT (with synchronous_commit on, the default). Repeated
// idempotency keys are found inside the transaction: a key being committed
// by another sidecar makes this one wait for it, then see it.
func (s *PostgresStore) Commit(ctx context.Context, batch []*Ingest) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return pgErr("starting the ingest transaction", err)
	}
	defer tx.Rollback(context.Background())

	if err := s.checkIdempotency(ctx, tx, batch); err != nil {
		return err
	}

	var (
		evID, evApp, evType []string
		evAt                []time.Time
		evBody              [][]byte

		dID, dApp, dHook, dEvent, dType, dStatus, dAttempts []string
		dCreated                                            []time.Time
		dNext                                               []pgtype.Timestamptz
		dRound                                              []int32
		dResend                                             []bool
	)
	for _, in := range batch {
		if in.Result.Duplicate {
			continue
		}
		ev := in.Event
		body := []byte(ev.Body)
		if body == nil {
			body = []byte{}
		}
		evID, evApp, evType = append(evID, ev.ID), append(evApp, ev.AppID), append(evType, ev.Type)
		evAt, evBody = append(evAt, ev.ReceivedAt), append(evBody, body)
		for _, d := range in.Deliveries {
			a, err := attemptsJSON(d.Attempts)
			if err != nil {
				return fmt.Errorf("encoding delivery %s: %w", d.ID, err)
			}
			var next time.Time
			if d.NextAttemptAt != nil {
				next = *d.NextAttemptAt
			}
			dID, dApp, dHook = append(dID, d.ID), append(dApp, d.AppID), append(dHook, d.WebhookID)
			dEvent, dType, dStatus = append(dEvent, d.EventID), append(dType, d.Event), append(dStatus, string(d.Status))
			dAttempts, dCreated = append(dAttempts, a), append(dCreated, d.CreatedAt)
			dNext, dRound, dResend = append(dNext, nullTime(next)), append(dRound, int32(d.Round)), append(dResend, d.Resend)
		}
	}
	if len(evID) > 0 {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO events (id, app_id, type, received_at, body, expires_at)
			SELECT u.id, u.app_id, u.type, u.received_at, u.body, now() + $6 * interval '1 microsecond'
			FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[])
				AS u(id, app_id, type, received_at, body)`,
			evID, evApp, evType, evAt, evBody, micros(time.Duration(s.events.Load())))
		if len(dID) > 0 {
			// A delivery whose webhook was deleted since the ingest listed
			// it is dropped, as the embedded store drops it when claimed.
			// The KEY SHARE lock makes a concurrent delete wait for this
			// commit (and cascade to these rows) instead of racing it.
			b.Queue(`INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at,
					next_attempt_at, round, resend, pending_since, attempts, expires_at)
				SELECT u.id, u.app_id, u.webhook_id, u.event_id, u.event, u.status, u.created_at,
					u.next_attempt_at, u.round, u.resend,
					CASE WHEN u.status = 'pending' THEN u.created_at END,
					u.attempts::jsonb,
					CASE WHEN u.status <> 'pending' THEN now() + $12 * interval '1 microsecond' END
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
					$7::timestamptz[], $8::timestamptz[], $9::int4[], $10::bool[], $11::text[])
					AS u(id, app_id, webhook_id, event_id, event, status, created_at,
						next_attempt_at, round, resend, attempts)
				WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = u.webhook_id FOR KEY SHARE)`,
				dID, dApp, dHook, dEvent, dType, dStatus, dCreated, dNext, dRound, dResend, dAttempts,
				micros(time.Duration(s.history.Load())))
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return pgErr("writing events", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return pgErr("committing events", err)
	}
	return nil
}

// checkIdempotency claims the batch's idempotency keys and marks the
// ingests whose key is taken as duplicates. The statements run in batch
// order, so a key repeated within the batch is a duplicate of its first
// use, as in the embedded store.
func (s *PostgresStore) checkIdempotency(ctx context.Context, tx pgx.Tx, batch []*Ingest) error {
	for _, in := range batch {
		in.Result = IngestResult{ID: in.Event.ID, Deliveries: len(in.Deliveries)}
	}
	var keyed []*Ingest
	b := &pgx.Batch{}
	for _, in := range batch {
		if in.IdempotencyKey == "" {
			continue
		}
		keyed = append(keyed, in)
		// An expired key still in the table (cleanup runs every minute)
		// counts as absent: the new event takes it over.
		b.Queue(`INSERT INTO idempotency (app_id, key, event_id, deliveries, expires_at)
			VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond')
			ON CONFLICT (app_id, key) DO UPDATE
				SET event_id = excluded.event_id, deliveries = excluded.deliveries, expires_at = excluded.expires_at
				WHERE idempotency.expires_at <= now()
			RETURNING event_id`,
			in.Event.AppID, in.IdempotencyKey, in.Event.ID, len(in.Deliveries), micros(IdempotencyWindow))
	}
	if len(keyed) == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, b)
	var taken []*Ingest
	for _, in := range keyed {
		var id string
		err := br.QueryRow().Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			taken = append(taken, in)
			continue
		}
		if err != nil {
			br.Close()
			return pgErr("checking idempotency keys", err)
		}
	}
	if err := br.Close(); err != nil {
		return pgErr("checking idempotency keys", err)
	}
	if len(taken) == 0 {
		return nil
	}
	// A statement of its own sees the row of a sidecar whose commit the
	// INSERT above waited for (READ COMMITTED takes a new snapshot).
	b = &pgx.Batch{}
	for _, in := range taken {
		b.Queue(`SELECT event_id, deliveries FROM idempotency WHERE app_id = $1 AND key = $2`, in.Event.AppID, in.IdempotencyKey)
	}
	br = tx.SendBatch(ctx, b)
	defer br.Close()
	for _, in := range taken {
		var res IngestResult
		if err := br.QueryRow().Scan(&res.ID, &res.Deliveries); err != nil {
			return pgErr("reading idempotency key", err)
		}
		res.Duplicate = true
		in.Result = res
	}
	return nil
}

// ---- webhooks ----

// invalidate drops the ListWebhooks cache after a local webhook write.
func (s *PostgresStore) invalidate() {
	s.cacheMu.Lock()
	s.cacheGen++
	clear(s.cache)
	s.cacheMu.Unlock()
}

// CreateWebhook stores a new webhook.
func (s *PostgresStore) CreateWebhook(ctx context.Context, w *Webhook) error {
	defer s.invalidate()
	_, err := s.pool.Exec(ctx, `INSERT INTO webhooks (`+pgWebhookCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		w.ID, w.AppID, w.Name, w.URL, w.Events, w.Enabled, w.Secret, w.PreviousSecret,
		nullTime(w.PreviousSecretUntil), nullTime(w.FailingSince), w.DisabledReason, w.CreatedAt, w.UpdatedAt)
	if err != nil {
		return pgErr("creating webhook", err)
	}
	return nil
}

// UpdateWebhook locks the row, applies fn to it and writes it back, so
// concurrent updates from several sidecars apply one after the other.
func (s *PostgresStore) UpdateWebhook(ctx context.Context, appID, id string, fn func(*Webhook) error) (*Webhook, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, pgErr("updating webhook", err)
	}
	defer tx.Rollback(context.Background())
	w, err := scanWebhook(tx.QueryRow(ctx, `SELECT `+pgWebhookCols+` FROM webhooks
		WHERE id = $1 AND app_id = $2 FOR UPDATE`, id, appID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, pgErr("reading webhook", err)
	}
	if err := fn(w); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE webhooks SET name = $3, url = $4, events = $5, enabled = $6,
			secret = $7, previous_secret = $8, previous_secret_until = $9, failing_since = $10,
			disabled_reason = $11, created_at = $12, updated_at = $13
		WHERE id = $1 AND app_id = $2`,
		id, appID, w.Name, w.URL, w.Events, w.Enabled, w.Secret, w.PreviousSecret,
		nullTime(w.PreviousSecretUntil), nullTime(w.FailingSince), w.DisabledReason, w.CreatedAt, w.UpdatedAt); err != nil {
		return nil, pgErr("writing webhook", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, pgErr("committing webhook", err)
	}
	s.invalidate()
	return copyWebhook(w), nil
}

// DeleteWebhook removes the webhook and, by cascade in the same
// transaction, its history; attempts in flight find nothing to save.
func (s *PostgresStore) DeleteWebhook(ctx context.Context, appID, id string) error {
	defer s.invalidate()
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhooks WHERE id = $1 AND app_id = $2`, id, appID)
	if err != nil {
		return pgErr("deleting webhook", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// GetWebhook reads a webhook of the app from the database.
func (s *PostgresStore) GetWebhook(ctx context.Context, appID, id string) (*Webhook, error) {
	w, err := scanWebhook(s.pool.QueryRow(ctx, `SELECT `+pgWebhookCols+` FROM webhooks
		WHERE id = $1 AND app_id = $2`, id, appID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, pgErr("reading webhook", err)
	}
	return w, nil
}

// ListWebhooks returns an app's webhooks, oldest first, from a cache at
// most WebhookCacheTTL old (see PostgresOptions).
func (s *PostgresStore) ListWebhooks(ctx context.Context, appID string) ([]*Webhook, error) {
	ttl := s.opts.WebhookCacheTTL
	s.cacheMu.Lock()
	c, ok := s.cache[appID]
	gen := s.cacheGen
	s.cacheMu.Unlock()
	if ttl > 0 && ok && time.Since(c.at) < ttl {
		return copyWebhooks(c.list), nil
	}
	at := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT `+pgWebhookCols+` FROM webhooks WHERE app_id = $1 ORDER BY id`, appID)
	if err != nil {
		return nil, pgErr("listing webhooks", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Webhook, error) { return scanWebhook(r) })
	if err != nil {
		return nil, pgErr("listing webhooks", err)
	}
	if ttl > 0 {
		s.cacheMu.Lock()
		// A local write since the query started may have changed the list.
		if s.cacheGen == gen {
			if len(s.cache) >= 10000 {
				// Bound the memory a stream of distinct app ids can take.
				clear(s.cache)
			}
			s.cache[appID] = cachedHooks{list: list, at: at}
		}
		s.cacheMu.Unlock()
	}
	return copyWebhooks(list), nil
}

func copyWebhooks(list []*Webhook) []*Webhook {
	out := make([]*Webhook, len(list))
	for i, w := range list {
		out[i] = copyWebhook(w)
	}
	return out
}

// ListApps returns the ids of apps with webhooks, sorted.
func (s *PostgresStore) ListApps(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT app_id FROM webhooks ORDER BY app_id`)
	if err != nil {
		return nil, pgErr("listing apps", err)
	}
	apps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgErr("listing apps", err)
	}
	return apps, nil
}

// ---- dispatch ----

func (s *PostgresStore) hold(ids []string) {
	s.heldMu.Lock()
	for _, id := range ids {
		s.held[id] = true
	}
	s.heldMu.Unlock()
}

func (s *PostgresStore) unhold(id string) {
	s.heldMu.Lock()
	delete(s.held, id)
	s.heldMu.Unlock()
}

func (s *PostgresStore) heldIDs() []string {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	ids := make([]string, 0, len(s.held))
	for id := range s.held {
		ids = append(ids, id)
	}
	return ids
}

// claimPage is how many candidates one scan of Claim locks at least.
const claimPage = 32

// Claim leases due deliveries to this sidecar. Candidates are locked with
// FOR UPDATE SKIP LOCKED, so sidecars claiming at once split them instead
// of waiting on each other, and are leased only once admit accepts them.
// A webhook admit refuses is left out of the following scans, so a
// backlog behind one slow endpoint cannot hide the others' due deliveries.
func (s *PostgresStore) Claim(ctx context.Context, now time.Time, limit int, admit func(string) bool) ([]*Job, time.Time, error) {
	type pick struct{ id, webhookID string }
	var picked []pick
	// Once admit has accepted a delivery the dispatcher counts it in
	// flight until the job comes back, so on a failure every admitted
	// delivery is still returned, as a job without an event id, which the
	// dispatcher releases at once (Release is a no-op for it here).
	fail := func(what string, err error) ([]*Job, time.Time, error) {
		jobs := make([]*Job, len(picked))
		for i, p := range picked {
			jobs[i] = &Job{Delivery: &Delivery{ID: p.id, WebhookID: p.webhookID}}
		}
		return jobs, time.Time{}, pgErr(what, err)
	}

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fail("claiming deliveries", err)
	}
	defer tx.Rollback(context.Background())
	// A lease lost in a crash only makes the delivery claimable again.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fail("claiming deliveries", err)
	}

	// Never nil: pgx sends a nil slice as NULL, and "<> ALL (NULL)" is
	// never true.
	exclude := s.heldIDs()
	refused := []string{}
	refusedSet := map[string]bool{}
	page := max(limit, claimPage)
	for len(picked) < limit {
		rows, err := tx.Query(ctx, `SELECT id, webhook_id FROM deliveries
			WHERE status = 'pending' AND next_attempt_at <= $1
				AND (lease_until IS NULL OR lease_until < clock_timestamp())
				AND id <> ALL($2) AND webhook_id <> ALL($3)
			ORDER BY next_attempt_at
			LIMIT $4
			FOR UPDATE SKIP LOCKED`, now, exclude, refused, page)
		if err != nil {
			return fail("claiming deliveries", err)
		}
		var n int
		var id, hook string
		_, err = pgx.ForEachRow(rows, []any{&id, &hook}, func() error {
			n++
			if len(picked) >= limit || refusedSet[hook] {
				return nil
			}
			if admit(hook) {
				picked = append(picked, pick{id, hook})
				exclude = append(exclude, id)
			} else {
				refusedSet[hook] = true
				refused = append(refused, hook)
			}
			return nil
		})
		if err != nil {
			return fail("claiming deliveries", err)
		}
		if n < page {
			break
		}
	}

	var jobs []*Job
	if len(picked) > 0 {
		ids := make([]string, len(picked))
		for i, p := range picked {
			ids[i] = p.id
		}
		rows, err := tx.Query(ctx, `WITH d AS (
				UPDATE deliveries SET lease_owner = $2,
					lease_until = clock_timestamp() + $3 * interval '1 microsecond'
				WHERE id = ANY($1)
				RETURNING *)
			SELECT `+pgDeliveryCols+`, `+pgWebhookColsW+`, `+pgEventCols+`
			FROM d JOIN webhooks w ON w.id = d.webhook_id
				LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()`,
			ids, s.owner, micros(s.opts.Lease))
		if err != nil {
			return fail("leasing deliveries", err)
		}
		byID := make(map[string]*Job, len(ids))
		for rows.Next() {
			var ds deliveryScan
			var ws webhookScan
			var es eventScan
			if err := rows.Scan(slices.Concat(ds.targets(), ws.targets(), es.targets())...); err != nil {
				rows.Close()
				return fail("reading claimed deliveries", err)
			}
			d, since, err := ds.result()
			if err != nil {
				rows.Close()
				return fail("reading claimed deliveries", err)
			}
			byID[d.ID] = &Job{Delivery: d, Event: es.result(), Webhook: ws.result(), Due: timeOrZero(d.NextAttemptAt), PendingSince: since,
				EventExpires: timeOrZero(es.expiresAt)}
		}
		if err := rows.Err(); err != nil {
			return fail("leasing deliveries", err)
		}
		jobs = make([]*Job, len(picked))
		for i, p := range picked {
			if j := byID[p.id]; j != nil {
				jobs[i] = j
			} else {
				// Cannot happen while the row is locked; be safe anyway.
				jobs[i] = &Job{Delivery: &Delivery{ID: p.id, WebhookID: p.webhookID}}
			}
		}
	}

	next, err := s.nextDue(ctx, tx, now)
	if err != nil {
		return fail("finding the next due delivery", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("committing claims", err)
	}
	held := make([]string, 0, len(jobs))
	for _, j := range jobs {
		if j.Delivery.EventID != "" {
			held = append(held, j.Delivery.ID)
		}
	}
	s.hold(held)
	if len(jobs) >= limit {
		next = now
	}
	return jobs, next, nil
}

// nextDue says when Claim may next find work: the next pending delivery
// falling due, the next lease running out, and at the latest PollInterval
// from now, since other sidecars queue work this one is not told about.
func (s *PostgresStore) nextDue(ctx context.Context, tx pgx.Tx, now time.Time) (time.Time, error) {
	var due *time.Time
	var leaseLeft *float64
	err := tx.QueryRow(ctx, `SELECT
			(SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending' AND next_attempt_at > $1),
			(SELECT extract(epoch FROM min(lease_until) - clock_timestamp())::float8 FROM deliveries
				WHERE lease_until > clock_timestamp())`, now).Scan(&due, &leaseLeft)
	if err != nil {
		return time.Time{}, err
	}
	next := now.Add(s.opts.PollInterval)
	if due != nil && due.Before(next) {
		next = *due
	}
	if leaseLeft != nil {
		if t := now.Add(time.Duration(*leaseLeft * float64(time.Second))); t.Before(next) {
			next = t
		}
	}
	return next, nil
}

// webhookScan holds the scan targets of pgWebhookCols when a join may
// find no webhook.
type webhookScan struct {
	id, appID, name, url    *string
	events                  []string
	enabled                 *bool
	secret, prev            *string
	prevUntil, failingSince *time.Time
	reason                  *string
	created, updated        *time.Time
}

func (x *webhookScan) targets() []any {
	return []any{&x.id, &x.appID, &x.name, &x.url, &x.events, &x.enabled, &x.secret, &x.prev,
		&x.prevUntil, &x.failingSince, &x.reason, &x.created, &x.updated}
}

func (x *webhookScan) result() *Webhook {
	if x.id == nil {
		return nil
	}
	return &Webhook{
		ID: *x.id, AppID: *x.appID, Name: *x.name, URL: *x.url, Events: x.events, Enabled: *x.enabled,
		Secret: *x.secret, PreviousSecret: *x.prev, PreviousSecretUntil: timeOrZero(x.prevUntil),
		FailingSince: timeOrZero(x.failingSince), DisabledReason: *x.reason,
		CreatedAt: timeOrZero(x.created), UpdatedAt: timeOrZero(x.updated),
	}
}

// Save writes the delivery back after an attempt and ends the lease,
// provided this sidecar still holds it.
func (s *PostgresStore) Save(ctx context.Context, j *Job) error {
	d := j.Delivery
	defer s.unhold(d.ID)
	attempts, err := attemptsJSON(d.Attempts)
	if err != nil {
		return fmt.Errorf("encoding delivery %s: %w", d.ID, err)
	}
	var next time.Time
	if d.NextAttemptAt != nil {
		next = *d.NextAttemptAt
	}
	// An attempt's record need not wait for the WAL flush: lost in a
	// crash, the delivery is attempted again (at least once, as with the
	// embedded store), so each save does not pay an fsync.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	// A finished delivery leaves the pending set and starts its retention;
	// a pending one keeps the pending_since it had.
	tag, err := tx.Exec(ctx, `UPDATE deliveries SET status = $3, next_attempt_at = $4, round = $5,
			resend = $6, attempts = $7::jsonb, lease_owner = NULL, lease_until = NULL,
			pending_since = CASE WHEN $3 = 'pending' THEN pending_since END,
			expires_at = CASE WHEN $3 <> 'pending' THEN now() + $8 * interval '1 microsecond' END
		WHERE id = $1 AND lease_owner = $2`,
		d.ID, s.owner, string(d.Status), nullTime(next), int32(d.Round), d.Resend, attempts,
		micros(time.Duration(s.history.Load())))
	if err == nil && tag.RowsAffected() == 1 && j.Event != nil && !j.EventExpires.IsZero() {
		// The delivery is to outlive its event: keep the event as long as
		// one ingested at the next attempt.
		now, history := time.Now(), time.Duration(s.history.Load())
		if until := eventExpiry(j, now, history); j.EventExpires.Before(until) {
			_, err = tx.Exec(ctx, `UPDATE events SET expires_at = $2 WHERE id = $1 AND expires_at < $2`,
				j.Event.ID, until.Add(time.Duration(s.events.Load())-history))
		}
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1)`, d.ID).Scan(&exists); err != nil {
		return pgErr(fmt.Sprintf("saving delivery %s", d.ID), err)
	}
	if !exists {
		// Its webhook was deleted while the attempt ran; the history went
		// with it, as in the embedded store.
		return nil
	}
	return fmt.Errorf("saving delivery %s: %w", d.ID, errLeaseLost)
}

// Release ends this sidecar's lease without an attempt; the delivery is
// due again at once.
func (s *PostgresStore) Release(ctx context.Context, j *Job) error {
	defer s.unhold(j.Delivery.ID)
	if _, err := s.pool.Exec(ctx, `UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2`, j.Delivery.ID, s.owner); err != nil {
		return pgErr(fmt.Sprintf("releasing delivery %s", j.Delivery.ID), err)
	}
	return nil
}

// ---- history ----

// Deliveries pages through a webhook's history, newest first; the cursor
// is the id of the last delivery of the previous page.
func (s *PostgresStore) Deliveries(ctx context.Context, appID, webhookID string, f DeliveryFilter) ([]*Delivery, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 20
	}
	rows, err := s.pool.Query(ctx, `SELECT `+pgDeliveryCols+` FROM deliveries d
		WHERE d.webhook_id = $1 AND d.app_id = $2
			AND (d.expires_at IS NULL OR d.expires_at > now())
			AND ($3 = '' OR d.status = $3)
			AND ($4 = '' OR d.event = $4)
			AND ($5 = '' OR d.id < $5)
		ORDER BY d.id DESC
		LIMIT $6`, webhookID, appID, string(f.Status), f.Event, f.Cursor, limit+1)
	if err != nil {
		return nil, "", pgErr("listing deliveries", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Delivery, error) {
		d, _, err := scanDelivery(r)
		return d, err
	})
	if err != nil {
		return nil, "", pgErr("listing deliveries", err)
	}
	var cursor string
	if len(out) > limit {
		out = out[:limit]
		cursor = out[limit-1].ID
	}
	return out, cursor, nil
}

// Delivery returns one delivery and its event (nil once expired).
func (s *PostgresStore) Delivery(ctx context.Context, appID, webhookID, id string) (*Delivery, *Event, error) {
	var ds deliveryScan
	var es eventScan
	err := s.pool.QueryRow(ctx, `SELECT `+pgDeliveryCols+`, `+pgEventCols+` FROM deliveries d
			LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()
		WHERE d.id = $1 AND d.webhook_id = $2 AND d.app_id = $3
			AND (d.expires_at IS NULL OR d.expires_at > now())`,
		id, webhookID, appID).Scan(slices.Concat(ds.targets(), es.targets())...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, pgErr("reading delivery", err)
	}
	d, _, err := ds.result()
	if err != nil {
		return nil, nil, err
	}
	return d, es.result(), nil
}

func (s *PostgresStore) webhookExists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, appID, webhookID string) error {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1 AND app_id = $2)`,
		webhookID, appID).Scan(&exists); err != nil {
		return pgErr("reading webhook", err)
	}
	if !exists {
		return ErrNotFound
	}
	return nil
}

// Requeue makes finished deliveries pending again, due now, all or none:
// the first unknown id or refusal of check aborts the whole call.
func (s *PostgresStore) Requeue(ctx context.Context, appID, webhookID string, ids []string, now time.Time, check func(*Delivery) error) ([]*Delivery, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, pgErr("requeueing", err)
	}
	defer tx.Rollback(context.Background())
	if err := s.webhookExists(ctx, tx, appID, webhookID); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT `+pgDeliveryCols+`, e.id IS NOT NULL FROM deliveries d
			LEFT JOIN events e ON e.id = d.event_id AND e.expires_at > now()
		WHERE d.webhook_id = $1 AND d.id = ANY($2)
			AND (d.expires_at IS NULL OR d.expires_at > now())
		FOR UPDATE OF d`, webhookID, ids)
	if err != nil {
		return nil, pgErr("requeueing", err)
	}
	type found struct {
		d        *Delivery
		hasEvent bool
	}
	byID := map[string]found{}
	for rows.Next() {
		var ds deliveryScan
		var hasEvent bool
		if err := rows.Scan(append(ds.targets(), &hasEvent)...); err != nil {
			rows.Close()
			return nil, pgErr("requeueing", err)
		}
		d, _, err := ds.result()
		if err != nil {
			rows.Close()
			return nil, err
		}
		byID[d.ID] = found{d, hasEvent}
	}
	if err := rows.Err(); err != nil {
		return nil, pgErr("requeueing", err)
	}
	var out []*Delivery
	var eventIDs []string
	for _, id := range ids {
		f, ok := byID[id]
		if !ok || f.d.AppID != appID {
			return nil, ErrNotFound
		}
		d := f.d
		if err := check(d); err != nil {
			return nil, err
		}
		if !f.hasEvent {
			return nil, fmt.Errorf("the event of delivery %s is no longer retained: %w", id, ErrConflict)
		}
		// d is shared by a repeated id, which check then sees pending.
		n := now
		d.Status, d.NextAttemptAt, d.Resend, d.Round = StatusPending, &n, true, 0
		out = append(out, d)
		eventIDs = append(eventIDs, d.EventID)
	}
	if len(out) > 0 {
		reqIDs := make([]string, len(out))
		for i, d := range out {
			reqIDs[i] = d.ID
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE deliveries SET status = 'pending', next_attempt_at = $2, resend = true, round = 0,
				pending_since = $2, expires_at = NULL, lease_owner = NULL, lease_until = NULL
			WHERE id = ANY($1)`, reqIDs, now)
		// The event must outlive the delivery's new attempt.
		b.Queue(`UPDATE events SET expires_at = greatest(expires_at, now() + $2 * interval '1 microsecond')
			WHERE id = ANY($1)`, eventIDs, micros(time.Duration(s.events.Load())))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, pgErr("requeueing", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, pgErr("committing requeue", err)
	}
	return out, nil
}

// FailedSince lists a webhook's failed deliveries created since a time,
// oldest first.
func (s *PostgresStore) FailedSince(ctx context.Context, appID, webhookID string, since time.Time) ([]string, error) {
	if err := s.webhookExists(ctx, s.pool, appID, webhookID); err != nil {
		return nil, err
	}
	// The database keeps microseconds; truncating since the same way keeps
	// a delivery created at exactly since.
	rows, err := s.pool.Query(ctx, `SELECT id FROM deliveries
		WHERE webhook_id = $1 AND status = 'failed' AND created_at >= $2
			AND (expires_at IS NULL OR expires_at > now())
		ORDER BY id`, webhookID, since.Truncate(time.Microsecond))
	if err != nil {
		return nil, pgErr("listing failed deliveries", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgErr("listing failed deliveries", err)
	}
	return ids, nil
}

// Stats counts pending deliveries (in flight included) across the fleet.
func (s *PostgresStore) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(pending_since), pg_database_size(current_database()) FROM deliveries WHERE status = 'pending'`).
		Scan(&st.Pending, &oldest, &st.StoreBytes); err != nil {
		return Stats{}, pgErr("counting pending deliveries", err)
	}
	st.OldestPending = timeOrZero(oldest)
	return st, nil
}

// ---- retention ----

func (s *PostgresStore) cleanupLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CleanupInterval)
		go func() {
			// Stop interrupts a long cleanup instead of holding up Close.
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, err := s.deleteExpired(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("deleting expired webhook history", zap.Error(err))
		}
		cancel()
	}
}

// deleteExpired deletes what has outlived its retention, a thousand rows a
// transaction so no delete holds locks for long. SKIP LOCKED lets the
// sidecars of a fleet share the work instead of queueing on the same rows.
func (s *PostgresStore) deleteExpired(ctx context.Context) (int64, error) {
	var total int64
	for _, table := range []string{"deliveries", "events", "idempotency"} {
		for {
			tag, err := s.pool.Exec(ctx, `DELETE FROM `+table+` WHERE ctid IN (
				SELECT ctid FROM `+table+` WHERE expires_at <= now() LIMIT 1000 FOR UPDATE SKIP LOCKED)`)
			if err != nil {
				return total, fmt.Errorf("deleting expired %s: %w", table, err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < 1000 {
				break
			}
		}
	}
	return total, nil
}

var _ Store = (*PostgresStore)(nil)
