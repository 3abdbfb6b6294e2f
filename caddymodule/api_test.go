package caddymodule

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
)

const testSecret = "very-secret-signing-key"

// newTestOutbox runs a real outbox on a Badger store in a temp dir; its
// deliveries go to a local endpoint that answers 500, attempted once. At
// /slow the endpoint answers only when the test ends.
func newTestOutbox(t *testing.T) (*outbox.Outbox, string) {
	t.Helper()
	release := make(chan struct{})
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	t.Cleanup(endpoint.Close)
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ob := outbox.New(store, outbox.Options{
		RetrySchedule:     []time.Duration{},
		AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	ob.Start()
	t.Cleanup(func() { ob.Close() })
	t.Cleanup(func() { close(release) })
	return ob, endpoint.URL
}

type apiResponse struct {
	status int
	header http.Header
	body   string
}

func (r apiResponse) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
}

func call(t *testing.T, h http.Handler, method, path, body string, header ...string) apiResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := apiResponse{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if strings.Contains(res.body, testSecret) {
		t.Errorf("%s %s echoed the secret: %s", method, path, res.body)
	}
	if res.status != http.StatusNoContent {
		if ct := res.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s answered Content-Type %q, want application/json", method, path, ct)
		}
	}
	if res.status >= 400 {
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(res.body), &e); err != nil || e.Error == "" {
			t.Errorf("%s %s answered %d with %q, want {\"error\": ...}", method, path, res.status, res.body)
		}
	}
	return res
}

func TestAPIWebhooks(t *testing.T) {
	ob, url := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	const base = "/webhooks/apps/app1/webhooks"

	res := call(t, h, "POST", base, `{"name":"ci","url":"`+url+`/hook","events":["job_finished"],"secret":"`+testSecret+`"}`)
	if res.status != http.StatusCreated {
		t.Fatalf("create answered %d %s, want 201", res.status, res.body)
	}
	var hook struct {
		ID        string   `json:"id"`
		AppID     string   `json:"appId"`
		Events    []string `json:"events"`
		HasSecret bool     `json:"hasSecret"`
		Enabled   bool     `json:"enabled"`
	}
	res.decode(t, &hook)
	if hook.ID == "" || hook.AppID != "app1" || !hook.HasSecret || !hook.Enabled {
		t.Fatalf("created webhook = %+v", hook)
	}
	if loc := res.header.Get("Location"); loc != base+"/"+hook.ID {
		t.Errorf("Location = %q", loc)
	}
	one := base + "/" + hook.ID

	runAPICases(t, h, []apiCase{
		{"list", "GET", base, "", 200, `"data":[{"id":"` + hook.ID},
		{"list of another app", "GET", "/webhooks/apps/other/webhooks", "", 200, `{"data":[]}`},
		{"apps", "GET", "/webhooks/apps", "", 200, `{"data":["app1"]}`},
		{"catalog", "GET", "/webhooks/events", "", 200, `"job_finished"`},
		{"get", "GET", one, "", 200, `"hasSecret":true`},
		{"get unknown", "GET", base + "/nope", "", 404, "webhook not found"},
		{"patch", "PATCH", one, `{"name":"renamed","enabled":false}`, 200, `"name":"renamed"`},
		{"patch unknown", "PATCH", base + "/nope", `{"name":"x"}`, 404, "webhook not found"},
		{"unknown field", "POST", base, `{"name":"x","url":"https://example.com","events":["job_finished"],"colour":"red"}`, 400, "colour"},
		{"wrong type", "POST", base, `{"name":"x","url":"https://example.com","events":"job_finished"}`, 400, "events"},
		{"wrong type in patch", "PATCH", one, `{"enabled":"yes"}`, 400, "enabled"},
		{"missing name", "POST", base, `{"url":"https://example.com","events":["job_finished"]}`, 400, "name"},
		{"bad url", "POST", base, `{"name":"x","url":"ftp://example.com","events":["job_finished"]}`, 400, "url"},
		{"refused destination", "POST", base, `{"name":"x","url":"http://169.254.169.254/","events":["job_finished"]}`, 400, "url"},
		{"unknown event", "POST", base, `{"name":"x","url":"https://example.com","events":["nope"]}`, 400, "events"},
		{"no events", "POST", base, `{"name":"x","url":"https://example.com","events":[]}`, 400, "events"},
		{"malformed", "POST", base, `{"name":`, 400, "malformed JSON"},
		{"two values", "POST", base, `{"name":"x"} {}`, 400, "malformed JSON"},
		{"not an object", "POST", base, `[1]`, 400, "JSON object"},
		{"secret in a type error", "PATCH", one, `{"secret":["` + testSecret + `"]}`, 400, "secret"},
		{"too large", "POST", base, `{"name":"` + strings.Repeat("x", maxAPIBody) + `"}`, 413, "larger than"},
		{"unknown route", "GET", "/webhooks/nope", "", 404, "no such resource"},
		{"wrong method", "PUT", one, `{}`, 405, "not allowed"},
		{"delete", "DELETE", one, "", 204, ""},
		{"delete again", "DELETE", one, "", 404, "webhook not found"},
	})
}

func TestAPIMethodNotAllowed(t *testing.T) {
	ob, _ := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	res := call(t, h, "DELETE", "/webhooks/apps", "")
	if res.status != http.StatusMethodNotAllowed || !strings.Contains(res.header.Get("Allow"), "GET") {
		t.Fatalf("DELETE /webhooks/apps answered %d Allow=%q, want 405 with Allow: GET", res.status, res.header.Get("Allow"))
	}
}

func TestAPINotRunning(t *testing.T) {
	h := newAPI(func() *outbox.Outbox { return nil }, zap.NewNop())
	res := call(t, h, "GET", "/webhooks/apps", "")
	if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
		t.Fatalf("API before the app started answered %d (Retry-After %q), want 503 with Retry-After", res.status, res.header.Get("Retry-After"))
	}
}

func TestAPICrossOrigin(t *testing.T) {
	ob, _ := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	res := call(t, h, "POST", "/webhooks/apps/a/webhooks", `{}`, "Sec-Fetch-Site", "cross-site")
	if res.status != http.StatusForbidden {
		t.Fatalf("cross-site POST answered %d, want 403", res.status)
	}
	res = call(t, h, "GET", "/webhooks/apps", "", "Sec-Fetch-Site", "cross-site")
	if res.status != http.StatusOK {
		t.Fatalf("cross-site GET answered %d, want 200", res.status)
	}
}

func TestAPIDeliveries(t *testing.T) {
	ob, url := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	const base = "/webhooks/apps/app1/webhooks"

	var hook struct{ ID string }
	call(t, h, "POST", base, `{"name":"ci","url":"`+url+`","events":["job_finished"]}`).decode(t, &hook)
	one := base + "/" + hook.ID

	// A delivery that stays pending: its attempt hangs until the test ends.
	var slow struct{ ID string }
	call(t, h, "POST", base, `{"name":"slow","url":"`+url+`/slow","events":["job_created"]}`).decode(t, &slow)
	if _, err := ob.Ingest(t.Context(), []byte(`{"event":"job_created","data":{"appId":"app1"}}`), ""); err != nil {
		t.Fatal(err)
	}
	var pending struct {
		Data []struct{ ID string } `json:"data"`
	}
	call(t, h, "GET", base+"/"+slow.ID+"/deliveries", "").decode(t, &pending)
	if len(pending.Data) != 1 {
		t.Fatalf("want one delivery to the slow webhook, got %d", len(pending.Data))
	}

	const event = `{"event":"job_finished","data":{"appId":"app1","n":1}}`
	for range 3 {
		if _, err := ob.Ingest(t.Context(), []byte(event), ""); err != nil {
			t.Fatal(err)
		}
	}

	// Wait until the three deliveries failed (one attempt each).
	var page struct {
		Data []struct {
			ID                 string     `json:"id"`
			Status             string     `json:"status"`
			Attempts           int        `json:"attempts"`
			ResponseStatusCode int        `json:"responseStatusCode"`
			ResponseBody       string     `json:"responseBody"`
			SentAt             *time.Time `json:"sentAt"`
			RequestBody        string     `json:"requestBody"`
		} `json:"data"`
		NextCursor *string `json:"nextCursor"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := call(t, h, "GET", one+"/deliveries?status=failed", "")
		if res.status != 200 {
			t.Fatalf("deliveries answered %d %s", res.status, res.body)
		}
		res.decode(t, &page)
		if len(page.Data) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(page.Data) != 3 {
		t.Fatalf("want 3 failed deliveries, got %d", len(page.Data))
	}
	d := page.Data[0]
	if d.Attempts != 1 || d.ResponseStatusCode != 500 || d.SentAt == nil || !strings.Contains(d.ResponseBody, "nope") {
		t.Errorf("delivery summary = %+v", d)
	}
	if string(d.RequestBody) != event {
		t.Errorf("requestBody = %s, want the event as posted %s", d.RequestBody, event)
	}
	if page.NextCursor != nil {
		t.Errorf("nextCursor = %q on the only page", *page.NextCursor)
	}

	// Paging: two pages of 2 and 1.
	res := call(t, h, "GET", one+"/deliveries?limit=2", "")
	res.decode(t, &page)
	if len(page.Data) != 2 || page.NextCursor == nil {
		t.Fatalf("first page of 2: %s", res.body)
	}
	res = call(t, h, "GET", one+"/deliveries?limit=2&cursor="+*page.NextCursor, "")
	page.NextCursor = nil
	res.decode(t, &page)
	if len(page.Data) != 1 || page.NextCursor != nil {
		t.Fatalf("second page: %s", res.body)
	}

	res = call(t, h, "GET", one+"/deliveries/"+d.ID, "")
	var full struct {
		ID         string           `json:"id"`
		AttemptLog []outbox.Attempt `json:"attemptLog"`
	}
	res.decode(t, &full)
	if res.status != 200 || full.ID != d.ID || len(full.AttemptLog) != 1 || full.AttemptLog[0].ResponseStatusCode != 500 {
		t.Errorf("one delivery: %d %s", res.status, res.body)
	}

	runAPICases(t, h, []apiCase{
		{"bad limit", "GET", one + "/deliveries?limit=x", "", 400, "limit"},
		{"limit too big", "GET", one + "/deliveries?limit=1000", "", 400, "limit"},
		{"bad status", "GET", one + "/deliveries?status=lost", "", 400, "status"},
		{"deliveries of unknown webhook", "GET", base + "/nope/deliveries", "", 404, "not found"},
		{"unknown delivery", "GET", one + "/deliveries/nope", "", 404, "delivery not found"},
		{"resend", "POST", one + "/deliveries/" + d.ID + "/resend", "", 202, `"status":"pending"`},
		{"resend pending", "POST", base + "/" + slow.ID + "/deliveries/" + pending.Data[0].ID + "/resend", "", 409, "pending"},
		{"resend unknown", "POST", one + "/deliveries/nope/resend", "", 404, "not found"},
		{"test", "POST", one + "/test", "", 202, `\"test\":true`},
		{"test unknown webhook", "POST", base + "/nope/test", "", 404, "webhook not found"},
		{"recover without since", "POST", one + "/recover", `{}`, 400, "since"},
		{"recover bad since", "POST", one + "/recover", `{"since":"yesterday"}`, 400, "since"},
		{"recover unknown webhook", "POST", base + "/nope/recover", `{"since":"2020-01-01T00:00:00Z"}`, 404, "webhook not found"},
	})

	// Once the resend and the test have failed too, recover resends the
	// four failed deliveries: the three events and the test.
	wait.Until(t, "the resent and test deliveries to fail", func() bool {
		var all struct{ Data []struct{ Status string } }
		call(t, h, "GET", one+"/deliveries?status=failed", "").decode(t, &all)
		return len(all.Data) == 4
	})
	runAPICases(t, h, []apiCase{
		{"recover", "POST", one + "/recover", `{"since":"2020-01-01T00:00:00Z"}`, 202, `{"recovered":4}`},
		{"recover after now", "POST", one + "/recover", `{"since":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`, 202, `{"recovered":0}`},
	})
}

// apiCase is one request to the API and what its answer must show.
type apiCase struct {
	name, method, path, body string
	status                   int
	contains                 string
}

func runAPICases(t *testing.T, h http.Handler, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := call(t, h, tc.method, tc.path, tc.body)
			if res.status != tc.status {
				t.Fatalf("%s %s answered %d %s, want %d", tc.method, tc.path, res.status, res.body, tc.status)
			}
			if !strings.Contains(res.body, tc.contains) {
				t.Errorf("%s %s answered %s, want it to contain %q", tc.method, tc.path, res.body, tc.contains)
			}
		})
	}
}
