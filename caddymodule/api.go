package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
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
		"POST /webhooks/apps/{appId}/portal-tokens":        a.mintPortalToken,
		"DELETE /webhooks/apps/{appId}/portal-tokens":      a.revokePortalTokens,
	} {
		a.mux.Handle(pattern, a.handle(fn, strings.Contains(pattern, "{appId}")))
	}
	for pattern, fn := range a.eventRoutes() {
		a.mux.Handle(pattern, a.handle(fn, strings.Contains(pattern, "{appId}")))
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
	if !canonicalPath(r.URL.Path) {
		// ServeMux would redirect to the cleaned path, in HTML; an API
		// has no such resource.
		writeError(w, http.StatusNotFound, "no such resource: "+r.URL.Path)
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

// canonicalPath reports whether p has no empty, "." or ".." segment.
func canonicalPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// handle runs a route; one that names an app refuses an invalid app id
// before anything else, so no store sees one.
func (a *api) handle(fn apiFunc, namesApp bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if namesApp {
			if err := outbox.CheckAppID(r.PathValue("appId")); err != nil {
				writeOutboxError(w, a.logger, err)
				return
			}
		}
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
	views := make([]webhookView, len(hooks))
	for i, h := range hooks {
		views[i] = newWebhookView(h)
	}
	writeJSON(w, http.StatusOK, listEnvelope{Data: views})
	return nil
}

func (a *api) createWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	var in webhookInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	input, err := in.outbox()
	if err != nil {
		return err
	}
	hook, err := ob.CreateWebhook(r.Context(), r.PathValue("appId"), input)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/webhooks/apps/"+hook.AppID+"/webhooks/"+url.PathEscape(hook.ID))
	writeJSON(w, http.StatusCreated, newWebhookView(hook))
	return nil
}

func (a *api) getWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	hook, err := ob.GetWebhook(r.Context(), r.PathValue("appId"), r.PathValue("id"))
	if err != nil {
		return notFound(err, "webhook")
	}
	writeJSON(w, http.StatusOK, newWebhookView(hook))
	return nil
}

func (a *api) updateWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	var in webhookInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	input, err := in.outbox()
	if err != nil {
		return err
	}
	hook, err := ob.UpdateWebhook(r.Context(), r.PathValue("appId"), r.PathValue("id"), input)
	if err != nil {
		return notFound(err, "webhook")
	}
	writeJSON(w, http.StatusOK, newWebhookView(hook))
	return nil
}

func (a *api) deleteWebhook(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	if err := ob.DeleteWebhook(r.Context(), r.PathValue("appId"), r.PathValue("id")); err != nil {
		return notFound(err, "webhook")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) listDeliveries(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	f, err := deliveryFilter(r)
	if err != nil {
		return err
	}
	ds, next, err := ob.Deliveries(r.Context(), r.PathValue("appId"), r.PathValue("id"), f)
	if err != nil {
		return notFound(err, "webhook")
	}
	writeDeliveryPage(w, ds, next)
	return nil
}

// deliveryFilter reads a history page's query: status, event, limit and
// cursor.
func deliveryFilter(r *http.Request) (outbox.DeliveryFilter, error) {
	q := r.URL.Query()
	f := outbox.DeliveryFilter{Status: outbox.Status(q.Get("status")), Event: q.Get("event"), Cursor: q.Get("cursor")}
	var err error
	f.Limit, err = queryLimit(r)
	return f, err
}

// writeDeliveryPage answers a page of history.
func writeDeliveryPage(w http.ResponseWriter, ds []*outbox.Delivery, next string) {
	views := make([]deliveryView, len(ds))
	for i, d := range ds {
		views[i] = newDeliveryView(d, nil, false)
	}
	env := listEnvelope{Data: views}
	if next != "" {
		env.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, env)
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
		Since  string          `json:"since"`
		Status []outbox.Status `json:"status"`
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
	if in.Status != nil && len(in.Status) == 0 {
		return &outbox.ValidationError{Field: "status", Message: "must list failed, skipped or both"}
	}
	n, err := ob.Recover(r.Context(), appID, hookID, since, in.Status...)
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

// statusRecorder captures what ServeMux answers when nothing matches.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(status int)      { s.status = status }
