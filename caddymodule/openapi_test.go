package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// loadOpenAPI loads and validates the embedded document (its examples
// included, which the loader checks against their schemas).
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadOpenAPI(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi.json declares OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	// DESIGN.md's table, then the routes the console added to it.
	for _, route := range []string{
		"GET /webhooks/apps/{appId}/webhooks",
		"POST /webhooks/apps/{appId}/webhooks",
		"GET /webhooks/apps/{appId}/webhooks/{id}",
		"PATCH /webhooks/apps/{appId}/webhooks/{id}",
		"DELETE /webhooks/apps/{appId}/webhooks/{id}",
		"GET /webhooks/apps/{appId}/webhooks/{id}/deliveries",
		"GET /webhooks/apps/{appId}/webhooks/{id}/deliveries/{deliveryId}",
		"POST /webhooks/apps/{appId}/webhooks/{id}/deliveries/{deliveryId}/resend",
		"POST /webhooks/apps/{appId}/webhooks/{id}/test",
		"POST /webhooks/apps/{appId}/webhooks/{id}/recover",
		"GET /webhooks/apps/{appId}/webhooks/{id}/stats",
		"GET /webhooks/events",
		"GET /webhooks/apps",
		"GET /webhooks/openapi.json",
		"POST /webhooks/apps/{appId}/portal-tokens",
		"DELETE /webhooks/apps/{appId}/portal-tokens",
		"GET /webhooks/apps/{appId}/events",
		"GET /webhooks/apps/{appId}/events/{eventId}",
		"POST /webhooks/apps/{appId}/webhooks/{id}/replay",
		"GET /webhooks/operational/deliveries",
	} {
		method, path, _ := strings.Cut(route, " ")
		if doc.Paths.Find(path) == nil || doc.Paths.Find(path).GetOperation(method) == nil {
			t.Errorf("openapi.json does not describe %s", route)
		}
	}
	// The example users copy is the one of the Capawesome page.
	if !bytes.Contains(openAPIDocument, []byte(`"16555c02-a320-4bec-a14a-52754d783970"`)) {
		t.Error("openapi.json lacks the job_finished example of the Capawesome page")
	}
}

// specChecker sends requests to the API and checks each answer against
// the document, recording which documented statuses were seen.
type specChecker struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	h      http.Handler
	seen   map[string]bool // "operationId status"
}

func newSpecChecker(t *testing.T, h http.Handler) *specChecker {
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &specChecker{t: t, doc: doc, router: router, h: h, seen: map[string]bool{}}
}

// check sends a request, requires the status want and validates the answer
// (and, when it is a success, the request) against the document.
func (c *specChecker) check(want int, method, path, body string, header ...string) apiResponse {
	t := c.t
	t.Helper()
	res := call(t, c.h, method, path, body, header...)
	if res.status != want {
		t.Fatalf("%s %s answered %d %s, want %d", method, path, res.status, res.body, want)
	}
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in openapi.json: %v", method, path, err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true, // a status the document omits is drift
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if res.status < 300 {
		// The server took it, so the document must describe it as valid.
		if err := openapi3filter.ValidateRequest(t.Context(), in); err != nil {
			t.Errorf("%s %s with %s: openapi.json refuses a request the API accepted: %v", method, path, body, err)
		}
	}
	err = openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 res.status,
		Header:                 res.header,
		Body:                   io.NopCloser(strings.NewReader(res.body)),
		Options:                opts,
	})
	if err != nil {
		t.Errorf("%s %s answered %d %s, which openapi.json does not describe: %v", method, path, res.status, res.body, err)
	}
	c.seen[route.Operation.OperationID+" "+strconv.Itoa(res.status)] = true
	return res
}

// operations lists the document's operations with a concrete path.
func (c *specChecker) operations(fn func(method, path string, op *openapi3.Operation)) {
	fill := strings.NewReplacer("{appId}", "app1", "{id}", "hook1", "{deliveryId}", "delivery1")
	for _, p := range c.doc.Paths.InMatchingOrder() {
		for method, op := range c.doc.Paths.Value(p).Operations() {
			fn(method, fill.Replace(p), op)
		}
	}
}

func TestOpenAPIMatchesResponses(t *testing.T) {
	ob, endpoint := newTestOutbox(t)
	c := newSpecChecker(t, newAPI(func() *outbox.Outbox { return ob }, zap.NewNop()))
	const base = "/webhooks/apps/app1/webhooks"
	big := `{"name":"` + strings.Repeat("x", maxAPIBody) + `"}`

	served := c.check(200, "GET", "/webhooks/openapi.json", "")
	if served.body != string(openAPIDocument) {
		t.Error("GET /webhooks/openapi.json does not serve the embedded document")
	}
	c.check(200, "GET", "/webhooks/events", "")
	c.check(200, "GET", "/webhooks/apps", "")

	var hook struct{ ID string }
	c.check(201, "POST", base, `{"name":"ci","url":"`+endpoint+`/hook","events":["job_finished","job_created"],"secret":"`+testSecret+`"}`).decode(t, &hook)
	one := base + "/" + hook.ID
	c.check(400, "POST", base, `{"name":"ci","url":"ftp://example.com","events":["job_finished"]}`)
	var optioned struct{ ID string }
	c.check(201, "POST", base, `{"name":"opts","url":"`+endpoint+`/opts","events":["job_finished"],
		"headers":{"X-Api-Key":"k","X-Team":"t"},"filter":"data.appId == 'app1'",
		"retrySchedule":["1s","1m"],"timeout":"2s","maxInFlight":2,"rateLimit":5}`).decode(t, &optioned)
	c.check(200, "PATCH", base+"/"+optioned.ID, `{"headers":{"X-Team":null,"X-Env":"e"},"timeout":null,"retrySchedule":[],"filter":""}`)
	c.check(400, "POST", base, `{"name":"ci","url":"https://example.com","events":["job_finished"],"headers":{"Host":"x"}}`)
	c.check(400, "PATCH", base+"/"+optioned.ID, `{"filter":"data.appId =="}`)
	c.check(204, "DELETE", base+"/"+optioned.ID, "")
	c.check(413, "POST", base, big)
	c.check(415, "POST", base, `{}`, "Content-Type", "text/plain")

	c.check(200, "GET", "/webhooks/apps", "")
	c.check(200, "GET", base, "")
	c.check(200, "GET", one, "")
	c.check(404, "GET", base+"/nope", "")
	c.check(200, "PATCH", one, `{"name":"renamed","enabled":true,"events":["job_finished"]}`)
	c.check(400, "PATCH", one, `{"events":[]}`)
	c.check(404, "PATCH", base+"/nope", `{"name":"x"}`)
	c.check(413, "PATCH", one, big)
	c.check(415, "PATCH", one, `{}`, "Content-Type", "text/plain")

	c.check(202, "POST", one+"/test", "")
	c.check(404, "POST", base+"/nope/test", "")
	if _, err := ob.Ingest(t.Context(), []byte(`{"event":"job_finished","data":{"appId":"app1"}}`), ""); err != nil {
		t.Fatal(err)
	}

	// Both deliveries fail (the endpoint answers 500, one attempt each).
	var page struct {
		Data []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"data"`
		NextCursor *string `json:"nextCursor"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.check(200, "GET", one+"/deliveries?status=failed&event=job_finished&limit=100", "").decode(t, &page)
		if len(page.Data) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s %d failed deliveries, want 2", len(page.Data))
		}
		time.Sleep(20 * time.Millisecond)
	}
	failed := page.Data[0].ID
	page.NextCursor = nil
	c.check(200, "GET", one+"/deliveries?limit=1", "").decode(t, &page)
	if page.NextCursor == nil {
		t.Fatal("first page of 1 of 2 deliveries has no nextCursor")
	}
	c.check(200, "GET", one+"/deliveries?limit=1&cursor="+*page.NextCursor, "")
	c.check(400, "GET", one+"/deliveries?status=lost", "")
	c.check(404, "GET", base+"/nope/deliveries", "")
	c.check(200, "GET", one+"/deliveries/"+failed, "")
	c.check(404, "GET", one+"/deliveries/nope", "")

	var stats struct {
		Data []hourStats `json:"data"`
	}
	c.check(200, "GET", one+"/stats", "").decode(t, &stats)
	if n := len(stats.Data); n != 24 || stats.Data[n-1].Failed != 2 {
		t.Errorf("stats = %+v, want 24 hours, the last with 2 failed", stats.Data)
	}
	c.check(200, "GET", one+"/stats?hours=1", "")
	c.check(400, "GET", one+"/stats?hours=0", "")
	c.check(404, "GET", base+"/nope/stats", "")

	c.check(202, "POST", one+"/deliveries/"+failed+"/resend", "")
	c.check(404, "POST", one+"/deliveries/nope/resend", "")
	// A delivery that stays pending, for the 409.
	var slow struct{ ID string }
	c.check(201, "POST", base, `{"name":"slow","url":"`+endpoint+`/slow","events":["app_build_created"]}`).decode(t, &slow)
	c.check(202, "POST", base+"/"+slow.ID+"/test", "").decode(t, &hook)
	c.check(409, "POST", base+"/"+slow.ID+"/deliveries/"+hook.ID+"/resend", "")

	c.check(202, "POST", one+"/recover", `{"since":"2020-01-01T00:00:00Z"}`)
	c.check(400, "POST", one+"/recover", `{"since":"yesterday"}`)
	c.check(404, "POST", base+"/nope/recover", `{"since":"2020-01-01T00:00:00Z"}`)
	c.check(413, "POST", one+"/recover", big)
	c.check(415, "POST", one+"/recover", `{}`, "Content-Type", "text/plain")

	checkEventRoutes(t, c, ob, endpoint, one, big)

	c.check(204, "DELETE", one, "")
	c.check(404, "DELETE", one, "")

	const tokens = "/webhooks/apps/app1/portal-tokens"
	c.check(201, "POST", tokens, `{"ttl":"30m"}`)
	c.check(201, "POST", tokens, "")
	c.check(400, "POST", tokens, `{"ttl":"48h"}`)
	c.check(400, "POST", "/webhooks/apps/app%20one/portal-tokens", `{}`)
	c.check(413, "POST", tokens, `{"ttl":"`+strings.Repeat("1", maxAPIBody)+`s"}`)
	c.check(415, "POST", tokens, `{}`, "Content-Type", "text/plain")
	c.check(204, "DELETE", tokens, "")
	c.check(400, "DELETE", "/webhooks/apps/app%20one/portal-tokens", "")

	// Every unsafe route refuses a cross-site browser.
	c.operations(func(method, path string, op *openapi3.Operation) {
		if method != http.MethodGet {
			c.check(403, method, path, `{}`, "Sec-Fetch-Site", "cross-site")
		}
	})

	// Every route but the document itself needs the running app.
	stopped := &specChecker{t: t, doc: c.doc, router: c.router, seen: c.seen,
		h: newAPI(func() *outbox.Outbox { return nil }, zap.NewNop())}
	stopped.operations(func(method, path string, op *openapi3.Operation) {
		if op.OperationID != "getOpenAPI" {
			stopped.check(503, method, path, `{}`)
		}
	})

	// The reverse of IncludeResponseStatus: each documented answer
	// happened. Only 500 cannot be provoked from outside.
	c.operations(func(method, path string, op *openapi3.Operation) {
		for status := range op.Responses.Map() {
			if status == "500" {
				continue
			}
			if !c.seen[op.OperationID+" "+status] {
				t.Errorf("openapi.json documents %d for %s %s (%s), which no request of this test got", must(strconv.Atoi(status)), method, path, op.OperationID)
			}
		}
	})
	if t.Failed() {
		seen := make([]string, 0, len(c.seen))
		for k := range c.seen {
			seen = append(seen, k)
		}
		slices.Sort(seen)
		t.Logf("answers seen: %s", strings.Join(seen, ", "))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
