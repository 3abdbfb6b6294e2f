// Package e2e holds the end-to-end tests of caddy-webhooks: each builds the
// project's Caddy from ./caddy, runs it as a real process on a real Badger
// directory, and talks to it over loopback HTTP only, the way a user does
// (post events, manage webhooks, kill, restart, reload).
//
//	go test ./e2e/
package e2e
