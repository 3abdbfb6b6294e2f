package caddymodule

// Native fuzz tests of the two HTTP surfaces a client controls: the
// webhook_events ingest handler and the management API. Every input must get
// a 2xx or a 4xx (never a 5xx or a panic); every error is JSON
// {"error": "<non-empty>"}; a rejected request changes nothing in the store;
// an accepted one changes exactly what it says; and no response ever shows a
// webhook secret.
//
// Each target builds one real outbox on a Badger temp dir and reuses it for
// every input. The dispatcher runs (the committer and it start together) but
// never gets a delivery: the store wrapper below hands it none, so delivery
// state changes only through the requests under test, and nothing is ever
// sent anywhere.
//
//	go test -run='^$' -fuzz='^FuzzIngest$' -fuzztime=60s ./caddymodule/

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
)

const (
	// fuzzApp is the app of the fixture webhooks.
	fuzzApp = "app1"
	// capaApp is the appId of the job_finished example on the Capawesome page.
	capaApp = "70922e93-0944-48cc-a560-61135ab291ad"
	// fuzzSecret2 is a second fixture secret (testSecret is the first).
	fuzzSecret2 = "second-fixture-secret-0xC0FFEE"
	// fuzzMaxBody is the ingest body cap in these tests; small enough that
	// the fuzzer reaches it.
	fuzzMaxBody = 2048
)

// capawesomeJobFinished is the job_finished example of the Capawesome page.
const capawesomeJobFinished = fixture.JobFinished

// fuzzStore is the Badger store with two changes: Claim hands the
// dispatcher nothing, so no delivery is ever attempted and pending counts
// move only with the requests under test; and Commit counts the events and
// deliveries it actually wrote.
type fuzzStore struct {
	*badgerstore.Store
	events     atomic.Int64
	deliveries atomic.Int64
}

func (s *fuzzStore) Claim(context.Context, *outbox.ClaimRequest) ([]*outbox.Job, time.Time, error) {
	return nil, time.Time{}, nil
}

func (s *fuzzStore) Commit(ctx context.Context, batch []*outbox.Ingest) error {
	err := s.Store.Commit(ctx, batch)
	if err == nil {
		for _, in := range batch {
			if !in.Result.Duplicate {
				s.events.Add(1)
				s.deliveries.Add(int64(len(in.Deliveries)))
			}
		}
	}
	return err
}

// settle finishes every pending delivery directly in the store, as the
// dispatcher would after an attempt, choosing its outcome with fate
// (StatusPending leaves it pending).
func (s *fuzzStore) settle(tb testing.TB, fate func(*outbox.Job) outbox.Status) {
	tb.Helper()
	jobs, _, err := s.Store.Claim(context.Background(), &outbox.ClaimRequest{Now: time.Now().Add(time.Second), Limit: 100000, MaxInFlight: 100000})
	if err != nil {
		tb.Fatal(err)
	}
	for _, j := range jobs {
		st := fate(j)
		if st == outbox.StatusPending {
			if err := s.Release(context.Background(), j); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		code := 200
		if st == outbox.StatusFailed {
			code = 500
		}
		j.Delivery.Attempts = append(j.Delivery.Attempts, outbox.Attempt{
			SentAt: time.Now().UTC(), ResponseStatusCode: code, ResponseBody: "fixture", DurationMs: 1,
		})
		j.Delivery.Status, j.Delivery.NextAttemptAt = st, nil
		if err := s.Save(context.Background(), j); err != nil {
			tb.Fatal(err)
		}
	}
}

type fuzzEnv struct {
	ob    *outbox.Outbox
	store *fuzzStore
	api   http.Handler
}

// newFuzzEnv runs an outbox whose dispatcher never delivers, with the
// default destination policy (loopback and private ranges refused).
func newFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	bs, err := badgerstore.Open(tb.TempDir(), badgerstore.Options{Logger: zap.NewNop(), MemTableSize: 4 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	fs := &fuzzStore{Store: bs}
	ob := outbox.New(fs, outbox.Options{RetrySchedule: []time.Duration{}, Workers: 2})
	ob.Start()
	tb.Cleanup(func() { ob.Close() })
	return &fuzzEnv{ob: ob, store: fs, api: newAPI(func() *outbox.Outbox { return ob }, zap.NewNop())}
}

func (e *fuzzEnv) createHook(tb testing.TB, app, name string, events []string, secret string, enabled bool) *outbox.Webhook {
	tb.Helper()
	u := "https://hooks.example.com/" + name
	w, err := e.ob.CreateWebhook(context.Background(), app, outbox.WebhookInput{
		Name: &name, URL: &u, Events: &events, Secret: &secret, Enabled: &enabled,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func (e *fuzzEnv) pending(t *testing.T) int64 {
	t.Helper()
	st, err := e.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}

func (e *fuzzEnv) hooks(t *testing.T, app string) []*outbox.Webhook {
	t.Helper()
	hs, err := e.ob.ListWebhooks(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// allDeliveries pages through a webhook's whole history.
func (e *fuzzEnv) allDeliveries(tb testing.TB, app, hookID string) []*outbox.Delivery {
	tb.Helper()
	var all []*outbox.Delivery
	cursor := ""
	for {
		ds, next, err := e.ob.Deliveries(context.Background(), app, hookID, outbox.DeliveryFilter{Limit: outbox.MaxPageSize, Cursor: cursor})
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, ds...)
		if next == "" {
			return all
		}
		cursor = next
	}
}

// validHeaderValue reports whether s can be sent as an HTTP header value;
// other inputs are not requests a server could receive.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// checkAnswer checks what every answer must be: never a 5xx; JSON unless
// 204; an error shaped {"error": "<non-empty>"} and nothing else; and none
// of the given secrets in the body.
func checkAnswer(t *testing.T, what string, status int, header http.Header, body string, secrets ...string) {
	t.Helper()
	if status >= 500 {
		t.Fatalf("%s answered %d %s", what, status, body)
	}
	if status < 200 || (status >= 300 && status < 400) {
		t.Fatalf("%s answered %d %s, want 2xx or 4xx", what, status, body)
	}
	for _, s := range append([]string{testSecret, fuzzSecret2}, secrets...) {
		if leaks(body, s) {
			t.Fatalf("%s answered %d with the secret %q in its body: %s", what, status, s, body)
		}
	}
	if status == http.StatusNoContent {
		if body != "" {
			t.Errorf("%s answered 204 with a body %q", what, body)
		}
		return
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s answered %d with Content-Type %q, want application/json", what, status, ct)
	}
	if !json.Valid([]byte(body)) {
		t.Fatalf("%s answered %d with a body that is not JSON: %q", what, status, body)
	}
	if status >= 400 {
		var e map[string]any
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("%s answered %d with %q, want {\"error\": ...}", what, status, body)
		}
		msg, ok := e["error"].(string)
		if len(e) != 1 || !ok || strings.TrimSpace(msg) == "" {
			t.Fatalf("%s answered %d with %q, want {\"error\": \"<non-empty>\"}", what, status, body)
		}
	}
}

// leaks reports whether a response body shows secret s, raw or as JSON
// escapes it.
func leaks(body, s string) bool {
	if s == "" {
		return false
	}
	if strings.Contains(body, s) {
		return true
	}
	enc, _ := json.Marshal(s)
	return strings.Contains(body, string(enc[1:len(enc)-1]))
}

// inputSecrets returns the string values of every "secret" member (in any
// letter case, as encoding/json matches) of a JSON body, even of a body
// that turns malformed after them, keeping only those distinctive enough
// that finding them in a response means they were echoed: at least 8 bytes,
// not looking like an id or a time, and not also present elsewhere in the
// request (as a name, URL, event type or key, which may be echoed).
func inputSecrets(path string, body []byte) []string {
	var secrets, others []string
	others = append(others, path)
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct{ obj, wantKey bool }
	var stack []frame
	secretNext := false
	afterValue := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		isKey := len(stack) > 0 && stack[len(stack)-1].obj && stack[len(stack)-1].wantKey
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				secretNext = false
				stack = append(stack, frame{obj: v == '{', wantKey: true})
			default:
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
				afterValue()
			}
		case string:
			if isKey {
				stack[len(stack)-1].wantKey = false
				secretNext = strings.EqualFold(v, "secret")
				others = append(others, v)
				continue
			}
			if secretNext {
				secrets = append(secrets, v)
			} else {
				others = append(others, v)
			}
			secretNext = false
			afterValue()
		default:
			others = append(others, fmt.Sprint(v))
			secretNext = false
			afterValue()
		}
	}
	rest := strings.Join(others, "\x00") + "\x00" + strings.Join(outbox.DefaultEvents, ", ")
	var out []string
	for _, s := range secrets {
		if len(s) < 8 || strings.Contains(rest, s) || strings.Trim(s, "0123456789abcdefABCDEF-:.TZ+ ") == "" {
			continue
		}
		out = append(out, s)
	}
	return out
}

// ---- ingest ----

var fuzzMethods = []string{"GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"}

func FuzzIngest(f *testing.F) {
	const (
		ev     = `{"event":"job_finished","data":{"appId":"app1"}}`
		ctJSON = "application/json"
	)
	for _, s := range []struct {
		body, ct string
		method   byte
		key      string
	}{
		{capawesomeJobFinished, ctJSON, 255, ""},
		{capawesomeJobFinished, ctJSON, 255, "capawesome-1"},
		{capawesomeJobFinished, ctJSON, 255, "capawesome-1"},
		{ev, ctJSON, 255, ""},
		{ev, ctJSON, 255, "k1"},
		{ev, ctJSON, 255, "k1"},
		{`{"event":"job_created","data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":"app_build_created","data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"nobody"}}`, ctJSON, 255, ""},
		{ev, "application/json; charset=utf-8", 255, ""},
		{ev, "application/vnd.api+json", 255, ""},
		{ev, "Application/JSON", 255, ""},
		{ev, "text/plain", 255, ""},
		{ev, "", 255, ""},
		{ev, "application/json;;", 255, ""},
		{ev, "application/x-www-form-urlencoded", 255, ""},
		{ev, ctJSON, 0, ""},
		{ev, ctJSON, 1, ""},
		{ev, ctJSON, 4, ""},
		{ev, ctJSON, 255, strings.Repeat("k", 255)},
		{ev, ctJSON, 255, strings.Repeat("k", 256)},
		{ev, ctJSON, 255, "ключ-😀"},
		{"", ctJSON, 255, ""},
		{"null", ctJSON, 255, ""},
		{"[]", ctJSON, 255, ""},
		{`"job_finished"`, ctJSON, 255, ""},
		{`{"event":`, ctJSON, 255, ""},
		{ev + " trailing", ctJSON, 255, ""},
		{ev + ev, ctJSON, 255, ""},
		{`{"data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":null,"data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":"","data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":42,"data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":["job_finished"],"data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":"job_finished"}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":null}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":[]}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":"app1"}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":null}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":""}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":42}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":1e999}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"app1","n":1e999}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"app1","n":123456789012345678901234567890}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":{"nested":"app1"}}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"app1","a":{"b":[{"c":[null,true,{"d":{}}]}]}}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"äpp-😀"}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"app1\u0000"}}`, ctJSON, 255, ""},
		{"{\"event\":\"job_finished\",\"data\":{\"appId\":\"app1\",\"x\":\"\xff\xfe\"}}", ctJSON, 255, ""},
		{`{"event":"job_finished","event":"job_created","data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":"job_exploded","data":{"appId":"app1"}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"app1","secret":"ingest-body-secret-value"}}`, ctJSON, 255, ""},
		{`{"event":"job_finished","data":{"appId":"app1","x":"` + strings.Repeat("x", fuzzMaxBody) + `"}}`, ctJSON, 255, ""},
		{`  {"event":"job_finished","data":  {"appId":"app1"}}  `, ctJSON, 255, ""},
	} {
		f.Add([]byte(s.body), s.ct, s.method, s.key)
	}

	e := newFuzzEnv(f)
	h1 := e.createHook(f, fuzzApp, "h1", []string{"job_finished"}, testSecret, true)
	h2 := e.createHook(f, fuzzApp, "h2", []string{"job_finished", "job_created"}, "", true)
	h3 := e.createHook(f, fuzzApp, "h3", []string{"job_finished"}, "", false)
	h4 := e.createHook(f, capaApp, "h4", outbox.DefaultEvents, fuzzSecret2, true)
	fixtures := []*outbox.Webhook{h1, h2, h3, h4}
	app := &App{maxBody: fuzzMaxBody}
	app.ob.Store(e.ob)
	h := eventsHandler{&Events{app: app, logger: zap.NewNop()}}

	// newest returns the ids of each fixture webhook's two newest deliveries.
	newest := func(t *testing.T) [][]*outbox.Delivery {
		out := make([][]*outbox.Delivery, len(fixtures))
		for i, w := range fixtures {
			ds, _, err := e.ob.Deliveries(context.Background(), w.AppID, w.ID, outbox.DeliveryFilter{Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			out[i] = ds
		}
		return out
	}
	sameNewest := func(a, b [][]*outbox.Delivery) bool {
		for i := range a {
			if len(a[i]) != len(b[i]) || (len(a[i]) > 0 && a[i][0].ID != b[i][0].ID) {
				return false
			}
		}
		return true
	}
	// seen are the idempotency keys answered 202, by app and key.
	seen := map[string]outbox.IngestResult{}

	f.Fuzz(func(t *testing.T, body []byte, contentType string, method byte, idemKey string) {
		if !validHeaderValue(contentType) || !validHeaderValue(idemKey) {
			return
		}
		// A server trims the optional white space around header values.
		contentType, idemKey = strings.Trim(contentType, " \t"), strings.Trim(idemKey, " \t")
		m := "POST"
		if int(method) < len(fuzzMethods) {
			m = fuzzMethods[method]
		}

		pending0, events0, deliveries0 := e.pending(t), e.store.events.Load(), e.store.deliveries.Load()
		before := newest(t)

		req := httptest.NewRequest(m, "/events", bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if idemKey != "" {
			req.Header.Set("Idempotency-Key", idemKey)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		what := fmt.Sprintf("%s /events (Content-Type %q, Idempotency-Key %q) %q", m, contentType, idemKey, body)
		resBody := rec.Body.String()
		checkAnswer(t, what, rec.Code, rec.Header(), resBody)
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s answered %d without Content-Type: application/json", what, rec.Code)
		}

		if m != "POST" {
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
				t.Fatalf("%s answered %d (Allow %q), want 405 with Allow: POST", what, rec.Code, rec.Header().Get("Allow"))
			}
		} else if rec.Code == http.StatusMethodNotAllowed {
			t.Fatalf("%s answered 405 to a POST", what)
		}

		if rec.Code >= 400 {
			// A rejected request stores nothing.
			if p := e.pending(t); p != pending0 {
				t.Fatalf("%s answered %d but pending deliveries went %d -> %d", what, rec.Code, pending0, p)
			}
			if ev, dl := e.store.events.Load(), e.store.deliveries.Load(); ev != events0 || dl != deliveries0 {
				t.Fatalf("%s answered %d but committed %d events, %d deliveries", what, rec.Code, ev-events0, dl-deliveries0)
			}
			if !sameNewest(before, newest(t)) {
				t.Fatalf("%s answered %d but a fixture webhook has a new delivery", what, rec.Code)
			}
			return
		}

		// Accepted: only a well-formed JSON event under the cap, of a
		// catalog type, sent as JSON.
		if !isJSON(contentType) {
			t.Fatalf("%s answered %d to a Content-Type that is not JSON", what, rec.Code)
		}
		if len(body) > fuzzMaxBody {
			t.Fatalf("%s answered %d to a body of %d bytes, over the %d cap", what, rec.Code, len(body), fuzzMaxBody)
		}
		if !json.Valid(body) {
			t.Fatalf("%s answered %d to a body that is not valid JSON", what, rec.Code)
		}
		evType, appID, err := outbox.ParseEvent(body)
		if err != nil {
			t.Fatalf("%s answered %d to a body ParseEvent refuses: %v", what, rec.Code, err)
		}
		if !slices.Contains(outbox.DefaultEvents, evType) {
			t.Fatalf("%s answered %d to event type %q outside the catalog", what, rec.Code, evType)
		}
		// The body is delivered as posted, so the members receivers read
		// must be there as spelled in the contract, not in another case.
		if err := exactMembers(body, evType, appID); err != nil {
			t.Fatalf("%s answered %d, but receivers would not find its members: %v", what, rec.Code, err)
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(resBody), &res); err != nil {
			t.Fatal(err)
		}
		id, _ := res["id"].(string)
		count, ok := res["deliveries"].(float64)
		if len(res) != 2 || id == "" || !ok || count < 0 || count != float64(int(count)) {
			t.Fatalf("%s answered %d %s, want {\"id\": ..., \"deliveries\": <count>}", what, rec.Code, resBody)
		}
		seenKey := appID + "\x00" + idemKey

		switch rec.Code {
		case http.StatusOK:
			// A repeat of an idempotency key: the first answer, nothing new.
			first, ok := seen[seenKey]
			if idemKey == "" || !ok {
				t.Fatalf("%s answered 200 %s without a repeated Idempotency-Key", what, resBody)
			}
			if first.ID != id || first.Deliveries != int(count) {
				t.Fatalf("%s answered 200 %s, want the first answer %+v", what, resBody, first)
			}
			if p := e.pending(t); p != pending0 {
				t.Fatalf("%s repeated an Idempotency-Key but pending deliveries went %d -> %d", what, pending0, p)
			}
			if ev, dl := e.store.events.Load(), e.store.deliveries.Load(); ev != events0 || dl != deliveries0 {
				t.Fatalf("%s repeated an Idempotency-Key but committed %d events, %d deliveries", what, ev-events0, dl-deliveries0)
			}
			if !sameNewest(before, newest(t)) {
				t.Fatalf("%s repeated an Idempotency-Key but a fixture webhook has a new delivery", what)
			}
		case http.StatusAccepted:
			if _, ok := seen[seenKey]; ok && idemKey != "" {
				t.Fatalf("%s answered 202 %s to a repeated Idempotency-Key, want 200 with the first id %s", what, resBody, seen[seenKey].ID)
			}
			var want, wantPending int
			for _, w := range e.hooks(t, appID) {
				if w.Subscribes(evType) {
					want++
					if w.Enabled {
						wantPending++
					}
				}
			}
			if int(count) != want {
				t.Fatalf("%s answered %s, want %d deliveries (the app's webhooks of %s)", what, resBody, want, evType)
			}
			if ev, dl := e.store.events.Load(), e.store.deliveries.Load(); ev != events0+1 || dl != deliveries0+int64(want) {
				t.Fatalf("%s answered %s but committed %d events, %d deliveries", what, resBody, ev-events0, dl-deliveries0)
			}
			if p := e.pending(t); p != pending0+int64(wantPending) {
				t.Fatalf("%s answered %s but pending deliveries went %d -> %d, want +%d", what, resBody, pending0, p, wantPending)
			}
			after := newest(t)
			for i, w := range fixtures {
				if w.AppID == appID && w.Subscribes(evType) {
					if len(after[i]) == 0 || after[i][0].EventID != id || (len(after[i]) > 1 && after[i][1].EventID == id) {
						t.Fatalf("%s answered %s but webhook %s does not have exactly one new delivery of it", what, resBody, w.Name)
					}
					if wantStatus := map[bool]outbox.Status{true: outbox.StatusPending, false: outbox.StatusSkipped}[w.Enabled]; after[i][0].Status != wantStatus {
						t.Fatalf("%s: the delivery to webhook %s is %s, want %s", what, w.Name, after[i][0].Status, wantStatus)
					}
				} else if len(after[i]) != len(before[i]) || (len(after[i]) > 0 && after[i][0].ID != before[i][0].ID) {
					t.Fatalf("%s answered %s but webhook %s, not subscribed, has a new delivery", what, resBody, w.Name)
				}
			}
			// The event is stored byte for byte.
			for i, w := range fixtures {
				if w.AppID == appID && w.Subscribes(evType) {
					_, stored, err := e.ob.Delivery(context.Background(), w.AppID, w.ID, after[i][0].ID)
					if err != nil || stored == nil || !bytes.Equal(stored.Body, body) {
						t.Fatalf("%s: the stored event differs from the body posted (%v)", what, err)
					}
					break
				}
			}
			if idemKey != "" {
				seen[seenKey] = outbox.IngestResult{ID: id, Deliveries: want}
			}
		default:
			t.Fatalf("%s answered %d %s, want 200, 202 or a 4xx", what, rec.Code, resBody)
		}
	})
}

// exactMembers checks that a JSON body has the member "event" (spelled
// so, as JavaScript's JSON.parse reads it: the last of equal names wins)
// equal to evType, and "data" an object whose "appId" is appID.
func exactMembers(body []byte, evType, appID string) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return err
	}
	var ev string
	if err := json.Unmarshal(top["event"], &ev); err != nil || ev != evType {
		return fmt.Errorf(`member "event" is %s, want %q`, top["event"], evType)
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(top["data"], &data); err != nil {
		return fmt.Errorf(`member "data" is %s: %v`, top["data"], err)
	}
	var app string
	if err := json.Unmarshal(data["appId"], &app); err != nil || app != appID {
		return fmt.Errorf(`member "data.appId" is %s, want %q`, data["appId"], appID)
	}
	return nil
}

// ---- management API: create and edit ----

// fuzzWebhookSeeds are create and edit bodies, valid and not.
var fuzzWebhookSeeds = []string{
	`{"name":"ci","url":"https://example.com/hook","events":["job_finished"]}`,
	`{"name":"ci","url":"https://example.com/hook","events":["job_finished","job_created","job_finished"],"secret":"a-brand-new-secret-1","enabled":false}`,
	`{"name":"  padded  ","url":"http://example.com:8080/a?b=c#d","events":["app_build_created","app_deployment_created"],"secret":""}`,
	`{"name":"ci","url":"https://example.com","events":["job_finished"],"secret":"` + testSecret + `"}`,
	`{"name":"ümlaut 😀","url":"https://bücher.example/hook","events":["job_created"]}`,
	`{"NAME":"ci","Url":"https://example.com","EVENTS":["job_finished"],"Secret":"case-folded-secret-9"}`,
	`{"name":"ci","url":"https://example.com","events":["job_finished"],"secret":"first-secret-aaaa","secret":"second-secret-bbbb"}`,
	`{"name":"x","url":"https://example.com","events":["job_finished"],"colour":"red","secret":"unknown-field-secret"}`,
	`{"name":"x","url":"https://example.com","events":"job_finished","secret":"type-error-secret-1"}`,
	`{"name":"x","url":"https://example.com","events":["job_finished"],"secret":["array-secret-value-1"]}`,
	`{"name":"x","url":"https://example.com","events":["job_finished"],"secret":{"nested":"nested-secret-value"}}`,
	`{"name":"x","url":"https://example.com","events":["job_finished"],"secret":12345678901234567890}`,
	`{"name":"x","url":"https://example.com","events":["job_finished"],"secret":"` + strings.Repeat("s", 1025) + `"}`,
	`{"name":"x","url":"https://example.com","events":["job_finished"],"secret":"truncated-secret-zz`,
	`{"secret":"only-a-secret-here-1"}`,
	`{"enabled":true}`,
	`{"enabled":"yes"}`,
	`{"enabled":null}`,
	`{"name":null,"url":null,"events":null,"secret":null,"enabled":null}`,
	`{"name":""}`,
	`{"name":"   "}`,
	`{"name":"` + strings.Repeat("n", 201) + `"}`,
	`{"name":1e999}`,
	`{"url":"ftp://example.com"}`,
	`{"url":"https://user:pw@example.com/"}`,
	`{"url":"https://"}`,
	`{"url":"http://127.0.0.1/"}`,
	`{"url":"http://[::ffff:127.0.0.1]/"}`,
	`{"url":"http://[::ffff:7f00:1]:80/"}`,
	`{"url":"http://169.254.169.254/latest/meta-data"}`,
	`{"url":"http://[fe80::1%25eth0]/"}`,
	`{"url":"http://10.0.0.1/"}`,
	`{"url":"http://[2002:7f00:1::]/"}`,
	`{"url":"http://[64:ff9b::a9fe:a9fe]/"}`,
	`{"url":"http://0.0.0.0/"}`,
	`{"url":"http://[::]/"}`,
	`{"url":"http://224.0.0.1/"}`,
	`{"url":"http://localhost/"}`,
	`{"url":"https://8.8.8.8/"}`,
	`{"url":"%zz"}`,
	`{"url":"https://example.com/\u0000"}`,
	`{"events":[]}`,
	`{"events":["nope"]}`,
	`{"events":[null]}`,
	`{"events":[1]}`,
	`{"events":{"job_finished":true}}`,
	`{}`,
	``,
	`null`,
	`[]`,
	`[{"name":"x"}]`,
	`"string"`,
	`42`,
	`{"name":`,
	`{"name":"x"} {}`,
	`{"name":"x"} garbage`,
	`{"name":"x",}`,
	"{\"name\":\"\xff\xfe\"}",
	`{"name":"x","url":"https://example.com","events":["job_finished"],"name":"twice"}`,
	`{"name":"x","url":"https://example.com","events":["job_finished"],"nested":{"a":[{"b":null}]}}`,
	`{"name":"` + strings.Repeat("x", maxAPIBody) + `"}`,
}

func FuzzWebhookCreate(f *testing.F) {
	for _, s := range fuzzWebhookSeeds {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	e.createHook(f, fuzzApp, "keep", []string{"job_finished"}, testSecret, true)
	const path = "/webhooks/apps/" + fuzzApp + "/webhooks"

	f.Fuzz(func(t *testing.T, body []byte) {
		before := e.hooks(t, fuzzApp)
		secrets := inputSecrets(path, body)
		res := call(t, e.api, "POST", path, string(body))
		what := fmt.Sprintf("POST %s %q", path, body)
		checkAnswer(t, what, res.status, res.header, res.body, secrets...)

		after := e.hooks(t, fuzzApp)
		if res.status >= 400 {
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("%s answered %d %s but changed the webhooks", what, res.status, res.body)
			}
			return
		}
		if res.status != http.StatusCreated {
			t.Fatalf("%s answered %d %s, want 201 or a 4xx", what, res.status, res.body)
		}
		if len(after) != len(before)+1 {
			t.Fatalf("%s answered 201 but the app went from %d to %d webhooks", what, len(before), len(after))
		}
		var view map[string]any
		res.decode(t, &view)
		id, _ := view["id"].(string)
		var created *outbox.Webhook
		for _, w := range after {
			if w.ID == id {
				created = w
			}
		}
		if created == nil {
			t.Fatalf("%s answered 201 %s but no webhook has its id", what, res.body)
		}
		if !reflect.DeepEqual(before, slices.DeleteFunc(slices.Clone(after), func(w *outbox.Webhook) bool { return w == created })) {
			t.Fatalf("%s answered 201 but changed other webhooks", what)
		}
		if loc := res.header.Get("Location"); loc != path+"/"+url.PathEscape(id) {
			t.Errorf("%s: Location %q", what, loc)
		}
		checkView(t, what, res.body, created)
		checkApplied(t, what, body, &outbox.Webhook{Enabled: true}, created, true)

		// Delete it again through the API, so the list stays short.
		del := call(t, e.api, "DELETE", path+"/"+id, "")
		checkAnswer(t, "DELETE", del.status, del.header, del.body, secrets...)
		if del.status != http.StatusNoContent {
			t.Fatalf("DELETE of the created webhook answered %d %s", del.status, del.body)
		}
		if now := e.hooks(t, fuzzApp); !reflect.DeepEqual(before, now) {
			t.Fatalf("after deleting the created webhook the list differs from before")
		}
	})
}

func FuzzWebhookPatch(f *testing.F) {
	for _, s := range fuzzWebhookSeeds {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	e.createHook(f, fuzzApp, "keep", []string{"job_finished"}, fuzzSecret2, true)

	f.Fuzz(func(t *testing.T, body []byte) {
		// A fresh webhook per input, so each input starts from the same state.
		target := e.createHook(t, fuzzApp, "target", []string{"job_finished"}, testSecret, true)
		defer func() {
			if err := e.ob.DeleteWebhook(context.Background(), fuzzApp, target.ID); err != nil {
				t.Fatal(err)
			}
		}()
		path := "/webhooks/apps/" + fuzzApp + "/webhooks/" + target.ID
		before := e.hooks(t, fuzzApp)
		secrets := inputSecrets(path, body)
		res := call(t, e.api, "PATCH", path, string(body))
		what := fmt.Sprintf("PATCH %s %q", path, body)
		checkAnswer(t, what, res.status, res.header, res.body, secrets...)

		after := e.hooks(t, fuzzApp)
		if res.status >= 400 {
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("%s answered %d %s but changed the webhooks", what, res.status, res.body)
			}
			return
		}
		if res.status != http.StatusOK {
			t.Fatalf("%s answered %d %s, want 200 or a 4xx", what, res.status, res.body)
		}
		if len(after) != len(before) {
			t.Fatalf("%s answered 200 but the app went from %d to %d webhooks", what, len(before), len(after))
		}
		var patched *outbox.Webhook
		for i, w := range after {
			if w.ID == target.ID {
				patched = w
			} else if !reflect.DeepEqual(w, before[i]) {
				t.Fatalf("%s changed another webhook, %s", what, w.Name)
			}
		}
		if patched == nil {
			t.Fatalf("%s answered 200 but the webhook is gone", what)
		}
		checkView(t, what, res.body, patched)
		checkApplied(t, what, body, target, patched, false)
		if !patched.CreatedAt.Equal(target.CreatedAt) || patched.ID != target.ID || patched.AppID != target.AppID {
			t.Fatalf("%s changed the webhook's id, app or createdAt", what)
		}
	})
}

// checkView checks a webhook as the API answered it against the store.
func checkView(t *testing.T, what, body string, w *outbox.Webhook) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	for k := range got {
		if strings.Contains(strings.ToLower(k), "secret") && k != "hasSecret" {
			t.Fatalf("%s answered with a member %q: %s", what, k, body)
		}
	}
	wantJSON, err := json.Marshal(newWebhookView(w))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s answered %s, but the store has %s", what, body, wantJSON)
	}
}

// checkApplied checks that an accepted create or edit stored what the body
// asked for: decoding it as plain encoding/json must work, and each field it
// sets must be stored as validated (name trimmed, events deduplicated); the
// others keep their old values.
func checkApplied(t *testing.T, what string, body []byte, old, got *outbox.Webhook, create bool) {
	t.Helper()
	var in webhookInput
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatalf("%s was accepted but encoding/json refuses its body: %v", what, err)
	}
	if create && (in.Name == nil || in.URL == nil || in.Events == nil) {
		t.Fatalf("%s created a webhook without name, url or events", what)
	}
	want := *old
	if in.Name != nil {
		want.Name = strings.TrimSpace(*in.Name)
		if want.Name == "" {
			t.Fatalf("%s was accepted with an empty name", what)
		}
	}
	if in.URL != nil {
		want.URL = *in.URL
		u, err := url.Parse(want.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
			t.Fatalf("%s was accepted with url %q", what, want.URL)
		}
		if addr, err := netip.ParseAddr(u.Hostname()); err == nil {
			a := addr.WithZone("").Unmap()
			if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
				a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast() {
				t.Fatalf("%s was accepted with url %q, a refused destination", what, want.URL)
			}
		}
	}
	if in.Events != nil {
		want.Events = nil
		for _, ev := range *in.Events {
			if !slices.Contains(outbox.DefaultEvents, ev) {
				t.Fatalf("%s was accepted with event %q outside the catalog", what, ev)
			}
			if !slices.Contains(want.Events, ev) {
				want.Events = append(want.Events, ev)
			}
		}
		if len(want.Events) == 0 {
			t.Fatalf("%s was accepted without events", what)
		}
	}
	if in.Secret != nil {
		want.Secret = *in.Secret
	}
	if in.Enabled != nil {
		want.Enabled = *in.Enabled
	}
	if got.Name != want.Name || got.URL != want.URL || !slices.Equal(got.Events, want.Events) ||
		got.Secret != want.Secret || got.Enabled != want.Enabled {
		t.Fatalf("%s stored name %q url %q events %q enabled %v (secret changed: %v), want name %q url %q events %q enabled %v (secret changed: %v)",
			what, got.Name, got.URL, got.Events, got.Enabled, got.Secret != old.Secret,
			want.Name, want.URL, want.Events, want.Enabled, want.Secret != old.Secret)
	}
	if !create && old.Secret != "" && got.Secret != "" && got.Secret != old.Secret && got.PreviousSecret != old.Secret {
		t.Fatalf("%s rotated the secret without keeping the old one for the grace period", what)
	}
}

// ---- management API: delivery history and recovery ----

// fuzzHistory is a webhook with a history of every status: succeeded,
// failed, pending and skipped deliveries of two event types, and a sibling
// webhook with its own history.
func fuzzHistory(tb testing.TB) (e *fuzzEnv, hook, sibling *outbox.Webhook) {
	e = newFuzzEnv(tb)
	ctx := context.Background()
	hook = e.createHook(tb, fuzzApp, "history", []string{"job_finished", "job_created"}, testSecret, true)
	sibling = e.createHook(tb, fuzzApp, "sibling", []string{"job_finished"}, fuzzSecret2, true)
	types := []string{"job_finished", "job_created", "app_build_created"}
	for i := range 36 {
		body := fmt.Sprintf(`{"event":%q,"data":{"appId":%q,"n":%d}}`, types[i%3], fuzzApp, i)
		if _, err := e.ob.Ingest(ctx, []byte(body), ""); err != nil {
			tb.Fatal(err)
		}
	}
	n := 0
	e.store.settle(tb, func(j *outbox.Job) outbox.Status {
		n++
		return []outbox.Status{outbox.StatusSucceeded, outbox.StatusFailed, outbox.StatusFailed, outbox.StatusPending}[n%4]
	})
	disabled := false
	if _, err := e.ob.UpdateWebhook(ctx, fuzzApp, hook.ID, outbox.WebhookInput{Enabled: &disabled}); err != nil {
		tb.Fatal(err)
	}
	for i := range 3 {
		body := fmt.Sprintf(`{"event":"job_created","data":{"appId":%q,"skipped":%d}}`, fuzzApp, i)
		if _, err := e.ob.Ingest(ctx, []byte(body), ""); err != nil {
			tb.Fatal(err)
		}
	}
	enabled := true
	if _, err := e.ob.UpdateWebhook(ctx, fuzzApp, hook.ID, outbox.WebhookInput{Enabled: &enabled}); err != nil {
		tb.Fatal(err)
	}
	return e, hook, sibling
}

type deliveryModel struct {
	d    *outbox.Delivery
	body string
}

func FuzzDeliveriesQuery(f *testing.F) {
	for _, q := range []string{
		"", "limit=5", "limit=1", "limit=100", "limit=101", "limit=0", "limit=-1", "limit=abc", "limit=+5", "limit=05",
		"limit=99999999999999999999", "limit=", "limit=1.5", "limit=%31", "limit=2&limit=500",
		"status=failed", "status=succeeded", "status=pending", "status=skipped", "status=lost", "status=", "status=FAILED",
		"status=pending&limit=2", "status=failed&event=job_created&limit=3",
		"event=job_created", "event=job_finished&limit=4", "event=app_build_created", "event=nope", "event=%00",
		"cursor=0", "cursor=z", "cursor=%FF", "cursor=0190", "cursor=ffffffff-ffff-7fff-bfff-ffffffffffff&limit=3",
		"cursor=/", "cursor=..%2F..", "limit=2&cursor=", "a=b&&c", "status=failed;limit=2", "%zz", "status=%zz",
		"limit=3&status=failed&event=job_finished&cursor=f",
	} {
		f.Add(q)
	}
	e, hook, sibling := fuzzHistory(f)
	var model []deliveryModel
	for _, d := range e.allDeliveries(f, fuzzApp, hook.ID) {
		_, ev, err := e.ob.Delivery(context.Background(), fuzzApp, hook.ID, d.ID)
		if err != nil || ev == nil {
			f.Fatalf("fixture delivery %s: %v", d.ID, err)
		}
		model = append(model, deliveryModel{d, string(ev.Body)})
	}
	counts := map[outbox.Status]int{}
	for i, m := range model {
		counts[m.d.Status]++
		if i > 0 && model[i-1].d.ID <= m.d.ID {
			f.Fatalf("fixture history is not newest first")
		}
	}
	if len(model) != 27 || counts[outbox.StatusSucceeded] == 0 || counts[outbox.StatusFailed] == 0 ||
		counts[outbox.StatusPending] == 0 || counts[outbox.StatusSkipped] != 3 {
		f.Fatalf("fixture history: %d deliveries, %v", len(model), counts)
	}
	if len(e.allDeliveries(f, fuzzApp, sibling.ID)) == 0 {
		f.Fatalf("fixture sibling has no history")
	}
	path := "/webhooks/apps/" + fuzzApp + "/webhooks/" + hook.ID + "/deliveries"

	get := func(t *testing.T, rawQuery string) (apiResponse, string) {
		req := httptest.NewRequest("GET", path, nil)
		req.URL.RawQuery = rawQuery
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		res := apiResponse{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
		what := fmt.Sprintf("GET %s?%s", path, rawQuery)
		checkAnswer(t, what, res.status, res.header, res.body)
		return res, what
	}

	f.Fuzz(func(t *testing.T, query string) {
		// What a request line can carry: no controls, spaces or fragment.
		if !validHeaderValue(query) || strings.ContainsAny(query, " \t#") {
			return
		}
		pending0 := e.pending(t)
		res, what := get(t, query)
		q, _ := url.ParseQuery(query) // as Request.URL.Query does

		wantOK := true
		limit := 20
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > outbox.MaxPageSize {
				wantOK = false
			}
			limit = n
		}
		status := outbox.Status(q.Get("status"))
		switch status {
		case "", outbox.StatusPending, outbox.StatusSucceeded, outbox.StatusFailed, outbox.StatusSkipped:
		default:
			wantOK = false
		}
		if !wantOK {
			if res.status != http.StatusBadRequest {
				t.Fatalf("%s answered %d %s, want 400", what, res.status, res.body)
			}
			return
		}
		if res.status != http.StatusOK {
			t.Fatalf("%s answered %d %s, want 200", what, res.status, res.body)
		}

		// Follow the pages from this one, checking each against the model.
		cursor := q.Get("cursor")
		for page := 0; ; page++ {
			var want []deliveryModel
			for _, m := range model {
				if (status == "" || m.d.Status == status) && (q.Get("event") == "" || m.d.Event == q.Get("event")) &&
					(cursor == "" || m.d.ID < cursor) {
					want = append(want, m)
				}
			}
			wantNext := ""
			if len(want) > limit {
				want = want[:limit]
				wantNext = want[limit-1].d.ID
			}
			var got struct {
				Data       []deliveryView `json:"data"`
				NextCursor *string        `json:"nextCursor"`
			}
			if err := json.Unmarshal([]byte(res.body), &got); err != nil {
				t.Fatalf("%s answered %s: %v", what, res.body, err)
			}
			if got.Data == nil {
				t.Fatalf("%s answered %s, want a data array", what, res.body)
			}
			if len(got.Data) != len(want) {
				t.Fatalf("%s answered %d deliveries, want %d: %s", what, len(got.Data), len(want), res.body)
			}
			for i, d := range got.Data {
				m := want[i].d
				if d.ID != m.ID || d.AppID != fuzzApp || d.WebhookID != hook.ID || d.EventID != m.EventID ||
					d.Event != m.Event || d.Status != m.Status || d.Attempts != len(m.Attempts) ||
					d.RequestBody == nil || *d.RequestBody != want[i].body {
					t.Fatalf("%s: delivery %d is %+v, want %+v", what, i, d, m)
				}
			}
			gotNext := ""
			if got.NextCursor != nil {
				gotNext = *got.NextCursor
				if gotNext == "" {
					t.Fatalf("%s answered an empty nextCursor", what)
				}
			}
			if gotNext != wantNext {
				t.Fatalf("%s answered nextCursor %q, want %q", what, gotNext, wantNext)
			}
			if gotNext == "" || page == 2 {
				break
			}
			cursor = gotNext
			q.Set("cursor", cursor)
			res, what = get(t, q.Encode())
			if res.status != http.StatusOK {
				t.Fatalf("%s (the next page) answered %d %s", what, res.status, res.body)
			}
		}
		if p := e.pending(t); p != pending0 {
			t.Fatalf("%s changed the pending count %d -> %d", what, pending0, p)
		}
	})
}

// historySnapshot is what recovery may change: each delivery's status and
// attempt count.
func historySnapshot(tb testing.TB, e *fuzzEnv, hooks ...*outbox.Webhook) map[string]string {
	out := map[string]string{}
	for _, w := range hooks {
		for _, d := range e.allDeliveries(tb, w.AppID, w.ID) {
			out[d.ID] = fmt.Sprintf("%s/%d", d.Status, len(d.Attempts))
		}
	}
	return out
}

func FuzzRecover(f *testing.F) {
	for _, s := range []string{
		`{"since":"2020-01-01T00:00:00Z"}`,
		`{"since":"2999-01-01T00:00:00Z"}`,
		`{"since":"2020-01-01T00:00:00.123456789+02:00"}`,
		`{"since":"0000-01-01T00:00:00Z"}`,
		`{"since":"0001-01-01T00:00:00Z"}`,
		`{"since":"9999-12-31T23:59:59Z"}`,
		`{"since":"2020-01-01T00:00:00+25:00"}`,
		`{"since":"2020-02-30T00:00:00Z"}`,
		`{"since":"2020-01-01 00:00:00Z"}`,
		`{"since":"yesterday"}`,
		`{"since":""}`,
		`{"since":null}`,
		`{"since":1700000000}`,
		`{"since":["2020-01-01T00:00:00Z"]}`,
		`{"Since":"2020-01-01T00:00:00Z"}`,
		`{"since":"2020-01-01T00:00:00Z","status":"failed"}`,
		`{"since":"2020-01-01T00:00:00Z","secret":"recover-secret-value-1"}`,
		`{"since":"2020-01-01T00:00:00Z"} {}`,
		`{}`, ``, `null`, `[]`, `{"since":`,
	} {
		f.Add([]byte(s))
	}
	e, hook, sibling := fuzzHistory(f)
	// Recovery works on finished deliveries: settle the pending ones.
	e.store.settle(f, func(*outbox.Job) outbox.Status { return outbox.StatusFailed })
	if p, _ := e.store.Stats(context.Background()); p.Pending != 0 {
		f.Fatalf("fixture still has %d pending deliveries", p.Pending)
	}
	path := "/webhooks/apps/" + fuzzApp + "/webhooks/" + hook.ID + "/recover"

	f.Fuzz(func(t *testing.T, body []byte) {
		before := historySnapshot(t, e, hook, sibling)
		history := e.allDeliveries(t, fuzzApp, hook.ID)
		secrets := inputSecrets(path, body)
		res := call(t, e.api, "POST", path, string(body))
		what := fmt.Sprintf("POST %s %q", path, body)
		checkAnswer(t, what, res.status, res.header, res.body, secrets...)

		if res.status >= 400 {
			if p := e.pending(t); p != 0 {
				t.Fatalf("%s answered %d but %d deliveries are pending", what, res.status, p)
			}
			if after := historySnapshot(t, e, hook, sibling); !reflect.DeepEqual(before, after) {
				t.Fatalf("%s answered %d but changed the history", what, res.status)
			}
			return
		}
		if res.status != http.StatusAccepted {
			t.Fatalf("%s answered %d %s, want 202 or a 4xx", what, res.status, res.body)
		}
		var got map[string]any
		res.decode(t, &got)
		n, ok := got["recovered"].(float64)
		if len(got) != 1 || !ok {
			t.Fatalf("%s answered %s, want {\"recovered\": <count>}", what, res.body)
		}
		var in struct{ Since string }
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("%s was accepted but encoding/json refuses its body: %v", what, err)
		}
		since, err := time.Parse(time.RFC3339, in.Since)
		if err != nil {
			t.Fatalf("%s was accepted with since %q: %v", what, in.Since, err)
		}
		want := map[string]bool{}
		for _, d := range history {
			if d.Status == outbox.StatusFailed && !d.CreatedAt.Before(since) {
				want[d.ID] = true
			}
		}
		if int(n) != len(want) {
			t.Fatalf("%s recovered %v deliveries, want %d", what, n, len(want))
		}
		if p := e.pending(t); p != int64(len(want)) {
			t.Fatalf("%s recovered %d deliveries but %d are pending", what, len(want), p)
		}
		after := historySnapshot(t, e, hook, sibling)
		for id, s := range before {
			if want[id] {
				if !strings.HasPrefix(after[id], "pending/") {
					t.Fatalf("%s: recovered delivery %s is %s", what, id, after[id])
				}
			} else if after[id] != s {
				t.Fatalf("%s: delivery %s went %s -> %s without being recovered", what, id, s, after[id])
			}
		}
		// Put the history back as it was for the next input.
		// (settle adds an attempt; dropping the last one first keeps the
		// count, so the history compares equal next time.)
		e.store.settle(t, func(j *outbox.Job) outbox.Status {
			if n := len(j.Delivery.Attempts); n > 0 {
				j.Delivery.Attempts = j.Delivery.Attempts[:n-1]
			}
			return outbox.StatusFailed
		})
		if p := e.pending(t); p != 0 {
			t.Fatalf("after settling, %d deliveries are still pending", p)
		}
	})
}
