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
}

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
		w.UpdatedAt = now
		return nil
	})
}

// DeleteWebhook removes a webhook and its history (the embedded store
// deletes the history in the background, PostgreSQL in the transaction).
func (o *Outbox) DeleteWebhook(ctx context.Context, appID, id string) error {
	return o.store.DeleteWebhook(ctx, appID, id)
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
