package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// The dashboard and alert rules under deploy/ use only metrics and labels
// that a running sidecar exports: every expression is parsed with
// Prometheus's own parser and each selector checked against a scrape.
func TestDeployExpressionsNameExportedMetrics(t *testing.T) {
	rc := testkit.NewRecorder(t)
	verifyPort := testkit.FreePort(t)
	s := startSender(t, senderConfig{
		Options: opsOption(rc),
		Sites: fmt.Sprintf(`http://127.0.0.1:%d {
	webhook_verify {
		secret deploy-test
	}
	respond "ok"
}`, verifyPort),
	}, "")
	// One delivery, so the duration histogram has a series.
	s.createWebhook(t, "app1", map[string]any{"name": "m", "url": rc.URL("/m"), "events": []string{"job_finished"}})
	s.mustIngest(t, []byte(`{"event":"job_finished","data":{"appId":"app1"}}`))
	wait.Within(t, opsWait, "the delivery", func() bool { return rc.Count("/m") == 1 })
	// The attempt is observed once its answer is read, after the endpoint
	// has counted it.
	wait.Within(t, opsWait, "the duration histogram", func() bool {
		_, ok := s.metrics(t).Value("caddy_webhooks_delivery_duration_seconds_bucket")
		return ok
	})

	exported := seriesLabels(s.metrics(t))

	var exprs []string
	root := filepath.Join("..", "deploy")
	dash, err := os.ReadFile(filepath.Join(root, "grafana", "caddy-webhooks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(dash, &doc); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	collectExprs(doc, &exprs)
	panels := len(exprs)
	if panels < 10 {
		t.Fatalf("the dashboard has %d expressions, want its 10 panels' at least", panels)
	}
	p := parser.NewParser(parser.Options{})
	rules, err := os.ReadFile(filepath.Join(root, "prometheus", "caddy-webhooks-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// The rule file's format (Prometheus's rulefmt), strictly: an unknown
	// field is a mistake Prometheus would refuse.
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(rules))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("the alert rules do not decode: %v", err)
	}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert rule %+v lacks a name, expression, severity or summary", r)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for: %v", r.Alert, err)
				}
			}
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs)-panels < 6 {
		t.Fatalf("%d alert rules, want at least 6", len(exprs)-panels)
	}

	// Grafana's interval variables stand for a duration.
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m")
	used := map[string]bool{}
	for _, src := range exprs {
		e, err := p.ParseExpr(grafana.Replace(src))
		if err != nil {
			t.Errorf("%q does not parse: %v", src, err)
			continue
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			labels, ok := exported[vs.Name]
			if !ok {
				t.Errorf("%q selects %s, which the sidecar does not export", src, vs.Name)
				return nil
			}
			used[vs.Name] = true
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel && !labels[m.Name] {
					t.Errorf("%q matches label %s, which %s does not have", src, m.Name, vs.Name)
				}
			}
			return nil
		})
	}
	for _, name := range []string{
		"caddy_webhooks_outbox_pending", "caddy_webhooks_outbox_oldest_pending_seconds",
		"caddy_webhooks_delivery_attempts_total", "caddy_webhooks_deliveries_failed_total",
		"caddy_webhooks_receiver_verifications_total",
	} {
		if !used[name] {
			t.Errorf("no dashboard panel or alert uses %s", name)
		}
	}
}

// seriesLabels maps each series name of a scrape (a histogram's _bucket,
// _sum and _count included) to its label names.
func seriesLabels(m testkit.Metrics) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, s := range m {
		if out[s.Name] == nil {
			out[s.Name] = map[string]bool{}
		}
		for l := range s.Labels {
			out[s.Name][l] = true
		}
	}
	return out
}

// collectExprs gathers every "expr" string of a Grafana dashboard.
func collectExprs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "expr" {
				*out = append(*out, s)
				continue
			}
			collectExprs(e, out)
		}
	case []any:
		for _, e := range x {
			collectExprs(e, out)
		}
	}
}
