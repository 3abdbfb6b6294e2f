package caddymodule

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-webhooks/caddy-webhooks/internal/bodysize"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("webhooks", parseGlobalOption)

	httpcaddyfile.RegisterDirectiveOrder("webhook_events", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("webhook_events", parseHandler[Events])

	httpcaddyfile.RegisterDirectiveOrder("webhook_admin", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("webhook_admin", parseHandler[Admin])

	httpcaddyfile.RegisterDirectiveOrder("webhook_portal", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("webhook_portal", parseHandler[Portal])
}

// parseGlobalOption sets up the webhooks app from the global option. Syntax:
//
//	webhooks {
//	    storage                   <dir>|postgres://...
//	    storage                   badger|postgres {
//	        ...                    (see BadgerStorage and PostgresStorage)
//	    }
//	    events                    <type>...
//	    retry_schedule            <duration>...
//	    timeout                   <duration>
//	    max_body                  <size>
//	    retention                 <duration>
//	    allow_destinations        <cidr|ip>...
//	    proxy                     <url>
//	    no_proxy                  <host|cidr>...
//	    workers                   <n>
//	    max_in_flight_per_webhook <n>
//	    disable_after             <duration>
//	    rotation_grace            <duration>
//	    encryption_key            <base64 key>
//	    operational_webhook       <url> {
//	        secret        <secret>
//	        failing_after <duration>
//	    }
//	}
//
// encryption_key is shorthand for storage badger's option of that name.//
// events, retry_schedule, allow_destinations and no_proxy may be
// repeated; their values add up.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the webhooks global option may appear only once")
	}
	app := new(App)
	var storageName, encryptionKey string
	d.Next() // consume option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "storage":
			name, raw, err := parseStorage(d)
			if err != nil {
				return nil, err
			}
			storageName, app.StorageRaw = name, raw
		case "events":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Errf("events: want at least one event type")
			}
			app.Events = append(app.Events, args...)
		case "retry_schedule":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Errf("retry_schedule: want at least one duration")
			}
			for _, arg := range args {
				dur, err := caddy.ParseDuration(arg)
				if err != nil {
					return nil, d.Errf("retry_schedule: invalid duration %q: %v", arg, err)
				}
				app.RetrySchedule = append(app.RetrySchedule, caddy.Duration(dur))
			}
		case "timeout", "retention", "disable_after", "rotation_grace":
			dur, err := parseDuration(d)
			if err != nil {
				return nil, err
			}
			switch opt {
			case "timeout":
				app.Timeout = dur
			case "retention":
				app.Retention = dur
			case "disable_after":
				app.DisableAfter = dur
			case "rotation_grace":
				app.RotationGrace = dur
			}
		case "max_body":
			size, err := parseSize(d)
			if err != nil {
				return nil, err
			}
			app.MaxBody = size
		case "allow_destinations":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Errf("allow_destinations: want at least one CIDR")
			}
			for _, arg := range args {
				if _, err := parseDestination(arg); err != nil {
					return nil, d.Errf("allow_destinations: %v", err)
				}
			}
			app.AllowDestinations = append(app.AllowDestinations, args...)
		case "proxy":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if app.Proxy != "" {
				return nil, d.Errf("proxy: may appear only once")
			}
			app.Proxy = d.Val()
		case "no_proxy":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Errf("no_proxy: want at least one host name or CIDR")
			}
			for _, arg := range args {
				if err := outbox.CheckNoProxy(arg); err != nil {
					return nil, d.Errf("no_proxy: %v", err)
				}
			}
			app.NoProxy = append(app.NoProxy, args...)
		case "workers", "max_in_flight_per_webhook":
			n, err := parsePositiveInt(d)
			if err != nil {
				return nil, err
			}
			if opt == "workers" {
				app.Workers = n
			} else {
				app.MaxInFlightPerWebhook = n
			}
		case "operational_webhook":
			op, err := parseOperationalWebhook(d)
			if err != nil {
				return nil, err
			}
			app.OperationalWebhook = op
		case "encryption_key":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			encryptionKey = d.Val()
		default:
			return nil, d.Errf("unrecognized webhooks option '%s'", opt)
		}
		if d.NextArg() {
			return nil, d.Errf("%s: too many arguments", opt)
		}
	}
	if encryptionKey != "" {
		// Shorthand for the Badger storage's own option.
		var st BadgerStorage
		switch storageName {
		case "":
		case "badger":
			if err := json.Unmarshal(app.StorageRaw, &st); err != nil {
				return nil, err
			}
			if st.EncryptionKey != "" {
				return nil, d.Errf("encryption_key: set both in storage badger and beside it")
			}
		default:
			return nil, d.Errf("encryption_key: applies to storage badger only, not %s; encrypt a PostgreSQL database with the database's own means", storageName)
		}
		st.EncryptionKey = encryptionKey
		app.StorageRaw = caddyconfig.JSONModuleObject(&st, "module", "badger", nil)
	}
	return httpcaddyfile.App{
		Name:  "webhooks",
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

// parseHandler unmarshals a handler directive into a new T.
func parseHandler[T any, PT interface {
	*T
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
}](h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := PT(new(T))
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// parseDuration reads the single duration argument of the option at d.
func parseDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("%s: invalid duration %q: %v", opt, d.Val(), err)
	}
	if dur < 0 {
		return 0, d.Errf("%s: duration must not be negative", opt)
	}
	return caddy.Duration(dur), nil
}

// parseSize reads the single size argument (such as 1MB or 512KiB) of the
// option at d.
func parseSize(d *caddyfile.Dispenser) (int64, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	size, err := bodysize.Parse(d.Val())
	if err != nil {
		return 0, d.Errf("%s: %v", opt, err)
	}
	return size, nil
}

// parsePositiveInt reads the single positive integer argument of the option at d.
func parsePositiveInt(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < 1 {
		return 0, d.Errf("%s: want a positive integer, got %q", opt, d.Val())
	}
	return n, nil
}
