package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// The operator's side: operational webhooks, the event log, replay and
// recovery of skipped deliveries, on real sidecars and endpoints, on
// Badger (one sidecar) and PostgreSQL (two sidecars on one database, to
// see each state change reported once for the fleet).

const opsSecret = "ops-secret-e2e"

// opsWait bounds each wait of these tests: generous, for a busy machine.
const opsWait = 60 * time.Second

func opsOption(rc *testkit.Recorder) string {
	return fmt.Sprintf("operational_webhook %s {\n\t\t\tsecret %s\n\t\t}", rc.URL("/ops"), opsSecret)
}

func TestOperationsBadger(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{Options: opsOption(rc)}, "")
	checkOperations(t, rc, []*sender{s})
}

func TestOperationsPostgres(t *testing.T) {
	dsn := fleetDSN(t)
	rc := testkit.NewRecorder(t)
	var fleet []*sender
	for range 2 {
		port := testkit.FreePort(t)
		cfg := senderConfig{Port: port, Storage: "{env.WEBHOOKS_DSN}", Options: opsOption(rc)}
		p := testcaddy.Start(t, testcaddy.Config{Caddyfile: cfg.caddyfile(), Env: []string{"WEBHOOKS_DSN=" + dsn}})
		fleet = append(fleet, &sender{Process: p, cfg: cfg})
	}
	checkOperations(t, rc, fleet)
}

// opsReport is an operational event as the operational endpoint got it.
type opsReport struct {
	Event string         `json:"event"`
	Data  map[string]any `json:"data"`
}

func reports(t *testing.T, rc *testkit.Recorder, event string) []opsReport {
	t.Helper()
	var out []opsReport
	for _, r := range rc.Requests("/ops") {
		var rep opsReport
		if err := json.Unmarshal(r.Body, &rep); err != nil {
			t.Fatalf("operational report %q: %v", r.Body, err)
		}
		if want := testkit.HexHMAC(opsSecret, r.Body); r.Header.Get("X-Signature") != want {
			t.Fatalf("operational report signed %q, want %q", r.Header.Get("X-Signature"), want)
		}
		if strings.Contains(string(r.Body), opsSecret) || strings.Contains(string(r.Body), "hook-secret") {
			t.Fatalf("operational report carries a secret: %s", r.Body)
		}
		if rep.Event == event {
			out = append(out, rep)
		}
	}
	return out
}

type loggedEvent struct {
	ID         string `json:"id"`
	Event      string `json:"event"`
	Body       string `json:"body"`
	Deliveries int    `json:"deliveries"`
}

func eventLog(t *testing.T, s *sender, query url.Values) []loggedEvent {
	t.Helper()
	status, body := call(t, http.MethodGet, s.adminURL("/webhooks/apps/app1/events?"+query.Encode()), nil)
	if status != http.StatusOK {
		t.Fatalf("event log %v answered %d %s", query, status, body)
	}
	return decode[listJSON[loggedEvent]](t, "event log", body).Data
}

func eventIDs(evs []loggedEvent) []string {
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

func checkOperations(t *testing.T, rc *testkit.Recorder, fleet []*sender) {
	first := fleet[0]
	rc.SetRespond(func(r testkit.Request, nth int) (int, string) {
		switch r.Path {
		case "/gone":
			return http.StatusGone, "gone"
		case "/fail":
			return http.StatusInternalServerError, "down"
		}
		return http.StatusOK, "ok"
	})
	start := time.Now().Add(-time.Second).UTC()
	gone := first.createWebhook(t, "app1", map[string]any{"name": "gone", "url": rc.URL("/gone"), "events": []string{"job_finished"}, "secret": "hook-secret"})
	for _, s := range fleet {
		waitListed(t, []*sender{s}, "app1", gone.ID)
	}

	// An endpoint answering 410, hit through every sidecar: one signed
	// webhook.disabled for the fleet.
	for i, s := range fleet {
		s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":"app1","n":%d}}`, i))
	}
	wait.Within(t, opsWait, "a webhook.disabled report", func() bool { return len(reports(t, rc, "webhook.disabled")) > 0 })
	dis := reports(t, rc, "webhook.disabled")[0].Data
	if dis["webhookId"] != gone.ID || dis["reason"] != "gone" || dis["webhookName"] != "gone" || dis["appId"] != "app1" {
		t.Errorf("webhook.disabled data: %v", dis)
	}
	wait.Within(t, opsWait, "every delivery to the 410 webhook finished", func() bool {
		for _, d := range first.deliveries(t, "app1", gone.ID) {
			if d.Status == "pending" {
				return false
			}
		}
		return true
	})
	// One more event for the disabled webhook: a skipped delivery.
	skippedEvent := first.mustIngest(t, []byte(`{"event":"job_finished","data":{"appId":"app1","n":10}}`))

	// A delivery exhausting its schedule (3 attempts): delivery.exhausted.
	fail := first.createWebhook(t, "app1", map[string]any{"name": "fail", "url": rc.URL("/fail"), "events": []string{"job_created"}})
	waitListed(t, fleet, "app1", fail.ID)
	created := fleet[len(fleet)-1].mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"app1","n":20,"status":"failed"}}`))
	wait.Within(t, opsWait, "a delivery.exhausted report", func() bool { return len(reports(t, rc, "delivery.exhausted")) > 0 })
	ex := reports(t, rc, "delivery.exhausted")[0].Data
	if ex["webhookId"] != fail.ID || ex["eventId"] != created.ID || ex["attempts"] != float64(3) || ex["responseStatusCode"] != float64(500) {
		t.Errorf("delivery.exhausted data: %v", ex)
	}
	if n := len(reports(t, rc, "webhook.disabled")); n != 1 {
		t.Errorf("%d webhook.disabled reports for one webhook disabled, want 1", n)
	}
	// The operational history shows both, delivered.
	status, body := call(t, http.MethodGet, first.adminURL("/webhooks/operational/deliveries?limit=100"), nil)
	hist := decode[listJSON[deliveryJSON]](t, "operational history", body)
	var types []string
	for _, d := range hist.Data {
		types = append(types, d.Event)
	}
	if status != http.StatusOK || !slices.Contains(types, "webhook.disabled") || !slices.Contains(types, "delivery.exhausted") {
		t.Errorf("operational history %d: %v", status, types)
	}
	wait.Within(t, opsWait, "the operational events counted", func() bool {
		v, _ := first.metrics(t).Value("caddy_webhooks_operational_events_total", "event", "webhook.disabled")
		if len(fleet) > 1 {
			v2, _ := fleet[1].metrics(t).Value("caddy_webhooks_operational_events_total", "event", "webhook.disabled")
			v += v2
		}
		return v == 1
	})

	// The event log: by type, time and CEL filter, bodies byte for byte.
	all := eventLog(t, first, url.Values{"limit": {"100"}})
	if len(all) != len(fleet)+2 || all[0].ID != created.ID || all[0].Body != `{"event":"job_created","data":{"appId":"app1","n":20,"status":"failed"}}` {
		t.Fatalf("event log: %+v, want %d events, the newest %s byte for byte", all, len(fleet)+2, created.ID)
	}
	if got := eventIDs(eventLog(t, first, url.Values{"event": {"job_created"}})); !slices.Equal(got, []string{created.ID}) {
		t.Errorf("job_created events: %v, want [%s]", got, created.ID)
	}
	if got := eventIDs(eventLog(t, first, url.Values{"filter": {`has(data.status) && data.status == "failed"`}})); !slices.Equal(got, []string{created.ID}) {
		t.Errorf("filtered events: %v, want [%s]", got, created.ID)
	}
	if got := eventLog(t, first, url.Values{"since": {start.Add(-2 * time.Hour).Format(time.RFC3339)}, "until": {start.Add(-time.Hour).Format(time.RFC3339)}}); len(got) != 0 {
		t.Errorf("events until an hour ago: %v", got)
	}
	if got := eventIDs(eventLog(t, first, url.Values{"event": {"job_finished"}, "since": {start.Format(time.RFC3339Nano)}})); len(got) != len(fleet)+1 {
		t.Errorf("job_finished since the start: %v", got)
	}
	status, body = call(t, http.MethodGet, first.adminURL("/webhooks/apps/app1/events/"+created.ID), nil)
	var detail struct {
		Deliveries []struct{ ID, WebhookID, Status string } `json:"deliveries"`
	}
	if err := json.Unmarshal(body, &detail); status != http.StatusOK || err != nil || len(detail.Deliveries) != 1 || detail.Deliveries[0].WebhookID != fail.ID || detail.Deliveries[0].Status != "failed" {
		t.Errorf("event %s answered %d %s, want its one failed delivery to %s", created.ID, status, body, fail.ID)
	}

	// Replay backfills a new webhook with the original ids; again, nothing.
	late := first.createWebhook(t, "app1", map[string]any{"name": "late", "url": rc.URL("/late"), "events": []string{"job_finished", "job_created"}})
	replay := first.adminURL("/webhooks/apps/app1/webhooks/" + late.ID + "/replay")
	status, body = call(t, http.MethodPost, replay, map[string]any{"since": start.Format(time.RFC3339Nano)})
	if status != http.StatusAccepted || strings.TrimSpace(string(body)) != fmt.Sprintf(`{"replayed":%d}`, len(all)) {
		t.Fatalf("replay answered %d %s, want 202 {\"replayed\":%d}", status, body, len(all))
	}
	wait.Within(t, opsWait, "the replayed events at the new webhook", func() bool { return rc.Count("/late") == len(all) })
	var got []string
	for _, r := range rc.Requests("/late") {
		got = append(got, r.Header.Get("Webhook-Id"))
	}
	want := eventIDs(all)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("replayed webhook-ids %v, want the events' ids %v", got, want)
	}
	status, body = call(t, http.MethodPost, fleet[len(fleet)-1].adminURL("/webhooks/apps/app1/webhooks/"+late.ID+"/replay"), map[string]any{"since": start.Format(time.RFC3339Nano)})
	if status != http.StatusAccepted || strings.TrimSpace(string(body)) != `{"replayed":0}` {
		t.Errorf("second replay answered %d %s, want 202 {\"replayed\":0}", status, body)
	}

	// Bad input: 400 naming the field, and nothing stored.
	before := len(first.allDeliveries(t, "app1", late.ID))
	for _, c := range []struct {
		method, path, body, field string
	}{
		{"POST", "/webhooks/apps/app1/webhooks/" + late.ID + "/replay", `{"since":"yesterday"}`, "since"},
		{"POST", "/webhooks/apps/app1/webhooks/" + late.ID + "/replay", `{}`, "since"},
		{"POST", "/webhooks/apps/app1/webhooks/" + late.ID + "/replay", `{"since":"2030-01-01T00:00:00Z","until":"2020-01-01T00:00:00Z"}`, "until"},
		{"POST", "/webhooks/apps/app1/webhooks/" + late.ID + "/replay", `{"since":"2020-01-01T00:00:00Z","window":1}`, "window"},
		{"POST", "/webhooks/apps/app1/webhooks/" + late.ID + "/recover", `{"since":"2020-01-01T00:00:00Z","status":["pending"]}`, "status"},
		{"GET", "/webhooks/apps/app1/events?filter=" + url.QueryEscape("data."), "", "filter"},
		{"GET", "/webhooks/apps/app1/events?since=monday", "", "since"},
		{"GET", "/webhooks/apps/app1/events?limit=1000", "", "limit"},
	} {
		var b any
		if c.body != "" {
			b = c.body
		}
		status, body := call(t, c.method, first.adminURL(c.path), b)
		e := decode[errorJSON](t, c.path, body)
		if status != http.StatusBadRequest || !strings.HasPrefix(e.Error, c.field) {
			t.Errorf("%s %s %s answered %d %s, want 400 naming %s", c.method, c.path, c.body, status, body, c.field)
		}
	}
	if after := len(first.allDeliveries(t, "app1", late.ID)); after != before {
		t.Errorf("bad requests changed the history from %d to %d deliveries", before, after)
	}

	// The skipped delivery is recovered once the webhook is back.
	rc.SetRespond(func(r testkit.Request, nth int) (int, string) { return http.StatusOK, "ok" })
	if status, body := call(t, http.MethodPatch, first.hooksURL("app1")+"/"+gone.ID, map[string]any{"enabled": true}); status != http.StatusOK {
		t.Fatalf("enabling answered %d %s", status, body)
	}
	goneBefore := rc.Count("/gone")
	status, body = call(t, http.MethodPost, first.hooksURL("app1")+"/"+gone.ID+"/recover",
		map[string]any{"since": start.Format(time.RFC3339Nano), "status": []string{"skipped"}})
	var rec struct{ Recovered int }
	if err := json.Unmarshal(body, &rec); status != http.StatusAccepted || err != nil || rec.Recovered < 1 {
		t.Fatalf("recover of skipped deliveries answered %d %s, want 202 with at least 1", status, body)
	}
	wait.Within(t, opsWait, "the skipped deliveries sent", func() bool { return rc.Count("/gone") == goneBefore+rec.Recovered })
	var sent []string
	for _, r := range rc.Requests("/gone")[goneBefore:] {
		sent = append(sent, r.Header.Get("Webhook-Id"))
	}
	if !slices.Contains(sent, skippedEvent.ID) {
		t.Errorf("recovered deliveries sent with webhook-ids %v, want the skipped event's %s among them", sent, skippedEvent.ID)
	}
}
