package caddymodule

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// checkEventRoutes sends the event log, replay, recover-by-status and
// operational routes their answers for TestOpenAPIMatchesResponses; one is
// the path of a webhook of app1 whose endpoint answers 500.
func checkEventRoutes(t *testing.T, c *specChecker, ob *outbox.Outbox, endpoint, one, big string) {
	t.Helper()
	// With an operational webhook, the failure below reports delivery.exhausted.
	ob.Configure(outbox.Options{
		RetrySchedule:     []time.Duration{},
		AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Operational:       &outbox.OperationalWebhook{URL: endpoint + "/ops", Secret: "ops-secret"},
	})
	res, err := ob.Ingest(t.Context(), []byte(`{"event":"job_finished","data":{"appId":"app1","n":7}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	const events = "/webhooks/apps/app1/events"
	var page struct {
		Data []struct {
			ID   string `json:"id"`
			Body string `json:"body"`
		} `json:"data"`
	}
	c.check(200, "GET", events, "").decode(t, &page)
	if len(page.Data) == 0 || page.Data[0].ID != res.ID || page.Data[0].Body != `{"event":"job_finished","data":{"appId":"app1","n":7}}` {
		t.Fatalf("the event log starts with %+v, want event %s byte for byte", page.Data, res.ID)
	}
	filtered := events + "?" + url.Values{
		"event": {"job_finished"}, "since": {"2020-01-01T00:00:00Z"}, "until": {"2100-01-01T00:00:00Z"},
		"filter": {"data.n == 7"}, "limit": {"1"},
	}.Encode()
	c.check(200, "GET", filtered, "").decode(t, &page)
	if len(page.Data) != 1 || page.Data[0].ID != res.ID {
		t.Fatalf("filtered log: %+v, want only %s", page.Data, res.ID)
	}
	c.check(400, "GET", events+"?since=yesterday", "")
	c.check(400, "GET", events+"?filter="+url.QueryEscape("data."), "")
	c.check(400, "GET", events+"?event=nope", "")
	// The operational app's id is not a valid app id, so no path reaches it.
	c.check(400, "GET", "/webhooks/apps/"+url.PathEscape(outbox.OperationalApp)+"/events", "")
	c.check(200, "GET", events+"/"+res.ID, "")
	c.check(404, "GET", events+"/nope", "")

	c.check(202, "POST", one+"/replay", `{"since":"2020-01-01T00:00:00Z","until":"2100-01-01T00:00:00Z"}`)
	c.check(400, "POST", one+"/replay", `{}`)
	c.check(404, "POST", strings.TrimSuffix(one, "/"+one[strings.LastIndexByte(one, '/')+1:])+"/nope/replay", `{"since":"2020-01-01T00:00:00Z"}`)
	c.check(413, "POST", one+"/replay", big)
	c.check(415, "POST", one+"/replay", `{}`, "Content-Type", "text/plain")

	c.check(202, "POST", one+"/recover", `{"since":"2020-01-01T00:00:00Z","status":["skipped"]}`)
	c.check(400, "POST", one+"/recover", `{"since":"2020-01-01T00:00:00Z","status":["pending"]}`)

	const ops = "/webhooks/operational/deliveries"
	var history struct {
		Data []struct {
			ID    string `json:"id"`
			Event string `json:"event"`
		} `json:"data"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(history.Data) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("after 30s no delivery.exhausted in the operational history")
		}
		time.Sleep(20 * time.Millisecond)
		c.check(200, "GET", ops+"?event=delivery.exhausted&limit=100", "").decode(t, &history)
	}
	c.check(200, "GET", ops+"/"+history.Data[0].ID, "")
	c.check(404, "GET", ops+"/nope", "")
	c.check(400, "GET", ops+"?limit=0", "")
}
