package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the management API on Caddy's admin endpoint, under
// /webhooks/, for local operations:
//
//	curl localhost:2019/webhooks/apps/my-app/webhooks
//
// Caddy replaces the admin endpoint with the new config's before it loads
// the config's apps, and keeps the replacement when the load then fails.
// So the routes serve the webhooks app of the config that is running, and
// this config's own app only until one runs (a first start); and the
// metrics are registered into this config's registry, which the admin
// endpoint's /metrics serves from now on, whether the load succeeds or not.
type adminAPI struct {
	app *App // of this config; nil if it has none or it failed to load
	api *api
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.webhooks",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision finds the webhooks app, if this config or the running one has
// one; it does not create one that is not configured.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	app, err := ctx.AppIfConfigured("webhooks")
	switch {
	case err == nil:
		a.app = app.(*App)
	case errors.Is(err, caddy.ErrNotConfigured) && runningApp() == nil:
		// The routes answer 404.
		return nil
	}
	// err is this config's app failing to load, which fails the whole
	// load: the running config keeps serving, through these routes too.
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	a.api = newAPI(a.outbox, ctx.Logger(a))
	return nil
}

// outbox is the running config's outbox, or before one runs, this
// config's.
func (a *adminAPI) outbox() *outbox.Outbox {
	if app := runningApp(); app != nil {
		if ob := app.Outbox(); ob != nil {
			return ob
		}
	}
	if a.app != nil {
		return a.app.Outbox()
	}
	return nil
}

// runningApp is the webhooks app of the config Caddy is running, or nil.
func runningApp() *App {
	app, err := caddy.ActiveContext().AppIfConfigured("webhooks")
	if err != nil {
		return nil
	}
	return app.(*App)
}

// Routes returns the admin routes of the webhooks app.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/webhooks/",
		Handler: caddy.AdminHandlerFunc(a.serve),
	}}
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if a.api == nil || (a.app == nil && runningApp() == nil) {
		// Written here rather than returned as a caddy.APIError (which
		// has the same shape), so an unconfigured app logs no error.
		writeError(w, http.StatusNotFound, "webhooks app is not configured")
		return nil
	}
	a.api.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
