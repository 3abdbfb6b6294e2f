package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// capawesomeJobFinished is the example job_finished payload of the
// Capawesome webhooks page, pretty-printed exactly as shown there.
const capawesomeJobFinished = fixture.JobFinished

const capawesomeAppID = "70922e93-0944-48cc-a560-61135ab291ad"

// verifyXSignature is the Capawesome page's Node.js snippet in Go:
// hex(HMAC-SHA256(secret, rawBody)) compared as UTF-8 strings with a
// timing-safe compare (which, like Node's timingSafeEqual, fails on a
// length mismatch).
func verifyXSignature(secret string, rawBody []byte, header string) bool {
	digest := []byte(testkit.HexHMAC(secret, rawBody))
	sig := []byte(header)
	return len(digest) == len(sig) && subtle.ConstantTimeCompare(digest, sig) == 1
}

// verifyStandardWebhooks is the Standard Webhooks verification as its
// libraries do it, given the secret in its "whsec_" form: the key is the
// base64-decoded remainder, the signed content "{id}.{timestamp}.{body}",
// and any space-separated "v1,<base64>" entry may match.
func verifyStandardWebhooks(whsec, id, timestamp string, body []byte, header string, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec, "whsec_"))
	if err != nil {
		return err
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp %s is %v away from now", timestamp, d)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	want := []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	for _, entry := range strings.Fields(header) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(sig), want) == 1 {
			return nil
		}
	}
	return fmt.Errorf("no v1 entry of webhook-signature %q matches", header)
}

func TestSignedDeliveryAndHistory(t *testing.T) {
	rc := testkit.NewRecorder(t)
	rc.SetRespond(func(testkit.Request, int) (int, string) { return http.StatusOK, `{"received":true}` })
	s := startSender(t, senderConfig{}, "")

	// A secret with non-ASCII characters: it is keyed by its UTF-8 bytes.
	const secret = "capawesome-signing-secret-Ünïcode-✓"
	hook := s.createWebhook(t, capawesomeAppID, map[string]any{
		"name":   "CI pipeline",
		"url":    rc.URL("/capawesome"),
		"events": []string{"job_finished"},
		"secret": secret,
	})
	if !hook.HasSecret || !hook.Enabled || hook.AppID != capawesomeAppID || hook.ID == "" {
		t.Fatalf("created webhook = %+v, want an enabled webhook of app %s with hasSecret", hook, capawesomeAppID)
	}

	start := time.Now()
	ans := s.mustIngest(t, []byte(capawesomeJobFinished))
	if ans.Deliveries != 1 {
		t.Fatalf("ingest answered deliveries=%d, want 1 (one subscribed webhook)", ans.Deliveries)
	}

	wait.Until(t, "the receiver got no delivery of the job_finished event", func() bool { return rc.Count("") > 0 })
	got := rc.Requests("")[0]
	if !bytes.Equal(got.Body, []byte(capawesomeJobFinished)) {
		t.Errorf("receiver got body\n%s\nwant the posted bytes exactly\n%s", got.Body, capawesomeJobFinished)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("delivery Content-Type = %q, want application/json", ct)
	}
	if !verifyXSignature(secret, got.Body, got.Header.Get("X-Signature")) {
		t.Errorf("X-Signature %q does not verify with the Node.js snippet of the Capawesome page", got.Header.Get("X-Signature"))
	}
	id := got.Header.Get("webhook-id")
	if id != ans.ID {
		t.Errorf("webhook-id = %q, want the ingest answer's id %q", id, ans.ID)
	}
	whsec := "whsec_" + base64.StdEncoding.EncodeToString([]byte(secret))
	if err := verifyStandardWebhooks(whsec, id, got.Header.Get("webhook-timestamp"), got.Body, got.Header.Get("webhook-signature"), time.Now()); err != nil {
		t.Errorf("webhook-signature does not verify the Standard Webhooks way: %v", err)
	}

	// The history shows event, request body, response status and body, and
	// when it was sent.
	var d deliveryJSON
	wait.Until(t, "the delivery history never showed the delivery as succeeded", func() bool {
		ds := s.deliveries(t, capawesomeAppID, hook.ID)
		if len(ds) == 1 && ds[0].Status == "succeeded" {
			d = ds[0]
			return true
		}
		return false
	})
	if d.Event != "job_finished" || d.EventID != ans.ID || d.WebhookID != hook.ID {
		t.Errorf("history shows event=%q eventId=%q webhookId=%q, want job_finished %s %s", d.Event, d.EventID, d.WebhookID, ans.ID, hook.ID)
	}
	if d.RequestBody != capawesomeJobFinished {
		t.Errorf("history shows requestBody %q, want the exact %d bytes posted", d.RequestBody, len(capawesomeJobFinished))
	}
	if d.ResponseStatusCode != http.StatusOK || d.ResponseBody != `{"received":true}` {
		t.Errorf("history shows response %d %q, want 200 %q", d.ResponseStatusCode, d.ResponseBody, `{"received":true}`)
	}
	if d.SentAt == nil || d.SentAt.Before(start.Add(-time.Second)) || d.SentAt.After(time.Now().Add(time.Second)) {
		t.Errorf("history shows sentAt %v, want a time during the test (after %v)", d.SentAt, start)
	}
	if d.Attempts != 1 {
		t.Errorf("history shows %d attempts, want 1", d.Attempts)
	}

	one := s.delivery(t, capawesomeAppID, hook.ID, d.ID)
	if len(one.AttemptLog) != 1 || one.AttemptLog[0].ResponseStatusCode != http.StatusOK || one.AttemptLog[0].SentAt.IsZero() {
		t.Errorf("delivery %s shows attemptLog %+v, want one attempt answered 200 with its sentAt", d.ID, one.AttemptLog)
	}
}

func TestRetriesThenSuccess(t *testing.T) {
	rc := testkit.NewRecorder(t)
	rc.SetRespond(func(_ testkit.Request, nth int) (int, string) {
		if nth <= 2 {
			return http.StatusInternalServerError, "boom " + strconv.Itoa(nth)
		}
		return http.StatusOK, "finally"
	})
	s := startSender(t, senderConfig{RetrySchedule: "100ms 100ms"}, "")
	const app = "retry-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "flaky", "url": rc.URL("/flaky"), "events": []string{"job_created"}})

	ans := s.mustIngest(t, []byte(`{"event":"job_created","data":{"appId":"retry-app","id":"j1"}}`))
	var d deliveryJSON
	wait.Until(t, "the delivery to an endpoint answering 500, 500, 200 never showed succeeded", func() bool {
		ds := s.deliveries(t, app, hook.ID)
		if len(ds) == 1 && ds[0].Status == "succeeded" {
			d = ds[0]
			return true
		}
		return false
	})
	if d.Attempts != 3 {
		t.Errorf("history shows %d attempts, want 3 (500, 500, 200)", d.Attempts)
	}
	one := s.delivery(t, app, hook.ID, d.ID)
	var codes []int
	for _, a := range one.AttemptLog {
		codes = append(codes, a.ResponseStatusCode)
	}
	if fmt.Sprintf("%v", codes) != "[500 500 200]" {
		t.Errorf("attemptLog status codes = %v, want [500 500 200]", codes)
	}
	if len(one.AttemptLog) == 3 && one.AttemptLog[0].ResponseBody != "boom 1" {
		t.Errorf("first attempt's responseBody = %q, want %q", one.AttemptLog[0].ResponseBody, "boom 1")
	}
	reqs := rc.Requests("/flaky")
	if len(reqs) != 3 {
		t.Errorf("receiver got %d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if r.Header.Get("webhook-id") != ans.ID {
			t.Errorf("attempt %d carried webhook-id %q, want the event id %q on every retry", i+1, r.Header.Get("webhook-id"), ans.ID)
		}
	}
}

func TestFailedThenResend(t *testing.T) {
	rc := testkit.NewRecorder(t)
	rc.SetRespond(testkit.Always(http.StatusInternalServerError))
	s := startSender(t, senderConfig{RetrySchedule: "100ms 100ms"}, "")
	const app = "resend-app"
	hook := s.createWebhook(t, app, map[string]any{"name": "down", "url": rc.URL("/down"), "events": []string{"job_finished"}})

	ans := s.mustIngest(t, []byte(`{"event":"job_finished","data":{"appId":"resend-app","id":"j2"}}`))
	var d deliveryJSON
	wait.Until(t, "a delivery to an endpoint always answering 500 never showed failed", func() bool {
		ds := s.deliveries(t, app, hook.ID)
		if len(ds) == 1 && ds[0].Status == "failed" {
			d = ds[0]
			return true
		}
		return false
	})
	if d.Attempts != 3 {
		t.Errorf("failed delivery shows %d attempts, want 3 (retry_schedule 100ms 100ms)", d.Attempts)
	}
	// A failed delivery is final: no fourth attempt can follow.
	if n := rc.Count("/down"); n != 3 {
		t.Errorf("receiver got %d requests for a failed delivery, want 3", n)
	}

	rc.SetRespond(testkit.Always(http.StatusOK))
	status, body := call(t, http.MethodPost, s.hooksURL(app)+"/"+hook.ID+"/deliveries/"+d.ID+"/resend", nil)
	if status != http.StatusAccepted {
		t.Fatalf("resend answered %d %s, want 202", status, body)
	}
	wait.Until(t, "the resent delivery never showed succeeded", func() bool {
		return s.delivery(t, app, hook.ID, d.ID).Status == "succeeded"
	})
	one := s.delivery(t, app, hook.ID, d.ID)
	if len(one.AttemptLog) != 4 || one.AttemptLog[3].ResponseStatusCode != http.StatusOK {
		t.Errorf("after resend the attemptLog is %+v, want 4 attempts, the last answered 200", one.AttemptLog)
	}
	reqs := rc.Requests("/down")
	if len(reqs) != 4 {
		t.Fatalf("receiver got %d requests, want 4 (3 failed, 1 resent)", len(reqs))
	}
	if id := reqs[3].Header.Get("webhook-id"); id != ans.ID {
		t.Errorf("resend carried webhook-id %q, want the event id %q", id, ans.ID)
	}
	if ds := s.deliveries(t, app, hook.ID); len(ds) != 1 || ds[0].Status != "succeeded" {
		t.Errorf("history after resend = %+v, want the one delivery, succeeded", ds)
	}
}
