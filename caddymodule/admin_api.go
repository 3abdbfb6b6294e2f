package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the management API on Caddy's admin endpoint, under
// /webhooks/, for local operations:
//
//	curl localhost:2019/webhooks/apps/my-app/webhooks
type adminAPI struct {
	api *api
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.webhooks",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision finds the webhooks app, if the config has one; it does not
// create one that is not configured.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	app, err := ctx.AppIfConfigured("webhooks")
	if err != nil {
		// Not configured, or it failed to load (which fails the config
		// load anyway): the routes answer 404.
		return nil
	}
	a.api = newAPI(app.(*App).Outbox, ctx.Logger(a))
	return nil
}

// Routes returns the admin routes of the webhooks app.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/webhooks/",
		Handler: caddy.AdminHandlerFunc(a.serve),
	}}
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if a.api == nil {
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
