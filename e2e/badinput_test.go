package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// send makes a request with an explicit Content-Type (none when empty) and
// body (none when nil).
func send(t *testing.T, method, u, contentType string, body io.Reader) testkit.Answer {
	t.Helper()
	header := http.Header{}
	if contentType != "" {
		header.Set("Content-Type", contentType)
	}
	return testkit.Call(t, method, u, body, header)
}

// checkError fails unless a is status with a JSON {"error": ...} whose
// message mentions every word of mention.
func checkError(t *testing.T, what string, a testkit.Answer, status int, mention ...string) {
	t.Helper()
	if a.Status != status {
		t.Errorf("%s answered %d %s, want %d", what, a.Status, a.Body, status)
		return
	}
	if ctype := a.Header.Get("Content-Type"); !strings.HasPrefix(ctype, "application/json") {
		t.Errorf("%s answered Content-Type %q, want application/json", what, ctype)
	}
	var e errorJSON
	if err := jsonUnmarshalStrict(a.Body, &e); err != nil || e.Error == "" {
		t.Errorf("%s answered %q, want a JSON {\"error\": ...}", what, a.Body)
		return
	}
	for _, m := range mention {
		if !strings.Contains(e.Error, m) {
			t.Errorf("%s answered error %q, which does not name %q", what, e.Error, m)
		}
	}
}

// hiddenLength wraps a reader so the request is sent chunked, without a
// Content-Length.
type hiddenLength struct{ r io.Reader }

func (h hiddenLength) Read(p []byte) (int, error) { return h.r.Read(p) }

// TestBadInputStoresNothing sends every kind of invalid request to the
// ingest handler and the management API: each answers its status with a
// JSON error naming the problem, and nothing is stored.
func TestBadInputStoresNothing(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{Options: "max_body 4KB"}, "")
	const app = "bad-input-app"
	hook := s.createWebhook(t, app, map[string]any{
		"name": "everything", "url": rc.URL("/all"),
		"events": []string{"app_build_created", "app_deployment_created", "job_created", "job_finished"},
	})

	t.Run("ingest", func(t *testing.T) {
		u := s.ingestURL()
		big := fmt.Sprintf(`{"event":"job_finished","data":{"appId":%q,"pad":%q}}`, app, strings.Repeat("x", 5000))
		cases := []struct {
			name, method, ctype, body string
			chunked                   bool
			status                    int
			mention                   []string
		}{
			{"GET", http.MethodGet, "", "", false, 405, []string{"POST"}},
			{"PUT", http.MethodPut, "application/json", `{"event":"job_finished","data":{"appId":"bad-input-app"}}`, false, 405, []string{"POST"}},
			{"text/plain", http.MethodPost, "text/plain", `{"event":"job_finished","data":{"appId":"bad-input-app"}}`, false, 415, []string{"Content-Type"}},
			{"no Content-Type", http.MethodPost, "", `{"event":"job_finished","data":{"appId":"bad-input-app"}}`, false, 415, []string{"Content-Type"}},
			{"over max_body", http.MethodPost, "application/json", big, false, 413, []string{"larger"}},
			{"over max_body chunked", http.MethodPost, "application/json", big, true, 413, []string{"larger"}},
			{"malformed JSON", http.MethodPost, "application/json", `{"event":"job_finished","data":{"appId":"bad-input-app"}`, false, 400, []string{"JSON"}},
			{"trailing garbage", http.MethodPost, "application/json", `{"event":"job_finished","data":{"appId":"bad-input-app"}} {`, false, 400, []string{"JSON"}},
			{"empty body", http.MethodPost, "application/json", ``, false, 400, nil},
			{"missing event", http.MethodPost, "application/json", `{"data":{"appId":"bad-input-app"}}`, false, 400, []string{"event"}},
			{"empty event", http.MethodPost, "application/json", `{"event":"","data":{"appId":"bad-input-app"}}`, false, 400, []string{"event"}},
			{"missing data", http.MethodPost, "application/json", `{"event":"job_finished"}`, false, 400, []string{"data"}},
			{"null data", http.MethodPost, "application/json", `{"event":"job_finished","data":null}`, false, 400, []string{"data"}},
			{"missing data.appId", http.MethodPost, "application/json", `{"event":"job_finished","data":{"id":"x"}}`, false, 400, []string{"data.appId"}},
			{"numeric data.appId", http.MethodPost, "application/json", `{"event":"job_finished","data":{"appId":42}}`, false, 400, []string{"data.appId"}},
			{"unknown event type", http.MethodPost, "application/json", `{"event":"job_exploded","data":{"appId":"bad-input-app"}}`, false, 422, []string{"job_exploded"}},
		}
		for _, c := range cases {
			var body io.Reader
			if c.body != "" || c.method == http.MethodPost {
				body = strings.NewReader(c.body)
				if c.chunked {
					body = hiddenLength{body}
				}
			}
			checkError(t, "ingest "+c.name, send(t, c.method, u, c.ctype, body), c.status, c.mention...)
		}

		if ds := s.deliveries(t, app, hook.ID); len(ds) != 0 {
			t.Fatalf("after rejected ingests the webhook's history has %d deliveries, want 0", len(ds))
		}
		// A valid event afterwards yields exactly one delivery.
		a := s.mustIngest(t, []byte(`{"event":"job_finished","data":{"appId":"bad-input-app"}}`))
		if a.Deliveries != 1 {
			t.Errorf("valid ingest answered deliveries=%d, want 1", a.Deliveries)
		}
		wait.Until(t, "the valid event was not delivered", func() bool { return rc.Count("/all") >= 1 })
		s.settled(t, app, hook.ID)
		if n := rc.Count("/all"); n != 1 {
			t.Errorf("receiver got %d requests after rejected ingests and one valid event, want 1", n)
		}
		if ds := s.deliveries(t, app, hook.ID); len(ds) != 1 || ds[0].EventID != a.ID {
			t.Errorf("history after one valid event = %+v, want exactly its delivery", ds)
		}
	})

	apiCases := func(t *testing.T, base string) {
		hooksURL := base + "/webhooks/apps/" + app + "/webhooks"
		before := s.listWebhooks(t, app)
		valid := func(change map[string]any, drop ...string) map[string]any {
			in := map[string]any{"name": "n", "url": rc.URL("/x"), "events": []string{"job_created"}}
			for k, v := range change {
				in[k] = v
			}
			for _, k := range drop {
				delete(in, k)
			}
			return in
		}
		creates := []struct {
			name    string
			in      any
			status  int
			mention string
		}{
			{"empty name", valid(map[string]any{"name": ""}), 400, "name"},
			{"blank name", valid(map[string]any{"name": "   "}), 400, "name"},
			{"missing name", valid(nil, "name"), 400, "name"},
			{"missing url", valid(nil, "url"), 400, "url"},
			{"bad URL", valid(map[string]any{"url": "not a url"}), 400, "url"},
			{"ftp URL", valid(map[string]any{"url": "ftp://example.com/hook"}), 400, "url"},
			{"URL without host", valid(map[string]any{"url": "http:///hook"}), 400, "url"},
			{"unknown event", valid(map[string]any{"events": []string{"job_exploded"}}), 400, "events"},
			{"no events", valid(map[string]any{"events": []string{}}), 400, "events"},
			{"missing events", valid(nil, "events"), 400, "events"},
			{"unknown JSON field", valid(map[string]any{"colour": "red"}), 400, "colour"},
			{"events not an array", valid(map[string]any{"events": "job_created"}), 400, "events"},
			{"private IP URL", valid(map[string]any{"url": "http://10.0.0.1/hook"}), 400, "url"},
			{"private 192.168 URL", valid(map[string]any{"url": "http://192.168.1.10:8080/hook"}), 400, "url"},
			{"link-local metadata URL", valid(map[string]any{"url": "http://169.254.169.254/latest/meta-data"}), 400, "url"},
			{"IPv4-mapped private URL", valid(map[string]any{"url": "http://[::ffff:10.0.0.1]/hook"}), 400, "url"},
			{"unspecified URL", valid(map[string]any{"url": "http://0.0.0.0:8080/hook"}), 400, "url"},
			{"malformed JSON", `{"name":"n",`, 400, "JSON"},
		}
		for _, c := range creates {
			var raw []byte
			switch in := c.in.(type) {
			case string:
				raw = []byte(in)
			default:
				raw = mustJSON(t, in)
			}
			checkError(t, "creating a webhook with "+c.name, send(t, http.MethodPost, hooksURL, "application/json", bytes.NewReader(raw)), c.status, c.mention)
		}
		checkError(t, "creating a webhook as text/plain", send(t, http.MethodPost, hooksURL, "text/plain", bytes.NewReader(mustJSON(t, valid(nil)))), 415, "Content-Type")

		const unknown = "01900000-0000-7000-8000-000000000000"
		checkError(t, "GET of an unknown webhook", send(t, http.MethodGet, hooksURL+"/"+unknown, "", nil), 404, "webhook")
		checkError(t, "PATCH of an unknown webhook", send(t, http.MethodPatch, hooksURL+"/"+unknown, "application/json", strings.NewReader(`{"name":"x"}`)), 404, "webhook")
		checkError(t, "DELETE of an unknown webhook", send(t, http.MethodDelete, hooksURL+"/"+unknown, "", nil), 404, "webhook")
		checkError(t, "history of an unknown webhook", send(t, http.MethodGet, hooksURL+"/"+unknown+"/deliveries", "", nil), 404, "webhook")
		checkError(t, "a webhook of another app", send(t, http.MethodGet, base+"/webhooks/apps/some-other-app/webhooks/"+hook.ID, "", nil), 404, "webhook")
		checkError(t, "an unknown delivery", send(t, http.MethodGet, hooksURL+"/"+hook.ID+"/deliveries/"+unknown, "", nil), 404, "delivery")

		edits := []struct {
			name, body, mention string
		}{
			{"empty name", `{"name":""}`, "name"},
			{"bad URL", `{"url":"::nope"}`, "url"},
			{"private IP URL", `{"url":"http://10.0.0.1/hook"}`, "url"},
			{"no events", `{"events":[]}`, "events"},
			{"unknown event", `{"events":["job_exploded"]}`, "events"},
			{"unknown JSON field", `{"paused":true}`, "paused"},
		}
		for _, e := range edits {
			checkError(t, "editing a webhook with "+e.name, send(t, http.MethodPatch, hooksURL+"/"+hook.ID, "application/json", strings.NewReader(e.body)), 400, e.mention)
		}

		after := s.listWebhooks(t, app)
		if !reflect.DeepEqual(before, after) {
			t.Errorf("rejected management requests changed the app's webhooks:\nbefore %+v\nafter  %+v", before, after)
		}
	}
	t.Run("management API on the admin endpoint", func(t *testing.T) { apiCases(t, "http://"+s.Admin) })
	t.Run("management API on webhook_admin", func(t *testing.T) { apiCases(t, s.siteURL("")) })

	t.Run("loopback refused without allow_destinations", func(t *testing.T) {
		strict := startSender(t, senderConfig{NoAllow: true}, "")
		for _, u := range []string{"http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://[::ffff:127.0.0.1]:9/hook", "http://127.1.2.3/hook"} {
			a := send(t, http.MethodPost, strict.hooksURL("strict-app"), "application/json",
				bytes.NewReader(mustJSON(t, map[string]any{"name": "local", "url": u, "events": []string{"job_created"}})))
			checkError(t, "creating a webhook to "+u+" without allow_destinations", a, 400, "url")
		}
		if hooks := strict.listWebhooks(t, "strict-app"); len(hooks) != 0 {
			t.Errorf("refused creates stored %d webhooks", len(hooks))
		}
	})
}

// TestSecretNeverShown creates, reads, lists and edits a webhook with a
// signing secret: no API answer and no log line shows it.
func TestSecretNeverShown(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{Debug: true}, "")
	const (
		app     = "secret-app"
		secret1 = "first-SECRET-b4c1d2e3f4a5b6c7"
		secret2 = "second-SECRET-9f8e7d6c5b4a3210"
	)
	var answers []string
	keep := func(what, method, u string, in any) []byte {
		t.Helper()
		status, body := call(t, method, u, in)
		answers = append(answers, what+": "+string(body))
		if status >= 300 {
			t.Fatalf("%s answered %d %s", what, status, body)
		}
		return body
	}
	created := decode[webhookJSON](t, "create", keep("create", http.MethodPost, s.hooksURL(app),
		map[string]any{"name": "signed", "url": rc.URL("/signed"), "events": []string{"job_created"}, "secret": secret1}))
	if !created.HasSecret {
		t.Errorf("created webhook shows hasSecret=false, want true")
	}
	one := s.hooksURL(app) + "/" + created.ID
	keep("get", http.MethodGet, one, nil)
	keep("list", http.MethodGet, s.hooksURL(app), nil)
	keep("patch name", http.MethodPatch, one, map[string]any{"name": "renamed"})
	patched := decode[webhookJSON](t, "patch", keep("patch secret", http.MethodPatch, one, map[string]any{"secret": secret2}))
	if !patched.HasSecret {
		t.Errorf("webhook after a secret change shows hasSecret=false, want true")
	}
	// An invalid request carrying the secret must not echo it either.
	status, body := call(t, http.MethodPost, s.hooksURL(app), map[string]any{"name": "", "url": rc.URL("/x"), "events": []string{"job_created"}, "secret": secret1})
	answers = append(answers, "invalid create: "+string(body))
	if status != http.StatusBadRequest {
		t.Errorf("create with an empty name answered %d, want 400", status)
	}
	status, body = call(t, http.MethodPatch, one, map[string]any{"secret": secret2, "surprise": secret1})
	answers = append(answers, "invalid patch: "+string(body))
	if status != http.StatusBadRequest {
		t.Errorf("patch with an unknown field answered %d, want 400", status)
	}

	s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"secret-app"}}`))
	var ds []deliveryJSON
	wait.Until(t, "the signed event was not delivered", func() bool {
		ds = s.deliveries(t, app, created.ID)
		return len(ds) == 1 && ds[0].Status == "succeeded"
	})
	keep("deliveries", http.MethodGet, one+"/deliveries", nil)
	keep("delivery", http.MethodGet, one+"/deliveries/"+ds[0].ID, nil)
	keep("site list", http.MethodGet, s.siteURL("/webhooks/apps/"+app+"/webhooks"), nil)

	for _, a := range answers {
		for _, sec := range []string{secret1, secret2} {
			if strings.Contains(a, sec) {
				t.Errorf("an API answer shows the secret: %s", a)
			}
		}
	}
	// The delivery was signed with the new secret.
	if got := rc.Requests("/signed"); len(got) != 1 || !verifyXSignature(secret2, got[0].Body, got[0].Header.Get("X-Signature")) {
		t.Errorf("delivery after the secret change is not signed with the new secret")
	}
	logs := s.Logs()
	if !strings.Contains(logs, `"delivery attempt"`) {
		t.Fatalf("the debug log has no attempt lines, so it cannot show that they leave secrets out")
	}
	for _, sec := range []string{secret1, secret2} {
		if strings.Contains(logs, sec) {
			t.Errorf("Caddy's log output shows a webhook secret")
		}
	}
}
