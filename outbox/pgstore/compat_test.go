package pgstore

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// A database written by the first release (testdata/v1.sql) migrates and
// serves its webhooks and history.
func TestReadsFirstReleaseDatabase(t *testing.T) {
	dsn := pgtest.DSN(t)
	sql, err := os.ReadFile("testdata/v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), string(sql)); err != nil {
		t.Fatalf("loading the fixture: %v", err)
	}
	conn.Close(context.Background())
	storetest.CheckV1Fixture(t, openPostgres(t, dsn, Options{}))
}
