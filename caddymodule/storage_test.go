package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// The storage modules' defaults are the ones the README states, and what
// is set in the config wins over them.
func TestStorageDefaults(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name              string
		storage           string
		memTable, minFree int64
	}{
		{"badger defaults", `{"module":"badger"}`, 16 * mib, 64 * mib},
		{"min_free_space follows memtable_size", `{"module":"badger","memtable_size":8388608}`, 8 * mib, 48 * mib},
		{"badger as set", `{"module":"badger","memtable_size":8388608,"min_free_space":1048576}`, 8 * mib, 1 * mib},
		{"directory shorthand", `"rel/dir"`, 16 * mib, 64 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &App{StorageRaw: storageJSON(tc.storage)}
			if _, err := provision(t, a); err != nil {
				t.Fatal(err)
			}
			s := a.storage.(*BadgerStorage)
			if s.memTableSize != tc.memTable || s.minFreeSpace != tc.minFree {
				t.Errorf("memtable_size %d MiB, min_free_space %d MiB; want %d and %d", s.memTableSize/mib, s.minFreeSpace/mib, tc.memTable/mib, tc.minFree/mib)
			}
		})
	}

	for _, tc := range []struct {
		name        string
		app         *App
		lease, poll time.Duration
	}{
		{"postgres defaults", &App{StorageRaw: storageJSON(`{"module":"postgres","dsn":"postgres://db/w"}`)}, 45 * time.Second, time.Second},
		{"lease follows timeout", &App{Timeout: caddy.Duration(20 * time.Second), StorageRaw: storageJSON(`{"module":"postgres","dsn":"postgres://db/w"}`)}, 50 * time.Second, time.Second},
		{"postgres shorthand", &App{StorageRaw: storageJSON(`"postgres://db/w"`)}, 45 * time.Second, time.Second},
		{"postgres as set", &App{Timeout: caddy.Duration(20 * time.Second), StorageRaw: storageJSON(`{"module":"postgres","dsn":"postgres://db/w","lease":"2m","poll_interval":"250ms"}`)},
			2 * time.Minute, 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := provision(t, tc.app); err != nil {
				t.Fatal(err)
			}
			s := tc.app.storage.(*PostgresStorage)
			if lease := s.lease(tc.app.attemptTimeout()); lease != tc.lease || s.pollInterval != tc.poll {
				t.Errorf("lease %s, poll_interval %s; want %s and %s", lease, s.pollInterval, tc.lease, tc.poll)
			}
		})
	}
}
