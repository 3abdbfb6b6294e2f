package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// provision readies h as Caddy would, with a quiet logger and a clock the
// test controls.
func provision(t testing.TB, h *Handler, clock *fakeClock) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if clock != nil {
		h.now = clock.Now
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	h.logger = zap.NewNop()
	t.Cleanup(func() { _ = h.Cleanup() })
}

// counterValue reads the verification counter of one result.
func counterValue(t testing.TB, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := verifications.WithLabelValues(result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// backend is the next handler: it records what reached it.
type backend struct {
	mu     sync.Mutex
	calls  int
	bodies [][]byte
	status int
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if r.GetBody != nil {
		again, _ := r.GetBody()
		rewound, _ := io.ReadAll(again)
		if !bytes.Equal(rewound, body) {
			return errors.New("GetBody gave other bytes than Body")
		}
	}
	if r.ContentLength != int64(len(body)) {
		return errors.New("ContentLength does not match the body")
	}
	b.mu.Lock()
	b.calls++
	b.bodies = append(b.bodies, body)
	status := b.status
	b.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
	}
	_, err = w.Write([]byte("ok"))
	return err
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func serve(t testing.TB, h *Handler, next caddyhttp.Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, next); err != nil {
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			w.Code = he.StatusCode
		} else {
			w.Code = http.StatusInternalServerError
		}
	}
	return w
}

func errorOf(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("answer %d is not a JSON error: %q", w.Code, w.Body.String())
	}
	return e.Error
}

func TestServeHTTPRejections(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"event":"job_created","data":{"appId":"a"}}`)
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	stale := clock.t.Add(-6 * time.Minute)

	tests := []struct {
		name    string
		scheme  string
		header  http.Header
		body    []byte
		status  int
		result  string
		message string
	}{
		{
			name: "valid x-signature", scheme: "x-signature", body: body,
			header: http.Header{"X-Signature": {signature.XSignature(secret, body)}},
			status: 200, result: resultValid,
		},
		{
			name: "tampered body", scheme: "x-signature", body: append([]byte{' '}, body...),
			header: http.Header{"X-Signature": {signature.XSignature(secret, body)}},
			status: 401, result: resultInvalid, message: "signature does not match",
		},
		{
			name: "missing header", scheme: "github", body: body,
			header: http.Header{"X-Signature": {signature.XSignature(secret, body)}},
			status: 401, result: resultMissing, message: "missing header X-Hub-Signature-256",
		},
		{
			name: "expired stripe", scheme: "stripe", body: body,
			header: http.Header{"Stripe-Signature": {signature.StripeSignature([][]byte{secret}, stale, body)}},
			status: 401, result: resultExpired, message: "timestamp outside tolerance",
		},
		{
			name: "malformed", scheme: "shopify", body: body,
			header: http.Header{"X-Shopify-Hmac-Sha256": {"%%%"}},
			status: 401, result: resultInvalid, message: "malformed signature",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Secrets: []string{string(secret)}, Scheme: tc.scheme}
			provision(t, h, clock)
			next := &backend{}
			before := counterValue(t, tc.result)

			r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(tc.body))
			r.Header = tc.header
			w := serve(t, h, next, r)

			if w.Code != tc.status {
				t.Fatalf("answered %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if got := counterValue(t, tc.result) - before; got != 1 {
				t.Errorf("%s counter rose by %v, want 1", tc.result, got)
			}
			if tc.status != 200 {
				if next.count() != 0 {
					t.Errorf("a rejected request reached the backend")
				}
				if msg := errorOf(t, w); !strings.Contains(msg, tc.message) {
					t.Errorf("error %q, want it to say %q", msg, tc.message)
				}
				if strings.Contains(w.Body.String(), string(secret)) || strings.Contains(w.Body.String(), signature.XSignature(secret, tc.body)) {
					t.Errorf("401 body shows the secret or the expected signature: %s", w.Body)
				}
				return
			}
			if next.count() != 1 || !bytes.Equal(next.bodies[0], tc.body) {
				t.Errorf("backend got %d requests, body %q", next.count(), next.bodies)
			}
		})
	}
}

// chunked hides the length of r from the request, as a chunked upload does.
type chunked struct{ io.Reader }

// postSized serves a signed body of size bytes, declared or chunked, and
// returns the answer, the backend, the request and the body.
func postSized(t *testing.T, h *Handler, secret []byte, size int, isChunked bool) (*httptest.ResponseRecorder, *backend, *http.Request, []byte) {
	t.Helper()
	body := bytes.Repeat([]byte{'x'}, size)
	var rd io.Reader = bytes.NewReader(body)
	if isChunked {
		rd = chunked{rd}
	}
	r := httptest.NewRequest(http.MethodPost, "/hook", rd)
	if isChunked {
		r.ContentLength = -1
	}
	r.Header.Set("X-Signature", signature.XSignature(secret, body))
	next := &backend{}
	return serve(t, h, next, r), next, r, body
}

func TestBodyLimits(t *testing.T) {
	secret := []byte("s3cret")
	h := &Handler{Secrets: []string{string(secret)}, MaxBody: 100}
	provision(t, h, nil)

	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{"at the limit", 100, false, 200},
		{"over the limit", 101, false, 413},
		{"chunked at the limit", 100, true, 200},
		{"chunked over the limit", 101, true, 413},
		{"empty", 0, false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, next, r, body := postSized(t, h, secret, tc.size, tc.chunked)
			if w.Code != tc.status {
				t.Fatalf("answered %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 413 {
				if next.count() != 0 {
					t.Fatal("an oversized body reached the backend")
				}
				if msg := errorOf(t, w); !strings.Contains(msg, "max_body") {
					t.Errorf("413 error %q does not name max_body", msg)
				}
				return
			}
			if !bytes.Equal(next.bodies[0], body) {
				t.Errorf("backend got %d bytes, want the %d sent", len(next.bodies[0]), len(body))
			}
			if r.TransferEncoding != nil {
				t.Errorf("TransferEncoding left as %v with a known length", r.TransferEncoding)
			}
		})
	}
}

func standardRequest(t testing.TB, secret []byte, id string, at time.Time, body []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://example.com/hook", bytes.NewReader(body))
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", signature.StandardTimestamp(at))
	r.Header.Set("webhook-signature", signature.StandardSign(secret, id, at, body))
	return r
}

func TestReplayWindow(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"n":1}`)
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	h := &Handler{Secrets: []string{string(secret)}, Scheme: "standard", ReplayWindow: caddy.Duration(time.Hour)}
	provision(t, h, clock)
	next := &backend{}

	send := func(id string) *httptest.ResponseRecorder {
		return serve(t, h, next, standardRequest(t, secret, id, clock.Now(), body))
	}

	if w := send("evt_1"); w.Code != 200 || w.Header().Get(DuplicateHeader) != "" {
		t.Fatalf("first delivery: %d %v", w.Code, w.Header())
	}
	w := send("evt_1")
	if w.Code != 200 || w.Header().Get(DuplicateHeader) != "true" {
		t.Fatalf("retry within the window answered %d, Webhook-Duplicate %q; want 200 and true", w.Code, w.Header().Get(DuplicateHeader))
	}
	if next.count() != 1 {
		t.Fatalf("backend saw evt_1 %d times, want once", next.count())
	}

	// A delivery the backend failed is not remembered: the retry goes through.
	next.status = 500
	if w := send("evt_2"); w.Code != 500 {
		t.Fatalf("failing backend: got %d", w.Code)
	}
	next.status = 0
	if w := send("evt_2"); w.Code != 200 || w.Header().Get(DuplicateHeader) != "" {
		t.Fatalf("retry after a 500 was not forwarded: %d %v", w.Code, w.Header())
	}
	if next.count() != 3 {
		t.Fatalf("backend saw %d requests, want 3", next.count())
	}

	// After the window the id is forgotten.
	clock.Advance(time.Hour + time.Second)
	if w := send("evt_1"); w.Header().Get(DuplicateHeader) != "" {
		t.Fatal("an id was still remembered after its window")
	}

	// An unverified request never learns whether an id was seen.
	r := standardRequest(t, []byte("wrong"), "evt_1", clock.Now(), body)
	if w := serve(t, h, next, r); w.Code != 401 {
		t.Fatalf("a duplicate id with a bad signature answered %d, want 401", w.Code)
	}

	// The same id on another endpoint is another delivery.
	r = standardRequest(t, secret, "evt_1", clock.Now(), body)
	r.URL.Path = "/other"
	if w := serve(t, h, next, r); w.Header().Get(DuplicateHeader) != "" {
		t.Fatal("the same id on another path was taken for a duplicate")
	}
}

func TestReplayInFlight(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{}`)
	h := &Handler{Secrets: []string{string(secret)}, Scheme: "github", ReplayWindow: caddy.Duration(time.Minute)}
	provision(t, h, nil)

	release := make(chan struct{})
	entered := make(chan struct{})
	var calls atomic.Int32
	slow := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		close(entered)
		<-release
		return nil
	})
	req := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/gh", bytes.NewReader(body))
		r.Header.Set("X-Hub-Signature-256", signature.GitHubSignature(secret, body))
		r.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		return r
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve(t, h, slow, req()) }()
	<-entered
	w := serve(t, h, slow, req())
	if w.Code != http.StatusConflict || w.Header().Get("Retry-After") != "5" {
		t.Fatalf("a copy arriving while the first is handled: %d %v, want 409 with Retry-After: 5", w.Code, w.Header())
	}
	close(release)
	if first := <-done; first.Code != 200 {
		t.Fatalf("first delivery: %d", first.Code)
	}
	if w := serve(t, h, slow, req()); w.Header().Get(DuplicateHeader) != "true" {
		t.Fatalf("after the first succeeded, a copy was not a duplicate: %d", w.Code)
	}
	if calls.Load() != 1 {
		t.Fatalf("backend called %d times", calls.Load())
	}
}

func TestReplayPanicReleasesID(t *testing.T) {
	secret := []byte("s3cret")
	h := &Handler{Secrets: []string{string(secret)}, Scheme: "standard", ReplayWindow: caddy.Duration(time.Minute)}
	provision(t, h, nil)
	boom := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { panic("boom") })
	func() {
		defer func() { _ = recover() }()
		serve(t, h, boom, standardRequest(t, secret, "evt_p", time.Now(), []byte("x")))
	}()
	w := serve(t, h, &backend{}, standardRequest(t, secret, "evt_p", time.Now(), []byte("x")))
	if w.Code != 200 || w.Header().Get(DuplicateHeader) != "" {
		t.Fatalf("after a panic the retry answered %d %v; want it forwarded", w.Code, w.Header())
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := newReplayCache(3)
	now := time.Unix(0, 0)
	key := func(id string) replayKey { return newReplayKey("example.com", "/hook", id) }
	begin := func(id string) replayState {
		t.Helper()
		state, _, err := c.begin(context.Background(), key(id), now)
		if err != nil {
			t.Fatal(err)
		}
		return state
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if begin(k) != replayNew {
			t.Fatalf("%s: not new", k)
		}
		c.finish(key(k), true, now, time.Hour)
	}
	if c.len() != 3 {
		t.Fatalf("cache holds %d ids, capacity 3", c.len())
	}
	if begin("a") != replayNew {
		t.Fatal("the oldest id was not the one forgotten")
	}
	c.finish(key("a"), false, now, time.Hour)
	if begin("d") != replaySeen {
		t.Fatal("the newest id was forgotten")
	}
}

func TestReplayCacheSharedAcrossReload(t *testing.T) {
	secret := []byte("s3cret")
	old := &Handler{Secrets: []string{string(secret)}, Scheme: "standard", ReplayWindow: caddy.Duration(time.Minute)}
	provision(t, old, nil)
	serve(t, old, &backend{}, standardRequest(t, secret, "evt_r", time.Now(), []byte("x")))

	// A reload provisions the new handler before cleaning up the old one.
	reloaded := &Handler{Secrets: []string{string(secret)}, Scheme: "standard", ReplayWindow: caddy.Duration(time.Minute)}
	provision(t, reloaded, nil)
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	w := serve(t, reloaded, &backend{}, standardRequest(t, secret, "evt_r", time.Now(), []byte("x")))
	if w.Header().Get(DuplicateHeader) != "true" {
		t.Fatal("a reload forgot a delivered id")
	}
}

func TestProvisionSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RECEIVER_TEST_SECRET", "from-env")

	h := &Handler{Secrets: []string{"{env.RECEIVER_TEST_SECRET}", "{file." + file + "}", "plain"}}
	provision(t, h, nil)
	for i, want := range []string{"from-env", "from-file", "plain"} {
		if string(h.keys[i]) != want {
			t.Errorf("secret %d became %q, want %q", i+1, h.keys[i], want)
		}
	}

	h = &Handler{Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, Scheme: "standard"}
	provision(t, h, nil)
	if len(h.keys[0]) != 24 {
		t.Errorf("whsec_ secret was not base64-decoded for standard: %d bytes", len(h.keys[0]))
	}
	h = &Handler{Secrets: []string{"whsec_abc"}, Scheme: "stripe"}
	provision(t, h, nil)
	if string(h.keys[0]) != "whsec_abc" {
		t.Errorf("stripe secrets are used as their bytes, got %q", h.keys[0])
	}
}

func TestProvisionAndValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Handler
		want string
	}{
		{"unset env", Handler{Secrets: []string{"{env.RECEIVER_TEST_UNSET_VAR}"}}, "secret 1: "},
		{"missing file", Handler{Secrets: []string{"{file./nonexistent/secret}"}}, "secret 1: "},
		{"bad whsec", Handler{Secrets: []string{"whsec_!!!"}, Scheme: "standard"}, "secret 1: decoding whsec_"},
		{"unknown scheme", Handler{Secrets: []string{"s"}, Scheme: "nope"}, `scheme: unknown "nope"`},
		{"no secret", Handler{}, "secret: at least one is required"},
		{"negative body", Handler{Secrets: []string{"s"}, MaxBody: -1}, "max_body: must not be negative"},
		{"negative tolerance", Handler{Secrets: []string{"s"}, Tolerance: -1}, "tolerance: must not be negative"},
		{"negative read timeout", Handler{Secrets: []string{"s"}, ReadTimeout: -1}, "read_timeout: must not be negative"},
		{"negative window", Handler{Secrets: []string{"s"}, ReplayWindow: -1}, "replay_window: must not be negative"},
		{"replay without id", Handler{Secrets: []string{"s"}, Scheme: "stripe", ReplayWindow: caddy.Duration(time.Minute)}, "replay_window: needs a delivery id, and scheme stripe carries none"},
		{"replay with shopify", Handler{Secrets: []string{"s"}, Scheme: "shopify", ReplayWindow: caddy.Duration(time.Minute)}, "replay_window: needs a delivery id, and scheme shopify carries none"},
		{"replay with slack", Handler{Secrets: []string{"s"}, Scheme: "slack", ReplayWindow: caddy.Duration(time.Minute)}, "replay_window: needs a delivery id, and scheme slack carries none"},
		{"storage without window", Handler{Secrets: []string{"s"}, ReplayStorage: "postgres://db/x"}, "replay_storage: needs replay_window"},
		{"storage not a URL", Handler{Secrets: []string{"s"}, ReplayWindow: caddy.Duration(time.Minute), ReplayStorage: "host=db dbname=x"},
			"replay_storage: must be a postgres:// or postgresql:// URL"},
		{"storage of another scheme", Handler{Secrets: []string{"s"}, ReplayWindow: caddy.Duration(time.Minute), ReplayStorage: "mysql://db/x"},
			"replay_storage: must be a postgres:// or postgresql:// URL"},
		{"storage from an unset env", Handler{Secrets: []string{"s"}, ReplayWindow: caddy.Duration(time.Minute), ReplayStorage: "{env.RECEIVER_TEST_UNSET_VAR}"},
			"replay_storage: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := tc.h
			err := h.Provision(ctx)
			if err == nil {
				err = h.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
			_ = h.Cleanup()
		})
	}
}

func TestMetricsReRegisterOnReload(t *testing.T) {
	// Two handlers in one config share a registry; a reload brings a new
	// one. Neither may fail, and the counts carry over.
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := registerMetrics(reg); err != nil {
		t.Fatalf("second handler in the same config: %v", err)
	}
	verifications.WithLabelValues(resultValid).Inc()
	fresh := prometheus.NewPedanticRegistry()
	if err := registerMetrics(fresh); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	families, err := fresh.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if f.GetName() == "caddy_webhooks_receiver_verifications_total" {
			n = len(f.GetMetric())
		}
	}
	if n != 6 {
		t.Fatalf("after reload the registry shows %d result series, want all 6", n)
	}
}

func BenchmarkServeHTTP(b *testing.B) {
	secret := []byte("bench secret")
	body := bytes.Repeat([]byte("a"), 1024)
	now := time.Now()
	for _, scheme := range signature.SchemeNames() {
		h := &Handler{Secrets: []string{string(secret)}, Scheme: scheme}
		provision(b, h, nil)
		header := http.Header{}
		header.Set("X-Signature", signature.XSignature(secret, body))
		header.Set("X-Hub-Signature-256", signature.GitHubSignature(secret, body))
		header.Set("X-Shopify-Hmac-Sha256", signature.ShopifySignature(secret, body))
		header.Set("Stripe-Signature", signature.StripeSignature([][]byte{secret}, now, body))
		header.Set("X-Slack-Request-Timestamp", signature.StandardTimestamp(now))
		header.Set("X-Slack-Signature", signature.SlackSignature(secret, now, body))
		header.Set("webhook-id", "msg_1")
		header.Set("webhook-timestamp", signature.StandardTimestamp(now))
		header.Set("webhook-signature", signature.StandardSign(secret, "msg_1", now, body))
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			_, err := io.Copy(io.Discard, r.Body)
			return err
		})
		b.Run(scheme, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			rd := bytes.NewReader(body)
			r := httptest.NewRequest(http.MethodPost, "/hook", nil)
			w := httptest.NewRecorder()
			for b.Loop() {
				rd.Reset(body)
				r.Body = io.NopCloser(rd)
				r.ContentLength = int64(len(body))
				r.Header = header
				if err := h.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
				if w.Code != 200 {
					b.Fatalf("answered %d", w.Code)
				}
			}
		})
	}
}
