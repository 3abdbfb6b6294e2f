// Package receiver verifies inbound webhook signatures in front of
// reverse_proxy: the http.handlers.webhook_verify module and its
// webhook_verify Caddyfile directive. The signature schemes themselves
// live, free of Caddy, in package signature, which the sender shares.
package receiver
