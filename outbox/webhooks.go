package outbox

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// WebhookInput is a create or edit request. On edit, nil fields stay as
// they are; an empty Secret removes the secret.
type WebhookInput struct {
	Name    *string
	URL     *string
	Events  *[]string
	Secret  *string
	Enabled *bool

	// Headers edits the extra headers as RFC 7386 merges an object: a name
	// with a value is set, a name with nil removed, other names stay.
	// ReplaceHeaders drops every header first.
	Headers        map[string]*string
	ReplaceHeaders bool
	// Filter is a CEL expression; "" removes it.
	Filter *string
	// The delivery settings; Unset names those to return to the app's
	// defaults ("retrySchedule", "timeout", "maxInFlight", "rateLimit").
	RetrySchedule *[]time.Duration
	Timeout       *time.Duration
	MaxInFlight   *int
	RateLimit     *int
	Unset         []string
}

// Bounds of the per-webhook delivery settings.
const (
	maxRetries       = 50
	maxRetryWait     = 7 * 24 * time.Hour
	maxTimeoutFactor = 4
	MaxMaxInFlight   = 256
	unsetRetry       = "retrySchedule"
	unsetTimeout     = "timeout"
	unsetMaxInFlight = "maxInFlight"
	unsetRateLimit   = "rateLimit"
)

const maxSecretLen = 1024

// maxNameLen bounds a webhook's name, in characters (not bytes).
const maxNameLen = 200

func (o *Outbox) validate(in *WebhookInput, create bool) error {
	opts := o.options()
	if create {
		switch {
		case in.Name == nil:
			return invalid("name", "required")
		case in.URL == nil:
			return invalid("url", "required")
		case in.Events == nil:
			return invalid("events", "required")
		}
	}
	if in.Name != nil {
		n := strings.TrimSpace(*in.Name)
		if n == "" {
			return invalid("name", "must not be empty")
		}
		if utf8.RuneCountInString(n) > maxNameLen {
			return invalid("name", "longer than %d characters", maxNameLen)
		}
		in.Name = &n
	}
	if in.URL != nil {
		if err := checkURL(*in.URL, opts); err != nil {
			return err
		}
	}
	if in.Events != nil {
		evs := *in.Events
		if len(evs) == 0 {
			return invalid("events", "at least one event type is required")
		}
		seen := make(map[string]bool, len(evs))
		clean := make([]string, 0, len(evs))
		for _, e := range evs {
			if !slices.Contains(opts.Events, e) {
				return invalid("events", "%q is not in the catalog (%s)", e, strings.Join(opts.Events, ", "))
			}
			if !seen[e] {
				seen[e] = true
				clean = append(clean, e)
			}
		}
		in.Events = &clean
	}
	if in.Secret != nil && len(*in.Secret) > maxSecretLen {
		return invalid("secret", "longer than %d bytes", maxSecretLen)
	}
	return o.validateSettings(in, opts)
}

// validateSettings checks the per-webhook options of in and puts the
// header names in canonical form.
func (o *Outbox) validateSettings(in *WebhookInput, opts *Options) error {
	if in.Headers != nil {
		h, err := checkHeaders(in.Headers)
		if err != nil {
			return err
		}
		in.Headers = h
	}
	if in.Filter != nil && *in.Filter != "" {
		if _, err := o.CompileFilter(*in.Filter); err != nil {
			return invalid("filter", "%s", err.Error())
		}
	}
	if in.RetrySchedule != nil {
		rs := *in.RetrySchedule
		if len(rs) > maxRetries {
			return invalid("retrySchedule", "at most %d retries, not %d", maxRetries, len(rs))
		}
		for _, d := range rs {
			if d < 0 || d > maxRetryWait {
				return invalid("retrySchedule", "each wait must be from 0s to %s, not %s", maxRetryWait, d)
			}
		}
	}
	if in.Timeout != nil {
		if t, most := *in.Timeout, maxTimeoutFactor*opts.Timeout; t <= 0 || t > most {
			return invalid("timeout", "must be more than 0s and at most %s (%d × the app's timeout)", most, maxTimeoutFactor)
		}
	}
	if in.MaxInFlight != nil && (*in.MaxInFlight < 1 || *in.MaxInFlight > MaxMaxInFlight) {
		return invalid("maxInFlight", "must be an integer from 1 to %d", MaxMaxInFlight)
	}
	if in.RateLimit != nil && (*in.RateLimit < 1 || *in.RateLimit > MaxRateLimit) {
		return invalid("rateLimit", "must be an integer from 1 to %d (attempts per second)", MaxRateLimit)
	}
	for _, name := range in.Unset {
		switch name {
		case unsetRetry, unsetTimeout, unsetMaxInFlight, unsetRateLimit:
		default:
			return invalid(name, "cannot be unset")
		}
	}
	return nil
}

// applySettings applies the per-webhook options of a validated input.
func applySettings(w *Webhook, in *WebhookInput) error {
	if in.Headers != nil || in.ReplaceHeaders {
		h, err := applyHeaders(w.Headers, in.ReplaceHeaders, in.Headers)
		if err != nil {
			return err
		}
		w.Headers = h
	}
	if in.Filter != nil {
		w.Filter = *in.Filter
	}
	for _, name := range in.Unset {
		switch name {
		case unsetRetry:
			w.RetrySchedule = nil
		case unsetTimeout:
			w.Timeout = 0
		case unsetMaxInFlight:
			w.MaxInFlight = 0
		case unsetRateLimit:
			w.RateLimit = 0
		}
	}
	if in.RetrySchedule != nil {
		w.RetrySchedule = slices.Clone(*in.RetrySchedule)
		if w.RetrySchedule == nil {
			w.RetrySchedule = []time.Duration{}
		}
	}
	if in.Timeout != nil {
		w.Timeout = *in.Timeout
	}
	if in.MaxInFlight != nil {
		w.MaxInFlight = *in.MaxInFlight
	}
	if in.RateLimit != nil {
		w.RateLimit = *in.RateLimit
	}
	return nil
}

// maxURLLen bounds a webhook URL, as browsers and proxies commonly do.
const maxURLLen = 2048

func checkURL(raw string, opts *Options) error {
	if len(raw) > maxURLLen {
		return invalid("url", "longer than %d bytes", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("url", "not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid("url", "scheme must be http or https")
	}
	if u.Hostname() == "" {
		return invalid("url", "missing host")
	}
	if u.User != nil {
		return invalid("url", "must not contain credentials")
	}
	port := defaultPort(u.Scheme)
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return invalid("url", "port must be from 1 to 65535")
		}
		port = uint16(n)
	}
	if addr, ok := hostIP(u.Hostname()); ok {
		if err := checkAddr(addr, port, opts); err != nil {
			return invalid("url", "%v", err)
		}
	}
	return nil
}

// CreateWebhook adds a webhook to an app.
func (o *Outbox) CreateWebhook(ctx context.Context, appID string, in WebhookInput) (*Webhook, error) {
	if err := CheckAppID(appID); err != nil {
		return nil, err
	}
	if err := o.validate(&in, true); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	w := &Webhook{
		ID: newID(), AppID: appID, Name: *in.Name, URL: *in.URL, Events: *in.Events,
		Enabled: true, CreatedAt: now, UpdatedAt: now,
	}
	if in.Secret != nil {
		w.Secret = *in.Secret
	}
	if in.Enabled != nil {
		w.Enabled = *in.Enabled
	}
	if err := applySettings(w, &in); err != nil {
		return nil, err
	}
	if err := o.store.CreateWebhook(ctx, w); err != nil {
		return nil, err
	}
	return w, nil
}

// UpdateWebhook edits a webhook. A new secret keeps the old one signing for
// the rotation grace.
func (o *Outbox) UpdateWebhook(ctx context.Context, appID, id string, in WebhookInput) (*Webhook, error) {
	if err := o.validate(&in, false); err != nil {
		return nil, err
	}
	grace := o.options().RotationGrace
	return o.store.UpdateWebhook(ctx, appID, id, func(w *Webhook) error {
		now := time.Now().UTC()
		if in.Name != nil {
			w.Name = *in.Name
		}
		if in.URL != nil {
			w.URL = *in.URL
		}
		if in.Events != nil {
			w.Events = *in.Events
		}
		if in.Secret != nil && *in.Secret != w.Secret {
			if w.Secret != "" && *in.Secret != "" {
				w.PreviousSecret, w.PreviousSecretUntil = w.Secret, now.Add(grace)
			} else {
				w.PreviousSecret, w.PreviousSecretUntil = "", time.Time{}
			}
			w.Secret = *in.Secret
		}
		if in.Enabled != nil {
			w.Enabled = *in.Enabled
			if w.Enabled {
				w.DisabledReason = ""
				w.FailingSince = time.Time{}
			}
		}
		if err := applySettings(w, &in); err != nil {
			return err
		}
		w.UpdatedAt = now
		return nil
	})
}

// DeleteWebhook removes a webhook and its history (the embedded store
// deletes the history in the background, PostgreSQL in the transaction).
func (o *Outbox) DeleteWebhook(ctx context.Context, appID, id string) error {
	if err := o.store.DeleteWebhook(ctx, appID, id); err != nil {
		return err
	}
	o.forgetFilter(id)
	return nil
}

// GetWebhook returns one webhook.
func (o *Outbox) GetWebhook(ctx context.Context, appID, id string) (*Webhook, error) {
	return o.store.GetWebhook(ctx, appID, id)
}

// ListWebhooks returns an app's webhooks, oldest first.
func (o *Outbox) ListWebhooks(ctx context.Context, appID string) ([]*Webhook, error) {
	return o.store.ListWebhooks(ctx, appID)
}

// ListApps returns the apps that have webhooks.
func (o *Outbox) ListApps(ctx context.Context) ([]string, error) {
	apps, err := o.store.ListApps(ctx)
	return slices.DeleteFunc(apps, func(a string) bool { return a == OperationalApp }), err
}
