package caddymodule

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// The sender's metrics. They are built once and registered into the metrics
// registry of every config that runs the app, so a reload neither loses them
// nor resets their counts. Labels stay low-cardinality: event types come from
// the configured catalog; never a URL, an app id or an event id.
const (
	metricsNamespace = "caddy"
	metricsSubsystem = "webhooks"
)

var metrics = struct {
	eventsReceived   *prometheus.CounterVec
	eventsFiltered   *prometheus.CounterVec
	attempts         *prometheus.CounterVec
	deliveriesFailed *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	pending          prometheus.Gauge
	oldestPending    prometheus.GaugeFunc
	storeBytes       prometheus.Gauge
}{
	eventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "events_received_total",
		Help:      "Events accepted by webhook_events and durably stored.",
	}, []string{"event"}),
	eventsFiltered: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "events_filtered_total",
		Help:      "Deliveries not created because a webhook's filter did not match the event: one per event and webhook.",
	}, []string{"event"}),
	attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "delivery_attempts_total",
		Help:      "Delivery attempts (HTTP requests to webhook URLs), by outcome.",
	}, []string{"event", "outcome"}),
	deliveriesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "deliveries_failed_total",
		Help:      "Deliveries that exhausted their retries.",
	}, []string{"event"}),
	duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "delivery_duration_seconds",
		Help:      "Duration of delivery attempts, by outcome.",
		Buckets:   []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 60},
	}, []string{"outcome"}),
	pending: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "outbox_pending",
		Help:      "Deliveries waiting for an attempt or in flight.",
	}),
	oldestPending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "outbox_oldest_pending_seconds",
		Help:      "Age of the oldest pending delivery; 0 when none is pending.",
	}, oldestPendingSeconds),
	storeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "outbox_store_bytes",
		Help:      "Disk space of the store: the Badger directory, or the PostgreSQL database.",
	}),
}

// oldestPendingNanos is the creation time of the oldest pending delivery as
// last reported by the outbox (Unix nanoseconds, 0 when none); the gauge
// computes its age when scraped.
var oldestPendingNanos atomic.Int64

func oldestPendingSeconds() float64 {
	n := oldestPendingNanos.Load()
	if n == 0 {
		return 0
	}
	return max(0, time.Since(time.Unix(0, n)).Seconds())
}

// registerMetrics registers the collectors into reg, once per registry.
func registerMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		metrics.eventsReceived, metrics.eventsFiltered, metrics.attempts, metrics.deliveriesFailed,
		metrics.duration, metrics.pending, metrics.oldestPending, metrics.storeBytes,
		operationalEvents,
	} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
				continue
			}
			return err
		}
	}
	return nil
}

// initMetricLabels makes the series of the catalog's event types visible at
// zero before the first event.
func initMetricLabels(events []string) {
	initOperationalLabels()
	for _, ev := range events {
		metrics.eventsReceived.WithLabelValues(ev)
		metrics.eventsFiltered.WithLabelValues(ev)
		metrics.deliveriesFailed.WithLabelValues(ev)
		for _, o := range []string{outcomeSuccess, outcomeFailure} {
			metrics.attempts.WithLabelValues(ev, o)
		}
	}
}

// Outcome label values.
const (
	outcomeSuccess = "success"
	outcomeFailure = "failure"
)

func outcome(success bool) string {
	if success {
		return outcomeSuccess
	}
	return outcomeFailure
}

// observer updates the metrics from what the outbox reports.
type observer struct{}

func (observer) EventReceived(eventType string) {
	metrics.eventsReceived.WithLabelValues(eventType).Inc()
}

func (observer) EventFiltered(eventType string) {
	metrics.eventsFiltered.WithLabelValues(eventType).Inc()
}

func (observer) AttemptFinished(eventType string, success bool, took time.Duration) {
	o := outcome(success)
	metrics.attempts.WithLabelValues(eventType, o).Inc()
	metrics.duration.WithLabelValues(o).Observe(took.Seconds())
}

func (observer) DeliveryFailed(eventType string) {
	metrics.deliveriesFailed.WithLabelValues(eventType).Inc()
}

func (observer) QueueStats(s outbox.Stats) {
	metrics.pending.Set(float64(s.Pending))
	metrics.storeBytes.Set(float64(s.StoreBytes))
	if s.OldestPending.IsZero() {
		oldestPendingNanos.Store(0)
	} else {
		oldestPendingNanos.Store(s.OldestPending.UnixNano())
	}
}

// Interface guards
var _ outbox.Observer = observer{}
