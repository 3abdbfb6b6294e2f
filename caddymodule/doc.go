// Package caddymodule is the Caddy glue of the webhook sender.
package caddymodule
