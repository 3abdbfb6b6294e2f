package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

func init() {
	caddy.RegisterModule(Events{})
}

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// Events is the ingest handler: the service POSTs its events here as
// {"event": "<type>", "data": {"appId": "...", ...}}, and each is stored
// durably with one delivery per subscribed webhook of data.appId before the
// handler answers 202 {"id": "<event id>", "deliveries": <count>}.
//
// It answers every request itself (it never calls the next handler), with
// JSON errors: 405 not POST, 415 not JSON, 413 over max_body, 400 malformed
// JSON or a missing event, data or data.appId, 422 an event type outside
// the catalog, 503 (with Retry-After) while the store cannot commit.
// A repeated Idempotency-Key (within 24h) answers 200 with the first
// event's id and stores nothing new.
type Events struct {
	// MaxBody is the largest body accepted, in bytes. Default: the
	// webhooks app's max_body (1 MB).
	MaxBody int64 `json:"max_body,omitempty"`

	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Events) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_events",
		New: func() caddy.Module { return new(Events) },
	}
}

// Provision finds the webhooks app.
func (h *Events) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := ctx.App("webhooks")
	if err != nil {
		return fmt.Errorf("getting webhooks app: %v", err)
	}
	h.app = app.(*App)
	return nil
}

// Validate checks the configuration.
func (h *Events) Validate() error {
	if h.MaxBody < 0 {
		return errors.New("max_body: must not be negative")
	}
	return nil
}

// ServeHTTP ingests one event.
func (h *Events) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed; POST a JSON event")
		return nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return nil
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Idempotency-Key is longer than %d bytes", maxIdempotencyKey))
		return nil
	}

	limit := h.MaxBody
	if limit == 0 {
		limit = h.app.maxBodyBytes()
	}
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than %d bytes", limit))
		return nil
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than %d bytes", limit))
			return nil
		}
		writeError(w, http.StatusBadRequest, "reading body failed")
		return nil
	}

	ob := h.app.Outbox()
	if ob == nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "webhooks app is not running")
		return nil
	}
	// The event keeps the request's trace context (the span of Caddy's
	// tracing directive, else the traceparent header) for its deliveries.
	res, err := ob.Ingest(outbox.ExtractTrace(r.Context(), r.Header), body, key)
	if err != nil {
		writeOutboxError(w, h.logger, err)
		return nil
	}
	status := http.StatusAccepted
	if res.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, ingestView{ID: res.ID, Deliveries: res.Deliveries})
	return nil
}

// readBody reads a request body whole; a declared length (within the cap,
// which the caller checked) sizes it in one allocation, since net/http ends
// such a body at exactly that length or fails the read.
func readBody(r io.Reader, declared int64) ([]byte, error) {
	if declared <= 0 {
		return io.ReadAll(r)
	}
	body := make([]byte, declared)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	webhook_events [<matcher>] {
//	    max_body <size>
//	}
func (h *Events) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_body":
			size, err := parseSize(d)
			if err != nil {
				return err
			}
			h.MaxBody = size
		default:
			return d.Errf("unrecognized webhook_events option '%s'", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Events)(nil)
	_ caddy.Validator             = (*Events)(nil)
	_ caddyhttp.MiddlewareHandler = (*Events)(nil)
	_ caddyfile.Unmarshaler       = (*Events)(nil)
)
