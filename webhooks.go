// Package webhooks brings every caddy-webhooks module into a Caddy build:
//
//	xcaddy build --with github.com/caddy-webhooks/caddy-webhooks
//
// The sender (the webhooks app, webhook_events, webhook_admin and the
// admin.api.webhooks endpoint) lives in caddymodule; the receiver's
// webhook_verify handler lives in receiver.
package webhooks

import (
	_ "github.com/caddy-webhooks/caddy-webhooks/caddymodule"
	_ "github.com/caddy-webhooks/caddy-webhooks/receiver"
)
