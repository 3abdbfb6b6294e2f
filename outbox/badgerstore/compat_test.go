package badgerstore

import (
	"os"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

// A directory written by the first release (testdata/v1) opens and serves
// its webhooks and history: records are the store's own, not the API's.
func TestReadsFirstReleaseDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/v1")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckV1Fixture(t, s)
}
