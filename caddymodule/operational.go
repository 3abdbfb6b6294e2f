package caddymodule

import (
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// OperationalWebhook is where the sender reports on itself: the webhooks
// it disabled (webhook.disabled), webhooks failing for an hour and
// recovering (webhook.failing, webhook.recovered), and deliveries that
// gave up (delivery.exhausted). Reports are delivered through the outbox
// like any delivery: stored, signed with Secret, retried, and subject to
// allow_destinations.
type OperationalWebhook struct {
	// URL receives the reports (http or https).
	URL string `json:"url"`

	// Secret signs the reports as any webhook's secret signs its
	// deliveries. Placeholders such as {env.OPS_SECRET} are expanded.
	Secret string `json:"secret,omitempty"`

	// FailingAfter is how long a webhook's deliveries fail, with no
	// success, before webhook.failing is reported. Default: 1h.
	FailingAfter caddy.Duration `json:"failing_after,omitempty"`
}

// options turns the configuration into the outbox's.
func (o *OperationalWebhook) options() *outbox.OperationalWebhook {
	if o == nil {
		return nil
	}
	repl := caddy.NewReplacer()
	return &outbox.OperationalWebhook{
		URL:          repl.ReplaceKnown(o.URL, ""),
		Secret:       repl.ReplaceKnown(o.Secret, ""),
		FailingAfter: time.Duration(o.FailingAfter),
	}
}

// validate checks the URL as webhook URLs are checked.
func (o *OperationalWebhook) validate() error {
	if o == nil {
		return nil
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("operational_webhook: %q is not an http or https URL", o.URL)
	}
	if u.User != nil {
		return fmt.Errorf("operational_webhook: the URL must not contain credentials")
	}
	if o.FailingAfter < 0 {
		return fmt.Errorf("operational_webhook: negative failing_after")
	}
	return nil
}

// parseOperationalWebhook reads
//
//	operational_webhook <url> {
//	    secret        <secret>
//	    failing_after <duration>
//	}
func parseOperationalWebhook(d *caddyfile.Dispenser) (*OperationalWebhook, error) {
	if !d.NextArg() {
		return nil, d.Errf("operational_webhook: want a URL")
	}
	op := &OperationalWebhook{URL: d.Val()}
	if d.NextArg() {
		return nil, d.Errf("operational_webhook: too many arguments")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "secret":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			op.Secret = d.Val()
		case "failing_after":
			dur, err := parseDuration(d)
			if err != nil {
				return nil, err
			}
			op.FailingAfter = dur
		default:
			return nil, d.Errf("unrecognized operational_webhook option '%s'", d.Val())
		}
		if d.NextArg() {
			return nil, d.Errf("%s: too many arguments", d.Val())
		}
	}
	return op, nil
}

// operationalEvents counts the operational events the sender stored, by
// type; registered with the other metrics.
var operationalEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: metricsNamespace,
	Subsystem: metricsSubsystem,
	Name:      "operational_events_total",
	Help:      "Operational events (webhook.disabled, webhook.failing, webhook.recovered, delivery.exhausted) reported.",
}, []string{"event"})

func initOperationalLabels() {
	for _, ev := range outbox.OperationalEvents {
		operationalEvents.WithLabelValues(ev)
	}
}

func (observer) OperationalEvent(eventType string) {
	operationalEvents.WithLabelValues(eventType).Inc()
}

// Interface guards
var _ outbox.OperationalObserver = observer{}
