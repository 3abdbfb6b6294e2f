package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// Storage is a module of the webhooks.storage namespace: where the
// webhooks app keeps webhooks, events and deliveries. Its options are
// fixed for as long as the store stays open, which is across reloads that
// keep the same StorageKey.
type Storage interface {
	// StorageKey identifies the store: configs with the same key share
	// one open store through a reload.
	StorageKey() string
	// Fingerprint covers options a reload cannot change while the store
	// is open (an encryption key). It is compared, never shown.
	Fingerprint() string
	// OpenStore opens the store. attemptTimeout bounds one delivery
	// attempt, which a fleet's leases must outlast.
	OpenStore(logger *zap.Logger, attemptTimeout time.Duration) (outbox.Store, error)
	// String names the store for logs and errors, without secrets.
	String() string
}

// storageShorthand is the storage a bare string names, the way the
// one-line Caddyfile form and early JSON configs give it: a postgres://
// DSN or a directory.
func storageShorthand(s string) (string, json.RawMessage) {
	if isDSN(s) {
		return "postgres", caddyconfig.JSONModuleObject(&PostgresStorage{DSN: s}, "module", "postgres", nil)
	}
	return "badger", caddyconfig.JSONModuleObject(&BadgerStorage{Path: s}, "module", "badger", nil)
}

func isDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// parseStorage reads the storage option:
//
//	storage <dir>|postgres://...
//	storage <module> {
//	    ...
//	}
//
// A block goes to the module's own UnmarshalCaddyfile.
func parseStorage(d *caddyfile.Dispenser) (string, json.RawMessage, error) {
	if !d.NextArg() {
		return "", nil, d.ArgErr()
	}
	arg := d.Val()
	seg := d.NextSegment()
	if len(seg) == 1 {
		if strings.Contains(arg, "{") {
			// A placeholder ({env.WEBHOOKS_DSN}) says which store only
			// once expanded, when the app is provisioned.
			raw, _ := json.Marshal(arg)
			return "", raw, nil
		}
		name, raw := storageShorthand(arg)
		return name, raw, nil
	}
	if seg[1].Text != "{" {
		return "", nil, d.Errf("storage: too many arguments")
	}
	mod, err := caddy.GetModule("webhooks.storage." + arg)
	if err != nil {
		return "", nil, d.Errf("storage: unknown storage module '%s' (this build has %s)", arg, storageModules())
	}
	st, ok := mod.New().(caddyfile.Unmarshaler)
	if !ok {
		return "", nil, d.Errf("storage: module '%s' has no Caddyfile syntax", arg)
	}
	if err := st.UnmarshalCaddyfile(caddyfile.NewDispenser(seg)); err != nil {
		return "", nil, err
	}
	return arg, caddyconfig.JSONModuleObject(st, "module", arg, nil), nil
}

// storageModules lists the storage modules this build has.
func storageModules() string {
	var names []string
	for _, m := range caddy.GetModules("webhooks.storage") {
		names = append(names, m.ID.Name())
	}
	return strings.Join(names, ", ")
}

// loadStorage provisions the app's storage module, the default one
// (Badger in Caddy's data directory) when none is configured.
func (a *App) loadStorage(ctx caddy.Context) (Storage, error) {
	raw := a.StorageRaw
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("storage: %v", err)
		}
		_, raw = storageShorthand(caddy.NewReplacer().ReplaceKnown(s, ""))
	}
	if len(raw) == 0 {
		_, raw = storageShorthand("")
	}
	a.StorageRaw = raw
	mod, err := ctx.LoadModule(a, "StorageRaw")
	if err != nil {
		return nil, fmt.Errorf("loading storage module: %v", err)
	}
	st, ok := mod.(Storage)
	if !ok {
		return nil, fmt.Errorf("storage: module %T is not a webhooks storage", mod)
	}
	return st, nil
}
