// Package caddymodule is the Caddy glue of the webhook sender:
//
//   - the webhooks app (app.go), which owns the store and the dispatcher of
//     package outbox and keeps them open across config reloads;
//   - http.handlers.webhook_events (events.go), where the service posts its events;
//   - the management API (api.go), served by http.handlers.webhook_admin
//     (handler.go) on a site and by admin.api.webhooks (admin.go) on Caddy's
//     admin endpoint;
//   - the Prometheus metrics (metrics.go) and the Caddyfile syntax (caddyfile.go).
package caddymodule
