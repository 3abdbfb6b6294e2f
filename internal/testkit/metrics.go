package testkit

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one line of a scrape: a histogram's or summary's _bucket,
// _sum and _count are samples of their own names.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is a scrape, read as its samples.
type Metrics []Sample

// Scrape reads url (a /metrics endpoint), failing the test unless it
// answers 200 with the Prometheus text format.
func Scrape(t testing.TB, url string) Metrics {
	t.Helper()
	a := Call(t, http.MethodGet, url, nil, nil)
	if a.Status != http.StatusOK {
		t.Fatalf("GET %s answered %d %s, want 200", url, a.Status, a.Body)
	}
	return ParseMetrics(t, string(a.Body))
}

// ParseMetrics reads the Prometheus text exposition format, failing the
// test if text is not in it.
func ParseMetrics(t testing.TB, text string) Metrics {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing a scrape: %v", err)
	}
	var out Metrics
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out = append(out, samples(name, labels, m)...)
		}
	}
	return out
}

// samples flattens one metric of family name into the lines a scrape
// shows for it.
func samples(name string, labels map[string]string, m *dto.Metric) []Sample {
	with := func(k, v string) map[string]string {
		l := make(map[string]string, len(labels)+1)
		for n, v := range labels {
			l[n] = v
		}
		l[k] = v
		return l
	}
	switch {
	case m.Counter != nil:
		return []Sample{{name, labels, m.Counter.GetValue()}}
	case m.Gauge != nil:
		return []Sample{{name, labels, m.Gauge.GetValue()}}
	case m.Untyped != nil:
		return []Sample{{name, labels, m.Untyped.GetValue()}}
	case m.Histogram != nil:
		h := m.Histogram
		out := []Sample{
			{name + "_sum", labels, h.GetSampleSum()},
			{name + "_count", labels, float64(h.GetSampleCount())},
		}
		for _, b := range h.GetBucket() {
			le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
			out = append(out, Sample{name + "_bucket", with(model.BucketLabel, le), float64(b.GetCumulativeCount())})
		}
		return out
	case m.Summary != nil:
		s := m.Summary
		out := []Sample{
			{name + "_sum", labels, s.GetSampleSum()},
			{name + "_count", labels, float64(s.GetSampleCount())},
		}
		for _, q := range s.GetQuantile() {
			out = append(out, Sample{name, with(model.QuantileLabel, strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)), q.GetValue()})
		}
		return out
	}
	return nil
}

// Value sums the samples of name that carry every label given, as pairs of
// name and value ("outcome", "success"); labels not given may have any
// value. ok is false when no sample matches.
func (ms Metrics) Value(name string, labels ...string) (sum float64, ok bool) {
	if len(labels)%2 != 0 {
		panic("testkit: Metrics.Value takes labels as name, value pairs")
	}
	for _, s := range ms {
		if s.Name != name || !s.has(labels) {
			continue
		}
		sum += s.Value
		ok = true
	}
	return sum, ok
}

func (s Sample) has(labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		if v, ok := s.Labels[labels[i]]; !ok || v != labels[i+1] {
			return false
		}
	}
	return true
}
