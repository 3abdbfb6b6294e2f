package receiver

import (
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-webhooks/caddy-webhooks/internal/bodysize"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("webhook_verify", parseCaddyfile)
	// Verification must come before the request is proxied, and users
	// should not need an order line for that.
	httpcaddyfile.RegisterDirectiveOrder("webhook_verify", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	v := new(Handler)
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return v, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	webhook_verify [<matcher>] {
//	    secret <secret>...          # one or more, and repeatable: any one may match
//	    scheme x-signature|standard|github|stripe|shopify|slack
//	    header <name>               # the header that carries the signature
//	    max_body <size>             # default 1MB
//	    read_timeout <duration>     # default 10s: how long the body may take
//	    tolerance <duration>        # default 5m
//	    replay_window <duration>    # off by default
//	    replay_storage <dsn>        # postgres://...: share the window's memory
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "secret":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Secrets = append(h.Secrets, args...)

		case "scheme":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if signature.SchemeByName(d.Val()) == nil {
				return d.Errf("scheme: unknown '%s'; want one of %s", d.Val(), strings.Join(signature.SchemeNames(), ", "))
			}
			h.Scheme = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}

		case "header":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Header = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}

		case "max_body":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := bodysize.Parse(d.Val())
			if err != nil {
				return d.Errf("max_body: %v", err)
			}
			h.MaxBody = size
			if d.NextArg() {
				return d.ArgErr()
			}

		case "tolerance", "replay_window", "read_timeout":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if dur <= 0 {
				return d.Errf("%s: must be positive, got %s", opt, time.Duration(dur))
			}
			switch opt {
			case "tolerance":
				h.Tolerance = caddy.Duration(dur)
			case "replay_window":
				h.ReplayWindow = caddy.Duration(dur)
			default:
				h.ReadTimeout = caddy.Duration(dur)
			}
			if d.NextArg() {
				return d.ArgErr()
			}

		case "replay_storage":
			if !d.NextArg() {
				return d.ArgErr()
			}
			// A placeholder is checked once expanded, at provision.
			if !strings.Contains(d.Val(), "{") && !isPostgresURL(d.Val()) {
				return d.Err("replay_storage: must be a postgres:// or postgresql:// URL")
			}
			h.ReplayStorage = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}

		default:
			return d.Errf("unrecognized webhook_verify option '%s'", d.Val())
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
