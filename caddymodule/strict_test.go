package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// The API decodes strictly: exact member names (encoding/json would fold
// "URL" into url and "Secret" into secret), no member twice, valid UTF-8,
// and a JSON Content-Type on every body.
func TestAPIStrictBodies(t *testing.T) {
	ob, _ := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	const base = "/webhooks/apps/app1/webhooks"
	runAPICases(t, h, []apiCase{
		{"case-folded url", "POST", base, `{"name":"x","URL":"https://example.com","events":["job_finished"]}`, 400, "URL: unknown field"},
		{"case-folded secret", "POST", base, `{"name":"x","url":"https://example.com","events":["job_finished"],"Secret":"` + testSecret + `"}`, 400, "Secret: unknown field"},
		{"duplicate member", "POST", base, `{"name":"x","name":"y","url":"https://example.com","events":["job_finished"]}`, 400, "name: duplicate member name"},
		{"duplicate secret", "POST", base, `{"name":"x","url":"https://example.com","events":["job_finished"],"secret":"a","secret":"` + testSecret + `"}`, 400, "secret: duplicate"},
		{"invalid UTF-8", "POST", base, "{\"name\":\"\xff\",\"url\":\"https://example.com\",\"events\":[\"job_finished\"]}", 400, "malformed JSON"},
		{"wrong element type", "POST", base, `{"name":"x","url":"https://example.com","events":[1]}`, 400, "events.0: must be a string, not number"},
		{"port out of range", "POST", base, `{"name":"x","url":"https://example.com:99999/","events":["job_finished"]}`, 400, "url: port"},
		{"URL too long", "POST", base, `{"name":"x","url":"https://example.com/` + strings.Repeat("a", 65000) + `","events":["job_finished"]}`, 400, "url: longer than 2048 bytes"},
		{"name of 201 characters", "POST", base, `{"name":"` + strings.Repeat("é", 201) + `","url":"https://example.com","events":["job_finished"]}`, 400, "name: longer than 200 characters"},
		{"name of 200 characters", "POST", base, `{"name":"` + strings.Repeat("é", 200) + `","url":"https://example.com","events":["job_finished"]}`, 201, `"name"`},
		{"legacy loopback spelling", "POST", base, `{"name":"x","url":"http://0x0a000001/","events":["job_finished"]}`, 400, "url: destination 10.0.0.1 is private"},
	})
	res := call(t, h, "POST", base, `{"name":"x","url":"https://example.com","events":["job_finished"]}`, "Content-Type", "")
	if res.status != http.StatusUnsupportedMediaType {
		t.Errorf("a body without Content-Type answered %d %s, want 415", res.status, res.body)
	}
	if hooks, _ := ob.ListWebhooks(t.Context(), "app1"); len(hooks) != 1 {
		t.Errorf("the app has %d webhooks, want only the one valid create", len(hooks))
	}
}

// Every route that names an app refuses an invalid app id with 400 naming
// appId, before any store sees it; the Location of a create is the
// webhook's path.
func TestAPIAppIDs(t *testing.T) {
	ob, _ := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	create := `{"name":"x","url":"https://example.com","events":["job_finished"]}`
	for _, id := range []string{"bad%FFapp", "bad%EF%BF%BDapp", "a%2Fb", "a%00b", "a%20b", strings.Repeat("a", 5000)} {
		for _, rt := range []struct{ method, path, body string }{
			{"POST", "/webhooks", create},
			{"GET", "/webhooks", ""},
			{"GET", "/webhooks/x", ""},
			{"PATCH", "/webhooks/x", `{"name":"y"}`},
			{"DELETE", "/webhooks/x", ""},
			{"GET", "/webhooks/x/deliveries", ""},
			{"GET", "/webhooks/x/deliveries/y", ""},
			{"POST", "/webhooks/x/deliveries/y/resend", ""},
			{"POST", "/webhooks/x/test", ""},
			{"POST", "/webhooks/x/recover", `{"since":"2026-01-01T00:00:00Z"}`},
			{"GET", "/webhooks/x/stats", ""},
		} {
			path := "/webhooks/apps/" + id + rt.path
			res := call(t, h, rt.method, path, rt.body)
			if res.status != http.StatusBadRequest || !strings.HasPrefix(res.body, `{"error":"appId: `) {
				t.Errorf("%s %.60s answered %d %.80s, want 400 naming appId", rt.method, path, res.status, res.body)
			}
		}
	}
	if apps, _ := ob.ListApps(t.Context()); len(apps) != 0 {
		t.Fatalf("invalid app ids were stored: %q", apps)
	}
	res := call(t, h, "POST", "/webhooks/apps/App-1.eu_2:x/webhooks", create)
	var view struct{ ID string }
	res.decode(t, &view)
	if res.status != http.StatusCreated || res.header.Get("Location") != "/webhooks/apps/App-1.eu_2:x/webhooks/"+view.ID {
		t.Fatalf("create answered %d with Location %q", res.status, res.header.Get("Location"))
	}
}

// Paths with "..", "." or "//" answer a JSON 404, not ServeMux's redirect
// to the cleaned path.
func TestAPINonCanonicalPaths(t *testing.T) {
	ob, _ := newTestOutbox(t)
	h := newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())
	for _, p := range []string{"/webhooks/apps/app1/../../events", "/webhooks//apps", "/webhooks/apps/./app1/webhooks",
		"/webhooks/apps/app1/webhooks/", "/webhooks/apps/app1/webhooks/x/..", "/webhooks/apps//webhooks"} {
		for _, m := range []string{"GET", "POST"} {
			req := httptest.NewRequest(m, "/", nil)
			req.URL = &url.URL{Path: p}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotFound || rec.Header().Get("Location") != "" || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("%s %s answered %d (Location %q, Content-Type %q), want a JSON 404", m, p, rec.Code, rec.Header().Get("Location"), rec.Header().Get("Content-Type"))
			}
		}
	}
}

// FuzzDecodeStrict holds the API decoder to its contract: what it accepts
// is I-JSON with only the exact member names of webhookInput, decoded as
// encoding/json would; what it refuses is a 400 whose message never holds
// a string value of the body (which could be a secret).
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range fuzzWebhookSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"Secret":"x"}`, `{"URL":"https://a"}`, `{"name":"a","name":"b"}`, `{"na\u006de":"a"}`, "{\"name\":\"\xff\"}", `{"events":["a","b"]}`, ` {"enabled":true} `} {
		f.Add([]byte(s))
	}
	exact := map[string]bool{"name": true, "url": true, "events": true, "secret": true, "enabled": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in webhookInput
		err := decodeStrict(body, &in)
		if err == nil {
			if !jsontext.Value(body).IsValid() {
				t.Fatalf("accepted %q, which is not I-JSON", body)
			}
			var members map[string]json.RawMessage
			if json.Unmarshal(body, &members) != nil {
				t.Fatalf("accepted %q, which is not an object", body)
			}
			for k := range members {
				if !exact[k] {
					t.Fatalf("accepted %q with member %q", body, k)
				}
			}
			var loose webhookInput
			if err := json.Unmarshal(body, &loose); err != nil {
				t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
			}
			a, _ := json.Marshal(in)
			b, _ := json.Marshal(loose)
			if !bytes.Equal(a, b) {
				t.Fatalf("%q decoded as %s, encoding/json reads %s", body, a, b)
			}
			return
		}
		var (
			he *httpError
			ve *outbox.ValidationError
		)
		switch {
		case errors.As(err, &he):
			if he.status != http.StatusBadRequest {
				t.Fatalf("%q refused with %d, want 400", body, he.status)
			}
		case errors.As(err, &ve):
		default:
			t.Fatalf("%q refused with %T %v", body, err, err)
		}
		// The messages' own words may be a value too ("string").
		const vocabulary = "request body is empty; want a JSON object, not string number boolean null array; malformed JSON at byte: unexpected end of; duplicate member name; unknown field; must be a an of strings another type"
		values, names := stringTokens(body)
		for _, v := range values {
			if len(v) >= 4 && strings.Contains(err.Error(), v) && !strings.Contains(vocabulary, v) && !strings.Contains(names, v) {
				t.Fatalf("%q refused with %q, which echoes the value %q", body, err, v)
			}
		}
	})
}

// stringTokens are the string values of a JSON body, as far as it can be
// read, and its member names (which errors may name) joined.
func stringTokens(body []byte) (values []string, names string) {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return values, names
		}
		if tok.Kind() == '"' {
			if isName(dec) {
				names += tok.String() + "\x00"
			} else {
				values = append(values, tok.String())
			}
		}
	}
}

// isName reports whether the token just read was an object member name.
func isName(dec *jsontext.Decoder) bool {
	kind, length := dec.StackIndex(dec.StackDepth())
	return kind == '{' && length%2 == 1
}
