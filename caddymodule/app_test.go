package caddymodule

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func provision(t *testing.T, a *App) (caddy.Context, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		return ctx, err
	}
	return ctx, a.Validate()
}

func TestAppProvision(t *testing.T) {
	key32 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	t.Setenv("TEST_WEBHOOKS_KEY", key32)
	t.Setenv("TEST_WEBHOOKS_EMPTY", "")

	for _, tc := range []struct {
		name string
		app  *App
		err  string
	}{
		{name: "defaults", app: &App{}},
		{name: "postgres shorthand", app: &App{StorageRaw: storageJSON(`"postgres://u:pw@db/webhooks"`)}},
		{name: "directory shorthand", app: &App{StorageRaw: storageJSON(`"rel/dir"`)}},
		{name: "postgres", app: &App{StorageRaw: storageJSON(`{"module":"postgres","dsn":"postgres://u:pw@db/webhooks"}`)}},
		{name: "postgres without dsn", app: &App{StorageRaw: storageJSON(`{"module":"postgres"}`)}, err: "dsn: required"},
		{name: "postgres with a path", app: &App{StorageRaw: storageJSON(`{"module":"postgres","dsn":"/var/lib/x"}`)}, err: "dsn: must be a postgres://"},
		{name: "postgres with key", app: &App{StorageRaw: storageJSON(`{"module":"postgres","dsn":"postgres://u:pw@db/webhooks","encryption_key":"` + key32 + `"}`)}, err: `unknown field "encryption_key"`},
		{name: "unknown storage", app: &App{StorageRaw: storageJSON(`{"module":"redis"}`)}, err: "webhooks.storage.redis"},
		{name: "bad CIDR", app: &App{AllowDestinations: []string{"10.0.0.0/99"}}, err: "allow_destinations"},
		{name: "key", app: &App{StorageRaw: badgerKey(key32)}},
		{name: "key from env", app: &App{StorageRaw: badgerKey("{env.TEST_WEBHOOKS_KEY}")}},
		{name: "key from empty env", app: &App{StorageRaw: badgerKey("{env.TEST_WEBHOOKS_EMPTY}")}, err: "empty"},
		{name: "short key", app: &App{StorageRaw: badgerKey(base64.StdEncoding.EncodeToString([]byte("short")))}, err: "16, 24 or 32"},
		{name: "key not base64", app: &App{StorageRaw: badgerKey("not base64!")}, err: "base64"},
		{name: "negative timeout", app: &App{Timeout: caddy.Duration(-time.Second)}, err: "timeout"},
		{name: "negative retry", app: &App{RetrySchedule: []caddy.Duration{caddy.Duration(-time.Second)}}, err: "retry_schedule"},
		{name: "duplicate event", app: &App{Events: []string{"a", "a"}}, err: "events"},
		{name: "negative workers", app: &App{Workers: -1}, err: "workers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.app)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("provision: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("provision error = %v, want one containing %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("error echoes the DSN: %v", err)
			}
		})
	}
}

func storageJSON(s string) json.RawMessage { return json.RawMessage(s) }

func badgerKey(key string) json.RawMessage {
	return storageJSON(`{"module":"badger","encryption_key":"` + key + `"}`)
}

func TestAppOptions(t *testing.T) {
	a := &App{
		StorageRaw:        storageJSON(`{"module":"badger","path":"rel/dir"}`),
		Events:            []string{"x"},
		RetrySchedule:     []caddy.Duration{caddy.Duration(time.Second)},
		AllowDestinations: []string{"10.1.2.3/8", "192.168.1.7", "::1"},
		Workers:           3,
	}
	if _, err := provision(t, a); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if dir := a.storage.StorageKey(); dir != filepath.Join(wd, "rel", "dir") {
		t.Errorf("storage dir = %q, want it absolute", dir)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("::1/128"),
	}
	if !slices.Equal(a.opts.AllowDestinations, want) {
		t.Errorf("allow_destinations = %v, want %v", a.opts.AllowDestinations, want)
	}
	if a.opts.Workers != 3 || !slices.Equal(a.opts.Events, []string{"x"}) || !slices.Equal(a.opts.RetrySchedule, []time.Duration{time.Second}) {
		t.Errorf("options = %+v", a.opts)
	}
	if a.maxBody != 1_000_000 {
		t.Errorf("max body = %d, want the 1MB default", a.maxBody)
	}
	if a.Outbox() != nil {
		t.Errorf("the outbox exists before Start")
	}
	if _, err := os.Stat(a.storage.StorageKey()); !os.IsNotExist(err) {
		t.Errorf("provision touched the storage dir: %v", err)
	}
}

// TestMetricsReRegisterOnReload provisions the app in two configs, as a
// reload does: both registries must show the metrics, and neither
// provision may fail.
func TestMetricsReRegisterOnReload(t *testing.T) {
	for i := range 2 {
		ctx, err := provision(t, &App{})
		if err != nil {
			t.Fatalf("provision %d: %v", i+1, err)
		}
		// Provisioning again into the same registry is no error.
		if err := (&App{}).Provision(ctx); err != nil {
			t.Fatalf("provision %d again: %v", i+1, err)
		}
		families, err := ctx.GetMetricsRegistry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range families {
			names = append(names, f.GetName())
		}
		for _, want := range []string{
			"caddy_webhooks_events_received_total",
			"caddy_webhooks_delivery_attempts_total",
			"caddy_webhooks_deliveries_failed_total",
			"caddy_webhooks_outbox_pending",
			"caddy_webhooks_outbox_oldest_pending_seconds",
		} {
			if !slices.Contains(names, want) {
				t.Errorf("config %d: metrics registry lacks %s", i+1, want)
			}
		}
	}
}
