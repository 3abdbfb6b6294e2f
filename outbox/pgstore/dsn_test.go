package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// The pool the store builds: application_name caddy-webhooks, 16
// connections and a 10 s connect timeout unless the DSN says otherwise, in
// which case the DSN's value is kept; the name is what PostgreSQL shows in
// pg_stat_activity, for the pool's connections and the notification one.
func TestPostgresPoolParameters(t *testing.T) {
	dsn := pgtest.DSN(t)
	for _, tc := range []struct {
		name     string
		params   string
		app      string
		maxConns int32
		timeout  time.Duration
	}{
		{"defaults", "", "caddy-webhooks", 16, 10 * time.Second},
		{"from the DSN", "&application_name=billing-sidecar&pool_max_conns=3&connect_timeout=4", "billing-sidecar", 3, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openPostgres(t, dsn+tc.params, Options{})
			cfg := s.pool.Config()
			if cfg.MaxConns != tc.maxConns || cfg.ConnConfig.ConnectTimeout != tc.timeout || cfg.ConnConfig.RuntimeParams["application_name"] != tc.app {
				t.Fatalf("pool of %d connections, connect timeout %v, application_name %q; want %d, %v, %q",
					cfg.MaxConns, cfg.ConnConfig.ConnectTimeout, cfg.ConnConfig.RuntimeParams["application_name"], tc.maxConns, tc.timeout, tc.app)
			}
			ctx := context.Background()
			var name string
			if err := s.pool.QueryRow(ctx, `SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&name); err != nil || name != tc.app {
				t.Fatalf("pg_stat_activity shows application_name %q (%v), want %q", name, err, tc.app)
			}
			wait.Until(t, "the notification connection under the same name", func() bool {
				var n int
				err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE application_name = $1 AND query = 'LISTEN '||$2`, tc.app, pgx.Identifier{s.channel}.Sanitize()).Scan(&n)
				return err == nil && n == 1
			})
		})
	}
}

// Behind PgBouncer in transaction mode the DSN names
// default_query_exec_mode=simple_protocol: every statement of the store
// then runs without prepared statements, and ingest, claim, save, history
// and stats still work.
func TestPostgresSimpleProtocol(t *testing.T) {
	s := openPostgres(t, pgtest.DSN(t)+"&default_query_exec_mode=simple_protocol", Options{})
	ctx := context.Background()
	w := storetest.CreateWebhook(t, s, "a")
	in := storetest.NewIngest("a", "job_created", storetest.EventBody("a", "job_created", 1), "key", w)
	if err := s.Commit(ctx, []*outbox.Ingest{in}); err != nil {
		t.Fatal(err)
	}
	jobs := storetest.Claim(t, s, time.Now(), 10)
	if len(jobs) != 1 || jobs[0].Event == nil || string(jobs[0].Event.Body) != string(in.Event.Body) {
		t.Fatalf("claimed %v", storetest.JobIDs(jobs))
	}
	storetest.Finish(t, s, jobs[0], outbox.StatusSucceeded, 200)
	ds, _, err := s.Deliveries(ctx, "a", w.ID, outbox.DeliveryFilter{Limit: 10})
	if err != nil || len(ds) != 1 || ds[0].Status != outbox.StatusSucceeded {
		t.Fatalf("history %+v %v", ds, err)
	}
	if st := storetest.Stats(t, s); st.Pending != 0 {
		t.Fatalf("pending %d", st.Pending)
	}
	dup := storetest.NewIngest("a", "job_created", in.Event.Body, "key", w)
	if err := s.Commit(ctx, []*outbox.Ingest{dup}); err != nil || !dup.Result.Duplicate {
		t.Fatalf("a repeated key: %+v %v", dup.Result, err)
	}
}

// Only a pool_max_conns the DSN sets keeps the store's default of 16 from
// applying; the word elsewhere, as in a password, does not.
func TestSetsPoolMaxConns(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://u:p@db/x":                                  false,
		"postgres://u:p@db/x?pool_max_conns=3":                 true,
		"postgresql://u@db/x?sslmode=disable&pool_max_conns=3": true,
		"postgres://u:pool_max_conns=9@db/x":                   false,
		"postgres://u@db/x?password=pool_max_conns%3D9":        false,
		"host=db user=u pool_max_conns=3":                      true,
		"host=db pool_max_conns = 3":                           true,
		"pool_max_conns=3 host=db":                             true,
		"host=db user=u password=xpool_max_conns=3":            false,
	} {
		if got := setsPoolMaxConns(dsn); got != want {
			t.Errorf("setsPoolMaxConns(%q) = %v, want %v", dsn, got, want)
		}
	}
}
