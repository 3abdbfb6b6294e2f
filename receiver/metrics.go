package receiver

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The results of a verification, the values of the result label.
const (
	resultValid     = "valid"
	resultInvalid   = "invalid"
	resultMissing   = "missing"
	resultExpired   = "expired"
	resultTooLarge  = "too_large"
	resultDuplicate = "duplicate"
)

// verifications is built once: each config load registers it into its own
// registry, and the counts carry over reloads.
var verifications = func() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "webhooks",
		Name:      "receiver_verifications_total",
		Help:      "Inbound webhook verifications by result.",
	}, []string{"result"})
	// Every result is shown from the start, at zero, so a dashboard's
	// rate() of "invalid" works before the first invalid request.
	for _, r := range []string{resultValid, resultInvalid, resultMissing, resultExpired, resultTooLarge, resultDuplicate} {
		c.WithLabelValues(r)
	}
	return c
}()

// registerMetrics adds the receiver's collectors to reg. Registering again
// into the same registry, as every webhook_verify handler of a config does,
// is not an error.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	err := reg.Register(verifications)
	if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
		return nil
	}
	return err
}
