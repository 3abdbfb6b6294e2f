package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// maxAPIBody caps a management API request body.
const maxAPIBody = 64 << 10

// api is the management API, the one implementation behind both the admin
// endpoint (admin.api.webhooks) and the webhook_admin handler. Paths keep
// their /webhooks/ prefix. It asks for the outbox per request, since the
// outbox exists only once the app has started.
type api struct {
	outbox func() *outbox.Outbox
	logger *zap.Logger
	mux    *http.ServeMux
	csrf   *http.CrossOriginProtection
}

func newAPI(source func() *outbox.Outbox, logger *zap.Logger) *api {
	a := &api{outbox: source, logger: logger, mux: http.NewServeMux(), csrf: http.NewCrossOriginProtection()}
	const hook = "/webhooks/apps/{appId}/webhooks/{id}"
	for pattern, fn := range map[string]apiFunc{
		"GET /webhooks/events":                             a.listEvents,
		"GET /webhooks/apps":                               a.listApps,
		"GET /webhooks/apps/{appId}/webhooks":              a.listWebhooks,
		"POST /webhooks/apps/{appId}/webhooks":             a.createWebhook,
		"GET " + hook:                                      a.getWebhook,
		"PATCH " + hook:                                    a.updateWebhook,
		"DELETE " + hook:                                   a.deleteWebhook,
		"GET " + hook + "/deliveries":                      a.listDeliveries,
		"GET " + hook + "/deliveries/{deliveryId}":         a.getDelivery,
		"POST " + hook + "/deliveries/{deliveryId}/resend": a.resend,
		"POST " + hook + "/recover":                        a.recover,
		"POST " + hook + "/test":                           a.test,
		"GET " + hook + "/stats":                           a.stats,
	} {
		a.mux.Handle(pattern, a.handle(fn))
	}
	// The API's description needs no running outbox.
	a.mux.HandleFunc("GET /webhooks/openapi.json", serveOpenAPI)
	return a
}

// apiFunc is one route: it writes its answer on success and returns an
// error otherwise, which handle maps to a status code.
type apiFunc func(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error

// ServeHTTP routes the request; unknown paths and wrong methods answer JSON
// errors like every route.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A browser holding basic_auth credentials must not be usable by
	// another site: cross-origin unsafe requests are refused.
	if err := a.csrf.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	if _, pattern := a.mux.Handler(r); pattern == "" {
		// Found nothing: let the mux tell 404 from 405 (and its Allow
		// header), then answer in JSON.
		rec := &statusRecorder{header: make(http.Header)}
		a.mux.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		writeError(w, http.StatusNotFound, "no such resource: "+r.URL.Path)
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *api) handle(fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ob := a.outbox()
		if ob == nil {
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, "webhooks app is not running")
			return
		}
		if err := fn(w, r, ob); err != nil {
			writeOutboxError(w, a.logger, err)
		}
	})
}

// listEnvelope is the shape of every list: data, and for paged lists the
// cursor of the next page (null on the last page).
type listEnvelope struct {
	Data       any     `json:"data"`
	NextCursor *string `json:"nextCursor,omitempty"`
}

func (a *api) listEvents(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	writeJSON(w, http.StatusOK, listEnvelope{Data: ob.Events()})
	return nil
}

func (a *api) listApps(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	apps, err := ob.ListApps(r.Context())
	if err != nil {
		return err
	}
	if apps == nil {
		apps = []string{}
	}
	writeJSON(w, http.StatusOK, listEnvelope{Data: apps})
	return nil
}

func (a *api) listWebhooks(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	hooks, err := ob.ListWebhooks(r.Context(), r.PathValue("appId"))
	if err != nil {
		return err
	}
	if hooks == nil {
		hooks = []*outbox.Webhook{}
	}
	writeJSON(w, http.StatusOK, listEnvelope{Data: hooks})
	return nil
}

func (a *api) createWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	var in outbox.WebhookInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	hook, err := ob.CreateWebhook(r.Context(), r.PathValue("appId"), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", (&url.URL{Path: r.URL.Path + "/" + hook.ID}).EscapedPath())
	writeJSON(w, http.StatusCreated, hook)
	return nil
}

func (a *api) getWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	hook, err := ob.GetWebhook(r.Context(), r.PathValue("appId"), r.PathValue("id"))
	if err != nil {
		return notFound(err, "webhook")
	}
	writeJSON(w, http.StatusOK, hook)
	return nil
}

func (a *api) updateWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	var in outbox.WebhookInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	hook, err := ob.UpdateWebhook(r.Context(), r.PathValue("appId"), r.PathValue("id"), in)
	if err != nil {
		return notFound(err, "webhook")
	}
	writeJSON(w, http.StatusOK, hook)
	return nil
}

func (a *api) deleteWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	if err := ob.DeleteWebhook(r.Context(), r.PathValue("appId"), r.PathValue("id")); err != nil {
		return notFound(err, "webhook")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deliveryView is a delivery as the API shows it: the delivery, a summary
// of its last attempt, the event body it sends, and on a single delivery
// every attempt.
type deliveryView struct {
	ID            string        `json:"id"`
	AppID         string        `json:"appId"`
	WebhookID     string        `json:"webhookId"`
	EventID       string        `json:"eventId"`
	Event         string        `json:"event"`
	Status        outbox.Status `json:"status"`
	CreatedAt     time.Time     `json:"createdAt"`
	NextAttemptAt *time.Time    `json:"nextAttemptAt,omitempty"`
	Attempts      int           `json:"attempts"`
	// RequestBody is the body exactly as sent, as a string: re-encoding
	// it as JSON would change its bytes, and receivers check signatures
	// over the bytes. Null once the event has expired.
	RequestBody *string `json:"requestBody"`

	// The last attempt; absent before the first.
	SentAt             *time.Time `json:"sentAt,omitempty"`
	ResponseStatusCode int        `json:"responseStatusCode,omitempty"`
	ResponseBody       string     `json:"responseBody,omitempty"`
	LastError          string     `json:"lastError,omitempty"`
	DurationMs         *int64     `json:"durationMs,omitempty"`

	AttemptLog []outbox.Attempt `json:"attemptLog,omitempty"`
}

func newDeliveryView(d *outbox.Delivery, ev *outbox.Event, withAttempts bool) deliveryView {
	v := deliveryView{
		ID: d.ID, AppID: d.AppID, WebhookID: d.WebhookID, EventID: d.EventID, Event: d.Event,
		Status: d.Status, CreatedAt: d.CreatedAt, NextAttemptAt: d.NextAttemptAt,
		Attempts: len(d.Attempts),
	}
	if ev != nil {
		body := string(ev.Body)
		v.RequestBody = &body
	}
	if last := d.LastAttempt(); last != nil {
		sentAt, ms := last.SentAt, last.DurationMs
		v.SentAt, v.DurationMs = &sentAt, &ms
		v.ResponseStatusCode = last.ResponseStatusCode
		v.ResponseBody = last.ResponseBody
		v.LastError = last.Error
	}
	if withAttempts {
		v.AttemptLog = d.Attempts
		if v.AttemptLog == nil {
			v.AttemptLog = []outbox.Attempt{}
		}
	}
	return v
}

func (a *api) listDeliveries(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	q := r.URL.Query()
	f := outbox.DeliveryFilter{
		Status: outbox.Status(q.Get("status")),
		Event:  q.Get("event"),
		Cursor: q.Get("cursor"),
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return &outbox.ValidationError{Field: "limit", Message: "must be a positive integer"}
		}
		f.Limit = n
	}
	appID, hookID := r.PathValue("appId"), r.PathValue("id")
	ds, next, err := ob.Deliveries(r.Context(), appID, hookID, f)
	if err != nil {
		return notFound(err, "webhook")
	}
	views := make([]deliveryView, 0, len(ds))
	for _, d := range ds {
		// TODO: one read per delivery for its event body; the outbox
		// could return the events with the page.
		_, ev, err := ob.Delivery(r.Context(), appID, hookID, d.ID)
		if err != nil && !errors.Is(err, outbox.ErrNotFound) {
			return err
		}
		views = append(views, newDeliveryView(d, ev, false))
	}
	env := listEnvelope{Data: views}
	if next != "" {
		env.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, env)
	return nil
}

func (a *api) getDelivery(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	d, ev, err := ob.Delivery(r.Context(), r.PathValue("appId"), r.PathValue("id"), r.PathValue("deliveryId"))
	if err != nil {
		return notFound(err, "delivery")
	}
	writeJSON(w, http.StatusOK, newDeliveryView(d, ev, true))
	return nil
}

func (a *api) resend(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	appID, hookID := r.PathValue("appId"), r.PathValue("id")
	d, err := ob.Resend(r.Context(), appID, hookID, r.PathValue("deliveryId"))
	if err != nil {
		return notFound(err, "delivery")
	}
	writeJSON(w, http.StatusAccepted, a.view(r.Context(), ob, d))
	return nil
}

func (a *api) test(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	d, err := ob.Test(r.Context(), r.PathValue("appId"), r.PathValue("id"))
	if err != nil {
		return notFound(err, "webhook")
	}
	writeJSON(w, http.StatusAccepted, a.view(r.Context(), ob, d))
	return nil
}

// view renders a delivery just queued with its event body, read back from
// the store; if that fails the delivery is shown without it.
func (a *api) view(ctx context.Context, ob *outbox.Outbox, d *outbox.Delivery) deliveryView {
	_, ev, err := ob.Delivery(ctx, d.AppID, d.WebhookID, d.ID)
	if err != nil {
		ev = nil
	}
	return newDeliveryView(d, ev, false)
}

func (a *api) recover(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	var in struct {
		Since string `json:"since"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	if in.Since == "" {
		return &outbox.ValidationError{Field: "since", Message: "required (an RFC 3339 time)"}
	}
	since, err := time.Parse(time.RFC3339, in.Since)
	if err != nil {
		return &outbox.ValidationError{Field: "since", Message: "must be an RFC 3339 time such as 2025-01-02T15:04:05Z"}
	}
	appID, hookID := r.PathValue("appId"), r.PathValue("id")
	if _, err := ob.GetWebhook(r.Context(), appID, hookID); err != nil {
		return notFound(err, "webhook")
	}
	n, err := ob.Recover(r.Context(), appID, hookID, since)
	if err != nil {
		return notFound(err, "webhook")
	}
	writeJSON(w, http.StatusAccepted, struct {
		Recovered int `json:"recovered"`
	}{n})
	return nil
}

// statsMaxHours bounds a stats window (a week), and statsMaxScan the
// deliveries read for one, so a busy webhook cannot make a request scan its
// whole history.
const (
	statsMaxHours = 7 * 24
	statsMaxScan  = 10000
)

// hourStats counts the deliveries of a webhook created in one hour.
type hourStats struct {
	Start     time.Time `json:"start"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	Pending   int       `json:"pending"`
	Skipped   int       `json:"skipped"`
}

// stats counts a webhook's deliveries per hour over the last ?hours= hours
// (default 24), oldest hour first, for the console's chart. It pages the
// history newest first and stops at the window's start; Truncated says it
// stopped at statsMaxScan deliveries instead.
func (a *api) stats(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	hours := 24
	if s := r.URL.Query().Get("hours"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > statsMaxHours {
			return &outbox.ValidationError{Field: "hours", Message: fmt.Sprintf("must be an integer from 1 to %d", statsMaxHours)}
		}
		hours = n
	}
	now := time.Now().UTC()
	first := now.Truncate(time.Hour).Add(-time.Duration(hours-1) * time.Hour)
	buckets := make([]hourStats, hours)
	for i := range buckets {
		buckets[i].Start = first.Add(time.Duration(i) * time.Hour)
	}
	appID, hookID := r.PathValue("appId"), r.PathValue("id")
	f := outbox.DeliveryFilter{Limit: outbox.MaxPageSize}
	truncated, scanned := false, 0
pages:
	for {
		ds, next, err := ob.Deliveries(r.Context(), appID, hookID, f)
		if err != nil {
			return notFound(err, "webhook")
		}
		for _, d := range ds {
			if d.CreatedAt.Before(first) {
				break pages // newest first: the rest is older still
			}
			if scanned++; scanned > statsMaxScan {
				truncated = true
				break pages
			}
			i := min(int(d.CreatedAt.Sub(first)/time.Hour), hours-1)
			switch d.Status {
			case outbox.StatusSucceeded:
				buckets[i].Succeeded++
			case outbox.StatusFailed:
				buckets[i].Failed++
			case outbox.StatusPending:
				buckets[i].Pending++
			case outbox.StatusSkipped:
				buckets[i].Skipped++
			}
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	writeJSON(w, http.StatusOK, struct {
		Data      []hourStats `json:"data"`
		Truncated bool        `json:"truncated"`
	}{buckets, truncated})
	return nil
}

// httpError is an error with the status and message a client should see.
type httpError struct {
	status  int
	message string
}

func (e *httpError) Error() string { return e.message }

// notFound names what was not found, so a 404 says more than "not found".
func notFound(err error, what string) error {
	if errors.Is(err, outbox.ErrNotFound) {
		return &httpError{status: http.StatusNotFound, message: what + " not found"}
	}
	return err
}

// decodeBody decodes a JSON request body of at most maxAPIBody bytes into
// v, refusing unknown fields. Its errors name the field and never echo a
// value (which could be a secret).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		return &httpError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return &httpError{http.StatusBadRequest, "malformed JSON: more than one value in the body"}
		}
		if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
			return &httpError{http.StatusBadRequest, "malformed JSON after the body's value"}
		}
		return nil
	}
	var (
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return &httpError{http.StatusBadRequest, "request body is empty; want a JSON object"}
	case errors.As(err, &tooLarge):
		return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)}
	case errors.As(err, &syntax):
		return &httpError{http.StatusBadRequest, fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &httpError{http.StatusBadRequest, "malformed JSON: unexpected end of body"}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return &httpError{http.StatusBadRequest, fmt.Sprintf("body must be a JSON object, not %s", typ.Value)}
		}
		return &outbox.ValidationError{Field: typ.Field, Message: fmt.Sprintf("must be %s, not %s", jsonType(typ.Type.String()), typ.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return &outbox.ValidationError{Field: strings.Trim(field, `"`), Message: "unknown field"}
	}
	return &httpError{http.StatusBadRequest, "malformed JSON"}
}

// jsonType names a Go type of WebhookInput the way a JSON user would.
func jsonType(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch t {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "[]string":
		return "an array of strings"
	case "int", "int64", "float64":
		return "a number"
	}
	return "of another type (" + t + ")"
}

// isJSON reports whether a Content-Type is application/json or a +json type.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// writeOutboxError answers err with the status it calls for.
func writeOutboxError(w http.ResponseWriter, logger *zap.Logger, err error) {
	var (
		he  *httpError
		ve  *outbox.ValidationError
		uee *outbox.UnknownEventError
	)
	switch {
	case errors.As(err, &he):
		writeError(w, he.status, he.message)
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, ve.Error())
	case errors.As(err, &uee):
		writeError(w, http.StatusUnprocessableEntity, uee.Error())
	case errors.Is(err, outbox.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, outbox.ErrConflict):
		writeError(w, http.StatusConflict, strings.TrimSuffix(err.Error(), ": "+outbox.ErrConflict.Error()))
	case errors.Is(err, outbox.ErrUnavailable), errors.Is(err, outbox.ErrClosed):
		logger.Warn("webhooks store unavailable", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "webhooks store is unavailable; retry later")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "request canceled")
	default:
		logger.Error("webhooks request failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// writeJSON writes v as the JSON body of a response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeError writes {"error": message} with status.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{message})
}

// statusRecorder captures what ServeMux answers when nothing matches.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(status int)      { s.status = status }
