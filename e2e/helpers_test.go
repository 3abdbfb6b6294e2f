package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// senderTimeout is the attempt timeout of sidecars under test.
const senderTimeout = 2 * time.Second

// senderConfig describes the Caddyfile of a sidecar under test.
type senderConfig struct {
	// Port is the loopback port of the site that serves webhook_events at
	// /events and webhook_admin under /webhooks/.
	Port int
	// RetrySchedule is the retry_schedule line; default "100ms 100ms".
	RetrySchedule string
	// NoAllow leaves out allow_destinations, so loopback URLs are refused.
	NoAllow bool
	// Storage is the storage line's argument; default a Badger directory
	// in the process's folder.
	Storage string
	// Options are extra lines inside the webhooks global option.
	Options string
	// Sites are extra site blocks.
	Sites string
	// Debug logs at debug level, where every attempt is logged.
	Debug bool
	// Env is added to the process's environment.
	Env []string
}

func (c senderConfig) caddyfile() string {
	retry := c.RetrySchedule
	if retry == "" {
		retry = "100ms 100ms"
	}
	allow := "allow_destinations 127.0.0.0/8"
	if c.NoAllow {
		allow = ""
	}
	storage := c.Storage
	if storage == "" {
		storage = "{DIR}/webhooks"
	}
	debug := ""
	if c.Debug {
		debug = "debug"
	}
	return fmt.Sprintf(`{
	admin {ADMIN}
	%s
	webhooks {
		storage %s
		retry_schedule %s
		timeout %s
		%s
		%s
	}
}

http://127.0.0.1:%d {
	handle /events {
		webhook_events
	}
	handle /webhooks/* {
		webhook_admin
	}
	respond "not the webhooks site" 404
}
%s
`, debug, storage, retry, senderTimeout, allow, c.Options, c.Port, c.Sites)
}

// sender is a running sidecar.
type sender struct {
	*testcaddy.Process
	cfg senderConfig
}

// startSender starts Caddy with cfg on a new directory (or on dir, to
// restart on the same storage). A zero cfg.Port picks a free one.
func startSender(t *testing.T, cfg senderConfig, dir string) *sender {
	t.Helper()
	if cfg.Port == 0 {
		cfg.Port = testkit.FreePort(t)
	}
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: cfg.caddyfile(), Dir: dir, Env: cfg.Env})
	return &sender{Process: p, cfg: cfg}
}

// ingestURL is where the service posts its events.
func (s *sender) ingestURL() string { return fmt.Sprintf("http://127.0.0.1:%d/events", s.cfg.Port) }

// siteURL is a path on the site (the webhook_admin handler).
func (s *sender) siteURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.cfg.Port, path)
}

// adminURL is a path on the admin endpoint.
func (s *sender) adminURL(path string) string { return "http://" + s.Admin + path }

// hooksURL is the management API's collection of an app's webhooks on the
// admin endpoint.
func (s *sender) hooksURL(appID string) string {
	return s.adminURL("/webhooks/apps/" + url.PathEscape(appID) + "/webhooks")
}

// call sends a request with a JSON body (a string or []byte is sent as is,
// anything else is marshaled; nil sends none) and returns the status and body.
func call(t *testing.T, method, u string, body any) (int, []byte) {
	t.Helper()
	a := testkit.Call(t, method, u, body, nil)
	return a.Status, a.Body
}

// webhookJSON is a webhook as the management API shows it.
type webhookJSON struct {
	ID        string   `json:"id"`
	AppID     string   `json:"appId"`
	Name      string   `json:"name"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	HasSecret bool     `json:"hasSecret"`
	Enabled   bool     `json:"enabled"`
	// DisabledReason says why the sender disabled the webhook.
	DisabledReason string    `json:"disabledReason"`
	CreatedAt      time.Time `json:"createdAt"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// attemptJSON is one attempt in a delivery's attemptLog.
type attemptJSON struct {
	SentAt             time.Time `json:"sentAt"`
	ResponseStatusCode int       `json:"responseStatusCode"`
	ResponseBody       string    `json:"responseBody"`
	Error              string    `json:"error"`
	DurationMs         int64     `json:"durationMs"`
}

// deliveryJSON is a delivery as the history shows it.
type deliveryJSON struct {
	ID                 string        `json:"id"`
	AppID              string        `json:"appId"`
	WebhookID          string        `json:"webhookId"`
	EventID            string        `json:"eventId"`
	Event              string        `json:"event"`
	Status             string        `json:"status"`
	Attempts           int           `json:"attempts"`
	RequestBody        string        `json:"requestBody"`
	SentAt             *time.Time    `json:"sentAt"`
	ResponseStatusCode int           `json:"responseStatusCode"`
	ResponseBody       string        `json:"responseBody"`
	LastError          string        `json:"lastError"`
	AttemptLog         []attemptJSON `json:"attemptLog"`
}

// listJSON is the envelope of every list of the management API.
type listJSON[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"nextCursor"`
}

// ingestAnswer is what webhook_events answers a 202 with.
type ingestAnswer struct {
	ID         string `json:"id"`
	Deliveries int    `json:"deliveries"`
}

// errorJSON is the body of every error.
type errorJSON struct {
	Error string `json:"error"`
}

func decode[T any](t *testing.T, what string, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s answered %q, which is not the expected JSON: %v", what, raw, err)
	}
	return v
}

// createWebhook creates a webhook through the admin endpoint and fails the
// test unless it answers 201.
func (s *sender) createWebhook(t *testing.T, appID string, in map[string]any) webhookJSON {
	t.Helper()
	status, body := call(t, http.MethodPost, s.hooksURL(appID), in)
	if status != http.StatusCreated {
		t.Fatalf("creating webhook %v answered %d %s, want 201", in["name"], status, body)
	}
	return decode[webhookJSON](t, "creating a webhook", body)
}

// listWebhooks returns an app's webhooks.
func (s *sender) listWebhooks(t *testing.T, appID string) []webhookJSON {
	t.Helper()
	status, body := call(t, http.MethodGet, s.hooksURL(appID), nil)
	if status != http.StatusOK {
		t.Fatalf("listing webhooks of %s answered %d %s, want 200", appID, status, body)
	}
	return decode[listJSON[webhookJSON]](t, "listing webhooks", body).Data
}

// deliveries returns the newest page (up to 100) of a webhook's history.
func (s *sender) deliveries(t *testing.T, appID, hookID string) []deliveryJSON {
	t.Helper()
	status, body := call(t, http.MethodGet, s.hooksURL(appID)+"/"+hookID+"/deliveries?limit=100", nil)
	if status != http.StatusOK {
		t.Fatalf("listing deliveries of webhook %s answered %d %s, want 200", hookID, status, body)
	}
	return decode[listJSON[deliveryJSON]](t, "listing deliveries", body).Data
}

// allDeliveries follows the cursor through a webhook's whole history.
func (s *sender) allDeliveries(t *testing.T, appID, hookID string) []deliveryJSON {
	t.Helper()
	var all []deliveryJSON
	cursor := ""
	for page := 0; page < 1000; page++ {
		u := s.hooksURL(appID) + "/" + hookID + "/deliveries?limit=100"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		status, body := call(t, http.MethodGet, u, nil)
		if status != http.StatusOK {
			t.Fatalf("listing deliveries of webhook %s answered %d %s, want 200", hookID, status, body)
		}
		l := decode[listJSON[deliveryJSON]](t, "listing deliveries", body)
		all = append(all, l.Data...)
		if l.NextCursor == nil || *l.NextCursor == "" {
			return all
		}
		cursor = *l.NextCursor
	}
	t.Fatalf("history of webhook %s has more than 1000 pages", hookID)
	return nil
}

// settled waits until no delivery of the webhooks is pending: from then on
// nothing more is sent to them, so what their endpoints got can be counted.
func (s *sender) settled(t *testing.T, appID string, hookIDs ...string) {
	t.Helper()
	wait.Until(t, "every delivery to settle", func() bool {
		for _, id := range hookIDs {
			for _, d := range s.allDeliveries(t, appID, id) {
				if d.Status == "pending" {
					return false
				}
			}
		}
		return true
	})
}

// delivery returns one delivery with its attempts.
func (s *sender) delivery(t *testing.T, appID, hookID, id string) deliveryJSON {
	t.Helper()
	status, body := call(t, http.MethodGet, s.hooksURL(appID)+"/"+hookID+"/deliveries/"+id, nil)
	if status != http.StatusOK {
		t.Fatalf("getting delivery %s answered %d %s, want 200", id, status, body)
	}
	return decode[deliveryJSON](t, "getting a delivery", body)
}

// ingest posts an event body and returns the status and the answer.
func ingest(t *testing.T, u string, body []byte) (int, []byte) {
	t.Helper()
	return call(t, http.MethodPost, u, body)
}

// mustIngest posts an event and fails the test unless it answers 202.
func (s *sender) mustIngest(t *testing.T, body []byte) ingestAnswer {
	t.Helper()
	status, out := ingest(t, s.ingestURL(), body)
	if status != http.StatusAccepted {
		t.Fatalf("ingest of %s answered %d %s, want 202", body, status, out)
	}
	a := decode[ingestAnswer](t, "ingest", out)
	if a.ID == "" {
		t.Fatalf("ingest answered 202 %s without an event id", out)
	}
	return a
}

// postAccepted posts an event and returns its id if the answer is a whole
// 202: a connection error, another status, or a 202 whose body a kill cut
// short is no answer the service saw, so it makes no promise.
func postAccepted(u, body string) (string, bool, error) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := testkit.Client().Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	var a ingestAnswer
	if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&a) != nil || a.ID == "" {
		return "", false, nil
	}
	return a.ID, true, nil
}

// metrics scrapes the admin endpoint's /metrics.
func (s *sender) metrics(t *testing.T) testkit.Metrics {
	t.Helper()
	return testkit.Scrape(t, s.adminURL("/metrics"))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jsonUnmarshalStrict decodes raw into v, refusing unknown fields.
func jsonUnmarshalStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
