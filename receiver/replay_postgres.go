package receiver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

//go:embed replay_postgres.sql
var replaySchema string

// replayStoragePool shares the connections to each replay_storage database
// among the handlers that name it and across config reloads, so a reload
// neither reconnects nor stops the cleanup.
var replayStoragePool = caddy.NewUsagePool()

const (
	// replayLease is how long a claim holds a delivery id without a sign of
	// life from its receiver. A receiver that dies mid-delivery blocks the
	// id (409 to retries) for at most this long; then another takes over.
	replayLease = 60 * time.Second
	// replayRenewEvery extends the lease of a claim whose backend is still
	// working, so a slow backend is not mistaken for a dead receiver.
	replayRenewEvery = replayLease / 3
	// replayQueryTimeout bounds each round trip to the database: one that
	// hangs gets senders a 503 in seconds rather than holding them.
	replayQueryTimeout = 5 * time.Second
	// replayConnectTimeout applies when the DSN sets no connect_timeout;
	// without one, a database host that drops packets would hold requests
	// for the operating system's TCP timeout.
	replayConnectTimeout = 5 * time.Second

	replayCleanupEvery = time.Minute
	replayCleanupBatch = 1000

	// replayLockKey serialises the schema's creation among receivers that
	// start together ("webhookr"; the sender's migrations use another key).
	replayLockKey int64 = 0x77656268_6f6f6b72
)

// errClaimLost is a finish after another receiver took the claim over,
// because the lease ran out before the backend answered.
var errClaimLost = errors.New("the claim's lease ran out and another receiver took the delivery over")

// isPostgresURL reports whether dsn is the URL form of a PostgreSQL DSN.
func isPostgresURL(dsn string) bool {
	u, err := url.Parse(dsn)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Opaque == ""
}

// replayStorageKey names a database in replayStoragePool. The DSN is hashed
// so that its password is not kept in the pool's keys.
func replayStorageKey(dsn string) string {
	sum := sha256.Sum256([]byte(dsn))
	return "webhook_verify.replay_storage:" + hex.EncodeToString(sum[:])
}

// postgresReplay is a replay window's memory in PostgreSQL, one row per
// delivery: the first receiver to insert a key forwards the delivery, and
// the others see its row, in flight or done.
//
// Times are the receivers' own clocks, as the tolerance of timestamped
// schemes already assumes; a skew of seconds moves the end of a 60 s lease
// or a window of hours by as much.
type postgresReplay struct {
	pool        *pgxpool.Pool
	logger      *zap.Logger
	schemaReady atomic.Bool

	stop chan struct{}
	done chan struct{}
}

// openPostgresReplay makes the pool for dsn and starts the cleanup. It
// does not connect: a database that is down when Caddy starts, or when
// `caddy validate` runs, costs 503s later, not the config.
func openPostgresReplay(dsn string, logger *zap.Logger) (*postgresReplay, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx leaves the password out of its parse errors.
		return nil, fmt.Errorf("parsing the DSN: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = replayConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "caddy-webhooks receiver"
	}
	// The pool outlives the config that opened it, so it must not end with
	// that config's context.
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the connection pool: %w", err)
	}
	s := &postgresReplay{
		pool:   pool,
		logger: logger,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.cleanupLoop()
	return s, nil
}

// ensureSchema creates the table on first use. Until that succeeds, each
// request tries again, so a receiver started while the database was down
// recovers by itself.
func (s *postgresReplay) ensureSchema(ctx context.Context) error {
	if s.schemaReady.Load() {
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("creating the replay table: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, replayLockKey); err != nil {
		return fmt.Errorf("locking to create the replay table: %w", err)
	}
	// Without arguments pgx sends the file with the simple protocol, which
	// runs several statements.
	if _, err := tx.Exec(ctx, replaySchema); err != nil {
		return fmt.Errorf("creating the replay table: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("creating the replay table: %w", err)
	}
	s.schemaReady.Store(true)
	return nil
}

// The states the claim statements return are replayState values.
const (
	// claimSQL inserts an in-flight row, or takes over a row whose window
	// or lease is over, and returns 0 (replayNew); otherwise it returns the
	// row's state, 1 (replaySeen) or 2 (replayInFlight). The existing row
	// is read from the statement's snapshot, which misses one committed
	// while the insert waited on it: then nothing is returned.
	claimSQL = `
WITH claimed AS (
	INSERT INTO webhook_verify_replay AS r (key, done, claim, expires_at)
	VALUES ($1, false, $2, $3)
	ON CONFLICT (key) DO UPDATE
		SET done = false, claim = EXCLUDED.claim, expires_at = EXCLUDED.expires_at
		WHERE r.expires_at <= $4
	RETURNING 0 AS state
)
SELECT state FROM claimed
UNION ALL
SELECT CASE WHEN done THEN 1 ELSE 2 END FROM webhook_verify_replay
WHERE key = $1 AND expires_at > $4 AND NOT EXISTS (SELECT 1 FROM claimed)`

	stateSQL = `SELECT CASE WHEN done THEN 1 ELSE 2 END FROM webhook_verify_replay
WHERE key = $1 AND expires_at > $2`

	renewSQL = `UPDATE webhook_verify_replay SET expires_at = $3
WHERE key = $1 AND claim = $2 AND NOT done`

	doneSQL = `UPDATE webhook_verify_replay SET done = true, expires_at = $3
WHERE key = $1 AND claim = $2`

	releaseSQL = `DELETE FROM webhook_verify_replay WHERE key = $1 AND claim = $2`

	cleanupSQL = `DELETE FROM webhook_verify_replay WHERE key IN (
	SELECT key FROM webhook_verify_replay WHERE expires_at < $1 LIMIT $2)`
)

func (s *postgresReplay) begin(ctx context.Context, key replayKey, now time.Time) (replayState, replayClaim, error) {
	ctx, cancel := context.WithTimeout(ctx, replayQueryTimeout)
	defer cancel()
	if err := s.ensureSchema(ctx); err != nil {
		return 0, nil, err
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	// Each pass either decides or finds that the row it met has gone (its
	// forward failed) or expired meanwhile, when claiming again may win.
	for range 3 {
		var state int
		err := s.pool.QueryRow(ctx, claimSQL, key[:], token, now.Add(replayLease), now).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			err = s.pool.QueryRow(ctx, stateSQL, key[:], now).Scan(&state)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
		}
		if err != nil {
			return 0, nil, fmt.Errorf("claiming a delivery id: %w", err)
		}
		if replayState(state) != replayNew {
			return replayState(state), nil, nil
		}
		c := &postgresClaim{s: s, key: key, token: token, base: now, started: time.Now()}
		c.mu.Lock()
		c.timer = time.AfterFunc(replayRenewEvery, c.renew)
		c.mu.Unlock()
		return replayNew, c, nil
	}
	// The id is contended this very moment; the sender's retry decides.
	return replayInFlight, nil, nil
}

// postgresClaim is a delivery this receiver is forwarding.
type postgresClaim struct {
	s     *postgresReplay
	key   replayKey
	token []byte
	// base is the handler's time at the claim; renewals add the time
	// passed since, so a test clock moves leases as it moves windows.
	base    time.Time
	started time.Time

	mu    sync.Mutex
	timer *time.Timer
	ended bool
}

// renew extends the lease while the backend works. A renewal that races
// finish is harmless: it touches only this claim's row, and only in flight.
func (c *postgresClaim) renew() {
	ctx, cancel := context.WithTimeout(context.Background(), replayQueryTimeout)
	defer cancel()
	expires := c.base.Add(time.Since(c.started) + replayLease)
	if _, err := c.s.pool.Exec(ctx, renewSQL, c.key[:], c.token, expires); err != nil {
		c.s.logger.Warn("extending the lease of a delivery being forwarded", zap.Error(err))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		c.timer.Reset(replayRenewEvery)
	}
}

func (c *postgresClaim) finish(ctx context.Context, delivered bool, now time.Time, window time.Duration) error {
	c.mu.Lock()
	c.ended = true
	c.timer.Stop()
	c.mu.Unlock()
	// The sender may have gone already; what the backend did must still
	// be recorded.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replayQueryTimeout)
	defer cancel()
	if !delivered {
		if _, err := c.s.pool.Exec(ctx, releaseSQL, c.key[:], c.token); err != nil {
			return fmt.Errorf("releasing a delivery id the backend refused (it stays claimed until its lease runs out): %w", err)
		}
		return nil
	}
	tag, err := c.s.pool.Exec(ctx, doneSQL, c.key[:], c.token, now.Add(window))
	if err != nil {
		return fmt.Errorf("recording a delivery as done (a retry after its lease runs out may be forwarded again): %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errClaimLost
	}
	return nil
}

// cleanupLoop deletes expired rows each minute. Every receiver of a fleet
// runs it; the passes overlap harmlessly.
func (s *postgresReplay) cleanupLoop() {
	defer close(s.done)
	t := time.NewTicker(replayCleanupEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if !s.schemaReady.Load() {
			continue
		}
		if err := s.deleteExpired(time.Now()); err != nil {
			s.logger.Warn("deleting expired delivery ids", zap.Error(err))
		}
	}
}

// deleteExpired deletes the rows expired at now, in batches so that no
// statement holds many row locks or runs long.
func (s *postgresReplay) deleteExpired(now time.Time) error {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), replayQueryTimeout)
		tag, err := s.pool.Exec(ctx, cleanupSQL, now, replayCleanupBatch)
		cancel()
		if err != nil {
			return err
		}
		if tag.RowsAffected() < replayCleanupBatch {
			return nil
		}
	}
}

// Destruct stops the cleanup and closes the connections, once no config
// uses the database any more.
func (s *postgresReplay) Destruct() error {
	close(s.stop)
	<-s.done
	s.pool.Close()
	return nil
}

// describeDSN names the database of dsn for logs, without its password.
func describeDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "replay_storage"
	}
	return u.Host + "/" + strings.TrimPrefix(u.Path, "/")
}

// Interface guards
var (
	_ replayStore      = (*postgresReplay)(nil)
	_ replayClaim      = (*postgresClaim)(nil)
	_ caddy.Destructor = (*postgresReplay)(nil)
)
