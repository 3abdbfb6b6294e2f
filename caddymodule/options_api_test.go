package caddymodule

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// The per-webhook options through the API: every bad value answers 400
// naming its field and stores nothing; sensitive header values never come
// back; PATCH merges headers and null returns a setting to the default.
func TestWebhookOptionsAPI(t *testing.T) {
	ob, endpoint := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	const base = "/webhooks/apps/app1/webhooks"
	valid := `"name":"x","url":"https://example.com","events":["job_finished"]`
	// 50 retries, the last of them 168h: both bounds exactly.
	fifty := `["` + strings.Repeat(`1s","`, 49) + `168h"]`
	fiftyOne := `["` + strings.Repeat(`1s","`, 50) + `1s"]`
	runAPICases(t, h, []apiCase{
		{"headers not an object", "POST", base, `{` + valid + `,"headers":["X-A"]}`, 400, `"headers: must be an object`},
		{"header value not a string", "POST", base, `{` + valid + `,"headers":{"X-A":1}}`, 400, `"headers: the value of \"X-A\" must be a string`},
		{"reserved header", "POST", base, `{` + valid + `,"headers":{"user-agent":"x"}}`, 400, `"headers: User-Agent is set by the sender`},
		{"header with CR LF", "POST", base, `{` + valid + `,"headers":{"X-Api-Key":"top\r\nX-Evil: 1"}}`, 400, `"headers: the value of X-Api-Key contains CR or LF`},
		{"filter not a string", "POST", base, `{` + valid + `,"filter":true}`, 400, `"filter: must be a string`},
		{"filter does not compile", "POST", base, `{` + valid + `,"filter":"data.x ==="}`, 400, `"filter: ERROR: \u003cinput\u003e:1:10: Syntax error`},
		{"filter not bool", "POST", base, `{` + valid + `,"filter":"data.x"}`, 400, `"filter: must be of type bool`},
		{"retry not a list", "POST", base, `{` + valid + `,"retrySchedule":"1s"}`, 400, `"retrySchedule: must be an array`},
		{"retry entry not a duration", "POST", base, `{` + valid + `,"retrySchedule":["soon"]}`, 400, `"retrySchedule: \"soon\" is not a duration`},
		{"retry 51 entries", "POST", base, `{` + valid + `,"retrySchedule":` + fiftyOne + `}`, 400, `"retrySchedule: at most 50 retries, not 51`},
		{"retry over 168h", "POST", base, `{` + valid + `,"retrySchedule":["1s","168h0m1s"]}`, 400, `"retrySchedule: each wait must be from 0s to 168h0m0s, not 168h0m1s`},
		{"timeout a number", "POST", base, `{` + valid + `,"timeout":5}`, 400, `"timeout: must be a duration`},
		{"timeout too long", "POST", base, `{` + valid + `,"timeout":"2h"}`, 400, `"timeout: must be more than 0s and at most 1m0s`},
		{"maxInFlight a string", "POST", base, `{` + valid + `,"maxInFlight":"2"}`, 400, `"maxInFlight: must be an integer`},
		{"maxInFlight fractional", "POST", base, `{` + valid + `,"maxInFlight":1.5}`, 400, `"maxInFlight: must be an integer`},
		{"maxInFlight too big", "POST", base, `{` + valid + `,"maxInFlight":1000}`, 400, `"maxInFlight: must be an integer from 1 to 256`},
		{"rateLimit negative", "POST", base, `{` + valid + `,"rateLimit":-1}`, 400, `"rateLimit: must be an integer from 1 to`},
		{"nothing stored", "GET", base, "", 200, `{"data":[]}`},
	})

	res := call(t, h, "POST", base, `{"name":"opts","url":"`+endpoint+`/h","events":["job_finished"],
		"headers":{"authorization":"Bearer tok-123","X-Api-Key":"key-456","X-Team":"ops"},
		"filter":"data.appId == 'app1'","retrySchedule":["10s","1m"],"timeout":"5s","maxInFlight":2,"rateLimit":3}`)
	if res.status != 201 {
		t.Fatalf("create answered %d %s", res.status, res.body)
	}
	for _, secret := range []string{"tok-123", "key-456"} {
		if strings.Contains(res.body, secret) {
			t.Fatalf("create answered a sensitive header's value: %s", res.body)
		}
	}
	for _, want := range []string{`"headers":{"X-Team":"ops"}`, `"sensitiveHeaders":["Authorization","X-Api-Key"]`,
		`"retrySchedule":["10s","1m0s"]`, `"timeout":"5s"`, `"maxInFlight":2`, `"rateLimit":3`, `"filter":"data.appId == 'app1'"`} {
		if !strings.Contains(res.body, want) {
			t.Errorf("create answered %s, want %s in it", res.body, want)
		}
	}
	var hook struct{ ID string }
	res.decode(t, &hook)
	one := base + "/" + hook.ID
	runAPICases(t, h, []apiCase{
		{"merge headers", "PATCH", one, `{"headers":{"X-Team":null,"X-Env":"prod"}}`, 200, `"headers":{"X-Env":"prod"},"sensitiveHeaders":["Authorization","X-Api-Key"]`},
		{"bad edit keeps the webhook", "PATCH", one, `{"rateLimit":0,"name":"changed"}`, 400, "rateLimit"},
		{"unchanged after a bad edit", "GET", one, "", 200, `"name":"opts"`},
		{"null returns to the default", "PATCH", one, `{"timeout":null,"maxInFlight":null,"rateLimit":null,"retrySchedule":null}`, 200, `"filter":"data.appId == 'app1'","createdAt"`},
		{"50 retries up to 168h", "PATCH", one, `{"retrySchedule":` + fifty + `}`, 200, strings.Repeat(`"1s",`, 49) + `"168h0m0s"]`},
		{"51 retries refused on edit", "PATCH", one, `{"retrySchedule":` + fiftyOne + `}`, 400, `"retrySchedule: at most 50`},
		{"single attempt", "PATCH", one, `{"retrySchedule":[]}`, 200, `"retrySchedule":[]`},
		{"remove every header", "PATCH", one, `{"headers":null,"filter":null}`, 200, `"retrySchedule":[],"createdAt"`},
	})
}
