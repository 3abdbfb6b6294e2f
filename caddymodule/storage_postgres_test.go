package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// startApp provisions the app with storage (a JSON value) as Caddy does,
// checks that it is PostgreSQL storage, sends its logs to an observer, and
// starts it.
func startApp(t *testing.T, storage string) (*App, *zapobserver.ObservedLogs, error) {
	t.Helper()
	a := &App{StorageRaw: json.RawMessage(storage)}
	if _, err := provision(t, a); err != nil {
		return a, nil, err
	}
	if _, ok := a.storage.(*PostgresStorage); !ok {
		// Not started: another storage would write where the DSN points.
		t.Fatalf("storage %s is %T, want PostgreSQL", storage, a.storage)
	}
	core, logs := zapobserver.New(zapcore.DebugLevel)
	a.logger = zap.New(core)
	a.opts.Logger = a.logger
	err := a.Start()
	if err == nil {
		t.Cleanup(func() { a.Stop() })
	}
	return a, logs, err
}

// withScheme gives a postgres:// DSN another scheme.
func withScheme(dsn, scheme string) string {
	return scheme + strings.TrimPrefix(dsn, "postgres")
}

// A postgresql:// DSN connects like a postgres:// one, as the storage
// shorthand and in storage postgres: apps started with each spelling
// share one database.
func TestPostgresStorageSpellings(t *testing.T) {
	dsn := pgtest.DSN(t)
	var apps []*App
	for _, tc := range []struct{ name, storage string }{
		{"postgres:// shorthand", fmt.Sprintf("%q", dsn)},
		{"postgresql:// shorthand", fmt.Sprintf("%q", withScheme(dsn, "postgresql")+"&application_name=shorthand")},
		{"postgresql:// dsn", fmt.Sprintf(`{"module":"postgres","dsn":%q}`, withScheme(dsn, "postgresql")+"&application_name=module")},
	} {
		a, _, err := startApp(t, tc.storage)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		apps = append(apps, a)
	}
	ctx := context.Background()
	name, url, events := "n", "https://example.com/hook", []string{"job_created"}
	w, err := apps[1].Outbox().CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: &name, URL: &url, Events: &events})
	if err != nil {
		t.Fatalf("creating a webhook through the postgresql:// app: %v", err)
	}
	for i, a := range apps {
		if got, err := a.Outbox().GetWebhook(ctx, "app1", w.ID); err != nil || got.ID != w.ID {
			t.Fatalf("app %d does not see the webhook: %v %v", i, got, err)
		}
	}
}

// The DSN's password, in the user info or as pgx's password parameter,
// shows in no error and no log line; the start is logged with the DSN,
// its password hidden.
func TestPostgresStorageHidesPassword(t *testing.T) {
	const password = "pw-that-must-not-show"
	// The test server trusts every connection, so a password is accepted
	// and ignored.
	reachable, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	reachable.User = url.UserPassword("postgres", password)
	inQuery := *reachable
	inQuery.User = url.User("postgres")
	q := inQuery.Query()
	q.Set("password", password)
	inQuery.RawQuery = q.Encode()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String() // nothing listens there once closed
	l.Close()
	unreachable := "postgres://u:" + password + "@" + closed + "/webhooks?connect_timeout=5"

	noPassword := func(t *testing.T, what string, logs *zapobserver.ObservedLogs) {
		t.Helper()
		for _, e := range logs.All() {
			if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, password) {
				t.Errorf("%s: a log line shows the password: %s", what, line)
			}
		}
	}
	for _, tc := range []struct {
		name, dsn string
		fails     bool
	}{
		{"user info", reachable.String(), false},
		{"password parameter", inQuery.String(), false},
		{"unreachable", unreachable, true},
		{"unreachable postgresql://", withScheme(unreachable, "postgresql"), true},
		{"unreachable, password parameter", "postgres://u@" + closed + "/webhooks?password=" + password, true},
		{"unparsable parameter", "postgres://u:" + password + "@" + closed + "/webhooks?pool_max_conns=many", true},
		{"unparsable parameter, password parameter", "postgres://u@" + closed + "/webhooks?password=" + password + "&connect_timeout=soon", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, logs, err := startApp(t, fmt.Sprintf(`{"module":"postgres","dsn":%q}`, tc.dsn))
			if tc.fails {
				if err == nil {
					t.Fatal("started")
				}
				if strings.Contains(err.Error(), password) {
					t.Errorf("the error shows the password: %v", err)
				}
				if !strings.Contains(err.Error(), closed) {
					t.Errorf("the error %q does not name the database's address %s", err, closed)
				}
				noPassword(t, tc.name, logs)
				return
			}
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			started := logs.FilterMessage("webhooks started").All()
			if len(started) != 1 {
				t.Fatalf("%d start lines, want 1", len(started))
			}
			shown, _ := started[0].ContextMap()["storage"].(string)
			if !strings.HasPrefix(shown, "postgres://postgres") || !strings.Contains(shown, reachable.Host) || strings.Contains(shown, password) {
				t.Errorf("the start line shows storage %q, want the DSN with its password hidden", shown)
			}
			noPassword(t, tc.name, logs)
			if got := a.storage.(*PostgresStorage).String(); strings.Contains(got, password) {
				t.Errorf("the storage prints as %q", got)
			}
		})
	}
}
