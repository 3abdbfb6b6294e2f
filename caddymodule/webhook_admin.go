package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// consolePrefix is where webhook_admin serves the console.
const consolePrefix = "/webhooks/console/"

// Admin serves the management API and the console on a site, so it can sit
// behind Caddy's own auth directives:
//
//	handle /webhooks/* {
//	    basic_auth { admin <hash> }
//	    webhook_admin
//	}
//
// The request path keeps its /webhooks/ prefix (use handle, not
// handle_path). Requests outside /webhooks/ answer 404. It answers every
// request itself and never calls the next handler.
type Admin struct {
	app     *App
	api     *api
	console http.Handler
}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_admin",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Provision finds the webhooks app.
func (h *Admin) Provision(ctx caddy.Context) error {
	app, err := ctx.App("webhooks")
	if err != nil {
		return fmt.Errorf("getting webhooks app: %v", err)
	}
	h.app = app.(*App)
	h.api = newAPI(h.app.Outbox, ctx.Logger())
	h.console = newConsole()
	return nil
}

// ServeHTTP answers a management API or console request.
func (h *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.URL.Path == strings.TrimSuffix(consolePrefix, "/") || strings.HasPrefix(r.URL.Path, consolePrefix) {
		h.console.ServeHTTP(w, r)
		return nil
	}
	h.api.ServeHTTP(w, r)
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	webhook_admin [<matcher>]
func (h *Admin) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("unrecognized webhook_admin option '%s'", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Admin)(nil)
	_ caddyhttp.MiddlewareHandler = (*Admin)(nil)
	_ caddyfile.Unmarshaler       = (*Admin)(nil)
)
