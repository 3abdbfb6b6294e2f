package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/bodysize"
)

// eventsHandler is the ingest handler as an http.Handler for call.
type eventsHandler struct{ *Events }

func (h eventsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		panic("webhook_events called the next handler")
	})
	if err := h.Events.ServeHTTP(w, r, next); err != nil {
		panic(err)
	}
}

func TestIngest(t *testing.T) {
	ob, url := newTestOutbox(t)
	app := &App{maxBody: 256}
	app.ob.Store(ob)
	h := eventsHandler{&Events{app: app, logger: zap.NewNop()}}
	hooks := newAPI(app.Outbox, zap.NewNop())
	if res := call(t, hooks, "POST", "/webhooks/apps/app1/webhooks", `{"name":"a","url":"`+url+`","events":["job_finished"]}`); res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}

	post := func(body string, header ...string) apiResponse {
		t.Helper()
		req := httptest.NewRequest("POST", "/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return apiResponse{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	}

	const event = `{"event":"job_finished","data":{"appId":"app1"}}`
	res := post(event)
	if res.status != http.StatusAccepted || !strings.Contains(res.body, `"deliveries":1`) {
		t.Fatalf("ingest answered %d %s, want 202 with one delivery", res.status, res.body)
	}
	var first struct{ ID string }
	res = post(event, "Idempotency-Key", "k1")
	res.decode(t, &first)
	res = post(event, "Idempotency-Key", "k1")
	var again struct{ ID string }
	res.decode(t, &again)
	if res.status != http.StatusOK || again.ID != first.ID {
		t.Fatalf("repeated Idempotency-Key answered %d %s, want 200 with id %s", res.status, res.body, first.ID)
	}
	if res := post(`{"event":"job_finished","data":{"appId":"nobody"}}`); res.status != http.StatusAccepted || !strings.Contains(res.body, `"deliveries":0`) {
		t.Errorf("event of an app without webhooks answered %d %s, want 202 with no deliveries", res.status, res.body)
	}
	if res := post(event, "Content-Type", "application/json; charset=utf-8"); res.status != http.StatusAccepted {
		t.Errorf("application/json with charset answered %d %s, want 202", res.status, res.body)
	}

	for _, tc := range []struct {
		name, method, contentType, body string
		header                          []string
		status                          int
		contains                        string
	}{
		{"GET", "GET", "", "", nil, 405, "POST"},
		{"form", "POST", "application/x-www-form-urlencoded", "a=b", nil, 415, "application/json"},
		{"no content type", "POST", "", event, nil, 415, "application/json"},
		{"too large", "POST", "application/json", `{"event":"job_finished","data":{"appId":"app1","x":"` + strings.Repeat("x", 300) + `"}}`, nil, 413, "larger than 256"},
		{"malformed", "POST", "application/json", `{"event":`, nil, 400, "malformed"},
		{"no event", "POST", "application/json", `{"data":{"appId":"a"}}`, nil, 400, "event"},
		{"no data", "POST", "application/json", `{"event":"job_finished"}`, nil, 400, "data"},
		{"no appId", "POST", "application/json", `{"event":"job_finished","data":{}}`, nil, 400, "data.appId"},
		{"unknown type", "POST", "application/json", `{"event":"job_exploded","data":{"appId":"a"}}`, nil, 422, "job_exploded"},
		{"long idempotency key", "POST", "application/json", event, []string{"Idempotency-Key", strings.Repeat("k", 300)}, 400, "Idempotency-Key"},
		{"+json", "POST", "application/vnd.api+json", event, nil, 202, `"id"`},
		{"invalid UTF-8", "POST", "application/json", "{\"event\":\"job_finished\",\"data\":{\"appId\":\"app1\",\"x\":\"\xff\"}}", nil, 400, "UTF-8"},
		{"duplicate member", "POST", "application/json", `{"event":"job_finished","data":{"appId":"app2","appId":"app1"}}`, nil, 400, "data.appId: duplicate"},
		{"invalid app id", "POST", "application/json", `{"event":"job_finished","data":{"appId":"a/b"}}`, nil, 400, "data.appId"},
		{"key reused with another body", "POST", "application/json", `{"event":"job_finished","data":{"appId":"app1","other":true}}`, []string{"Idempotency-Key", "k1"}, 422, `Idempotency-Key \"k1\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd *strings.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			} else {
				rd = strings.NewReader("")
			}
			req := httptest.NewRequest(tc.method, "/events", rd)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("answered %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("answered %s, want it to contain %q", rec.Body, tc.contains)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tc.status == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
		})
	}

	// The handler's own max_body overrides the app's.
	h.MaxBody = 10
	if res := post(event); res.status != http.StatusRequestEntityTooLarge {
		t.Errorf("ingest over the handler's max_body answered %d, want 413", res.status)
	}
}

func TestIngestNotRunning(t *testing.T) {
	h := eventsHandler{&Events{app: &App{maxBody: bodysize.Default}, logger: zap.NewNop()}}
	req := httptest.NewRequest("POST", "/events", strings.NewReader(`{"event":"job_finished","data":{"appId":"a"}}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
		t.Fatalf("ingest before the app started answered %d (Retry-After %q), want 503 with Retry-After: 5", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestIngestClosedStore(t *testing.T) {
	ob, _ := newTestOutbox(t)
	app := &App{maxBody: bodysize.Default}
	app.ob.Store(ob)
	ob.Close()
	h := eventsHandler{&Events{app: app, logger: zap.NewNop()}}
	req := httptest.NewRequest("POST", "/events", strings.NewReader(`{"event":"job_finished","data":{"appId":"a"}}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
		t.Fatalf("ingest on a closed store answered %d %s (Retry-After %q), want 503 with Retry-After: 5", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
}
