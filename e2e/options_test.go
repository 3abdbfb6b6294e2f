package e2e

import (
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// debugSender starts a sidecar that logs at debug level, so a test can
// check that not even debug lines show a secret.
func debugSender(t *testing.T, cfg senderConfig, env ...string) *sender {
	t.Helper()
	if cfg.Port == 0 {
		cfg.Port = testkit.FreePort(t)
	}
	text := strings.Replace(cfg.caddyfile(), "{\n\tadmin {ADMIN}", "{\n\tdebug\n\tadmin {ADMIN}", 1)
	p := testcaddy.Start(t, testcaddy.Config{Caddyfile: text, Env: env})
	return &sender{Process: p, cfg: cfg}
}

func job(app string, data string) []byte {
	return []byte(`{"event":"job_finished","data":{"appId":"` + app + `"` + data + `}}`)
}

// Headers arrive on every attempt, test and resend; PATCH merges them;
// sensitive values never come back from the API or show in a log line.
func TestWebhookHeadersE2E(t *testing.T) {
	s := debugSender(t, senderConfig{})
	rc := testkit.NewRecorder(t)
	const key, bearer = "key-9f8e7d6c5b", "tok-1a2b3c4d5e"
	hook := s.createWebhook(t, "app1", map[string]any{"name": "h", "url": rc.URL("/h"), "events": []string{"job_finished"},
		"headers": map[string]any{"X-Api-Key": key, "Authorization": "Bearer " + bearer, "X-Team": "ops", "X-Old": "1"}})
	status, body := call(t, http.MethodPatch, s.hooksURL("app1")+"/"+hook.ID, map[string]any{"headers": map[string]any{"X-Old": nil, "X-Env": "prod"}})
	if status != http.StatusOK || !strings.Contains(string(body), `"headers":{"X-Env":"prod","X-Team":"ops"},"sensitiveHeaders":["Authorization","X-Api-Key"]`) {
		t.Fatalf("merge patch answered %d %s", status, body)
	}
	s.mustIngest(t, job("app1", ""))
	rc.SetRespond(func(r testkit.Request, nth int) (int, string) {
		if nth == 1 {
			return 500, "once more"
		}
		return 200, "ok"
	})
	wait.Until(t, "the delivery and its retry", func() bool { return rc.Count("/h") >= 2 })
	if status, body := call(t, http.MethodPost, s.hooksURL("app1")+"/"+hook.ID+"/test", nil); status != http.StatusAccepted {
		t.Fatalf("test answered %d %s", status, body)
	}
	wait.Until(t, "the test delivery", func() bool { return rc.Count("/h") >= 3 })
	for i, r := range rc.Requests("/h") {
		want := map[string]string{"X-Api-Key": key, "Authorization": "Bearer " + bearer, "X-Team": "ops", "X-Env": "prod", "X-Old": ""}
		for name, v := range want {
			if got := r.Header.Get(name); got != v {
				t.Errorf("request %d: %s = %q, want %q", i+1, name, got, v)
			}
		}
	}
	var texts []string
	for _, path := range []string{"", "/" + hook.ID, "/" + hook.ID + "/deliveries"} {
		_, b := call(t, http.MethodGet, s.hooksURL("app1")+path, nil)
		texts = append(texts, string(b))
	}
	_, b := call(t, http.MethodPost, s.hooksURL("app1"), map[string]any{"name": "bad", "url": rc.URL("/x"), "events": []string{"job_finished"},
		"headers": map[string]any{"X-Api-Key": key + "\r\nX-Evil: 1"}})
	texts = append(texts, string(b), s.Logs())
	for i, text := range texts {
		if strings.Contains(text, key) || strings.Contains(text, bearer) {
			t.Errorf("text %d shows a sensitive header value: %.300s", i, text)
		}
	}
	if !strings.Contains(texts[3], `"headers: the value of X-Api-Key contains CR or LF"`) {
		t.Errorf("a header with CR LF answered %s", texts[3])
	}
}

// Filters deliver only what matches, ingest counts only those, and a bad
// filter is refused with the compiler's message, storing nothing.
func TestWebhookFilterE2E(t *testing.T) {
	s := startSender(t, senderConfig{}, "")
	rc := testkit.NewRecorder(t)
	big := s.createWebhook(t, "app1", map[string]any{"name": "big", "url": rc.URL("/big"), "events": []string{"job_finished"},
		"filter": `has(data.amount) && data.amount >= 100`})
	s.createWebhook(t, "app1", map[string]any{"name": "all", "url": rc.URL("/all"), "events": []string{"job_finished"}})
	for _, tc := range []struct {
		data string
		want int
	}{{`,"amount":150`, 2}, {`,"amount":5`, 1}, {``, 1}, {`,"amount":"lots"`, 1}} {
		if got := s.mustIngest(t, job("app1", tc.data)); got.Deliveries != tc.want {
			t.Errorf("event with %q: %d deliveries, want %d", tc.data, got.Deliveries, tc.want)
		}
	}
	wait.Until(t, "every delivery", func() bool { return rc.Count("/all") == 4 })
	if n := rc.Count("/big"); n != 1 {
		t.Errorf("the filtered webhook got %d deliveries, want 1", n)
	}
	if ds := s.deliveries(t, "app1", big.ID); len(ds) != 1 || !strings.Contains(ds[0].RequestBody, `"amount":150`) {
		t.Errorf("the filtered webhook's history: %+v", ds)
	}
	if v, _ := s.metrics(t).Value("caddy_webhooks_events_filtered_total", "event", "job_finished"); v != 3 {
		t.Errorf("caddy_webhooks_events_filtered_total = %v, want 3", v)
	}
	status, body := call(t, http.MethodPost, s.hooksURL("app1"), map[string]any{"name": "bad", "url": rc.URL("/bad"),
		"events": []string{"job_finished"}, "filter": "data.amount >"})
	if status != http.StatusBadRequest || !strings.Contains(string(body), `"filter: ERROR:`) {
		t.Errorf("a filter that does not parse answered %d %s", status, body)
	}
	status, body = call(t, http.MethodPatch, s.hooksURL("app1")+"/"+big.ID, map[string]any{"filter": "size(data)"})
	if status != http.StatusBadRequest || !strings.Contains(string(body), "filter: must be of type bool") {
		t.Errorf("a filter that is not bool answered %d %s", status, body)
	}
	if hooks := s.listWebhooks(t, "app1"); len(hooks) != 2 {
		t.Errorf("refused filters stored a webhook: %d webhooks", len(hooks))
	}
}

// A webhook's own retry schedule and timeout are what its attempts follow,
// not the app's.
func TestWebhookRetryAndTimeoutE2E(t *testing.T) {
	s := startSender(t, senderConfig{RetrySchedule: "1h"}, "")
	rc := testkit.NewRecorder(t)
	rc.SetRespond(testkit.Always(500))
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read first: the server notices the client going away only then.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	fails := s.createWebhook(t, "app1", map[string]any{"name": "fails", "url": rc.URL("/fails"), "events": []string{"job_finished"},
		"retrySchedule": []string{"300ms", "300ms"}})
	hangs := s.createWebhook(t, "app1", map[string]any{"name": "hangs", "url": slow.URL + "/hangs", "events": []string{"job_finished"},
		"timeout": "500ms", "retrySchedule": []string{}})
	s.mustIngest(t, job("app1", ""))
	for _, tc := range []struct {
		hook     webhookJSON
		attempts int
	}{{fails, 3}, {hangs, 1}} {
		var d deliveryJSON
		wait.Until(t, tc.hook.Name+" to fail", func() bool {
			ds := s.deliveries(t, "app1", tc.hook.ID)
			if len(ds) == 1 {
				d = ds[0]
			}
			return d.Status == "failed"
		})
		d = s.delivery(t, "app1", tc.hook.ID, d.ID)
		if len(d.AttemptLog) != tc.attempts {
			t.Fatalf("%s: %d attempts, want %d", tc.hook.Name, len(d.AttemptLog), tc.attempts)
		}
		for i := 1; i < len(d.AttemptLog); i++ {
			// 300ms ± 20% of jitter after the previous attempt ended.
			if gap := d.AttemptLog[i].SentAt.Sub(d.AttemptLog[i-1].SentAt); gap < 240*time.Millisecond {
				t.Errorf("%s: retry %d came %v after the previous attempt", tc.hook.Name, i, gap)
			}
		}
		if tc.hook.ID == hangs.ID && d.AttemptLog[0].Error != "timed out after 500ms" {
			t.Errorf("the hanging endpoint's attempt: %q, want the webhook's own timeout", d.AttemptLog[0].Error)
		}
	}
}

// maxInFlight 1 never overlaps two attempts to the webhook.
func TestWebhookMaxInFlightE2E(t *testing.T) {
	s := startSender(t, senderConfig{Options: "max_in_flight_per_webhook 16"}, "")
	var now, most, done atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(30 * time.Millisecond)
		now.Add(-1)
		done.Add(1)
	}))
	defer srv.Close()
	s.createWebhook(t, "app1", map[string]any{"name": "one", "url": srv.URL, "events": []string{"job_finished"}, "maxInFlight": 1})
	for i := range 20 {
		s.mustIngest(t, job("app1", fmt.Sprintf(`,"n":%d`, i)))
	}
	wait.Until(t, "20 deliveries", func() bool { return done.Load() == 20 })
	if most.Load() != 1 {
		t.Fatalf("%d attempts ran at once, want 1", most.Load())
	}
}

// rateLimit holds for two sidecars on one database together.
func TestWebhookRateLimitFleetE2E(t *testing.T) {
	dsn := fleetDSN(t)
	fleet := startFleet(t, dsn, 2)
	rc := testkit.NewRecorder(t)
	const perSecond, total = 4, 12
	hook := fleet[0].createWebhook(t, "rl", map[string]any{"name": "rl", "url": rc.URL("/rl"), "events": []string{"job_finished"}, "rateLimit": perSecond})
	waitListed(t, fleet, "rl", hook.ID)
	start := time.Now()
	for i := range total {
		fleet[i%2].mustIngest(t, job("rl", fmt.Sprintf(`,"n":%d`, i)))
	}
	wait.Within(t, time.Minute, "every delivery", func() bool { return rc.Count("/rl") == total })
	got := rc.Requests("/rl")
	// Slots are 250ms apart fleet-wide: eleven gaps take 2.75s at least,
	// less a little for the network's jitter on the first and last.
	if span := got[total-1].At.Sub(start); span < 2500*time.Millisecond {
		t.Errorf("%d deliveries at %d/s across two sidecars arrived within %v", total, perSecond, span)
	}
	// In any one second, at most the limit (one more for jitter at the
	// window's edges; without the shared limit it is twice the limit).
	for i := range got {
		n := 0
		for _, r := range got[i:] {
			if r.At.Sub(got[i].At) < time.Second {
				n++
			}
		}
		if n > perSecond+1 {
			t.Errorf("%d deliveries within one second from %v", n, got[i].At.Sub(start))
		}
	}
	for _, d := range fleet[1].allDeliveries(t, "rl", hook.ID) {
		if d.Attempts != 1 || d.Status != "succeeded" {
			t.Errorf("delivery %s: %d attempts, %s; a wait for a slot is no attempt", d.ID, d.Attempts, d.Status)
		}
	}
}

// forwardProxy is a small HTTP proxy: absolute-form requests and CONNECT,
// with Basic credentials required, and host names resolved by its table.
type forwardProxy struct {
	ln    net.Listener
	srv   *http.Server
	hosts map[string]string // host:port asked for -> address dialled
	auth  string

	mu   sync.Mutex
	seen []string // "GET host" or "CONNECT host:port"
}

func newForwardProxy(t *testing.T, addr, user, pass string, hosts map[string]string) *forwardProxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &forwardProxy{ln: ln, hosts: hosts, auth: testkit.BasicAuth(user, pass)}
	p.srv = &http.Server{Handler: p}
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *forwardProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Proxy-Authorization") != p.auth {
		w.WriteHeader(http.StatusProxyAuthRequired)
		return
	}
	target := r.Host
	if r.Method != http.MethodConnect && r.URL.Port() == "" {
		target += ":80"
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+target)
	p.mu.Unlock()
	dial, ok := p.hosts[target]
	if !ok {
		http.Error(w, "unknown host", http.StatusBadGateway)
		return
	}
	if r.Method == http.MethodConnect {
		upstream, err := net.Dial("tcp", dial)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		fmt.Fprint(rw, "HTTP/1.1 200 Connection established\r\n\r\n")
		rw.Flush()
		go func() { io.Copy(upstream, rw); upstream.Close() }()
		io.Copy(conn, upstream)
		conn.Close()
		return
	}
	out, err := http.NewRequest(r.Method, "http://"+dial+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.Header.Del("Proxy-Authorization")
	out.Host = r.Host
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// Deliveries go through the proxy (absolute form for http, CONNECT for
// https), with names resolved by the proxy; no_proxy destinations do not;
// a proxy that is down fails the attempt, which is retried; the proxy's
// credentials show nowhere.
func TestEgressProxyE2E(t *testing.T) {
	rc := testkit.NewRecorder(t)
	tlsEndpoint := httptest.NewTLSServer(rc)
	defer tlsEndpoint.Close()
	// The sidecar trusts the test server's certificate (for example.com).
	certFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsEndpoint.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	plainAddr := rc.Addr()
	const user, pass = "sender", "proxy-pass-77a1"
	proxy := newForwardProxy(t, "127.0.0.1:0", user, pass, map[string]string{
		"hooks.invalid:80": plainAddr,
		"example.com:443":  strings.TrimPrefix(tlsEndpoint.URL, "https://"),
	})
	proxyAddr := proxy.ln.Addr().String()
	s := debugSender(t, senderConfig{RetrySchedule: "500ms 500ms 500ms 500ms 500ms 500ms",
		Options: "proxy {env.TEST_PROXY}\n\t\tno_proxy 127.0.0.1"},
		"TEST_PROXY=http://"+user+":"+pass+"@"+proxyAddr, "SSL_CERT_FILE="+certFile)

	viaHTTP := s.createWebhook(t, "app1", map[string]any{"name": "http", "url": "http://hooks.invalid/plain", "events": []string{"job_finished"}})
	viaTLS := s.createWebhook(t, "app1", map[string]any{"name": "https", "url": "https://example.com/tls", "events": []string{"job_finished"}})
	direct := s.createWebhook(t, "app1", map[string]any{"name": "direct", "url": rc.URL("/direct"), "events": []string{"job_finished"}})
	s.mustIngest(t, job("app1", ""))
	wait.Until(t, "three deliveries", func() bool {
		return rc.Count("/plain") == 1 && rc.Count("/tls") == 1 && rc.Count("/direct") == 1
	})
	seen := strings.Join(proxy.requests(), ", ")
	if !strings.Contains(seen, "POST hooks.invalid:80") || !strings.Contains(seen, "CONNECT example.com:443") {
		t.Errorf("the proxy saw %s; want an absolute-form POST and a CONNECT", seen)
	}
	if strings.Contains(seen, "127.0.0.1") {
		t.Errorf("a no_proxy destination went through the proxy: %s", seen)
	}
	// An endpoint counts a request before the sender reads its answer
	// and records the attempt.
	s.settled(t, "app1", viaHTTP.ID, viaTLS.ID, direct.ID)
	for _, h := range []webhookJSON{viaHTTP, viaTLS, direct} {
		if ds := s.deliveries(t, "app1", h.ID); len(ds) != 1 || ds[0].Status != "succeeded" {
			t.Errorf("%s: %+v", h.Name, ds)
		}
	}

	// The proxy goes down: the attempt fails and is retried until it is back.
	proxy.srv.Close() // its listener and the sidecar's kept-alive connections
	s.mustIngest(t, job("app1", `,"n":2`))
	var failedOnce deliveryJSON
	wait.Until(t, "a failed attempt through the proxy that is down", func() bool {
		ds := s.deliveries(t, "app1", viaHTTP.ID)
		for _, d := range ds {
			if d.Status == "pending" && d.Attempts >= 1 {
				failedOnce = d
				return true
			}
		}
		return false
	})
	if !strings.Contains(failedOnce.LastError, "proxyconnect") && !strings.Contains(failedOnce.LastError, "refused") {
		t.Errorf("attempt through a proxy that is down recorded %q", failedOnce.LastError)
	}
	newForwardProxy(t, proxyAddr, user, pass, map[string]string{"hooks.invalid:80": plainAddr})
	wait.Until(t, "the retry once the proxy is back", func() bool { return rc.Count("/plain") == 2 })

	var texts []string
	for _, h := range []webhookJSON{viaHTTP, viaTLS} {
		_, b := call(t, http.MethodGet, s.hooksURL("app1")+"/"+h.ID+"/deliveries", nil)
		texts = append(texts, string(b))
	}
	_, b := call(t, http.MethodGet, s.adminURL("/config/"), nil)
	texts = append(texts, s.Logs())
	for i, text := range texts {
		if strings.Contains(text, pass) {
			t.Errorf("text %d shows the proxy's password: %.400s", i, text)
		}
	}
	if !strings.Contains(string(b), "{env.TEST_PROXY}") {
		t.Errorf("the config keeps the placeholder, not the URL: %.200s", b)
	}
}

// A delivery carries the ingest's trace id with a new parent id and the
// trace state; behind Caddy's tracing directive, the ingest span's trace.
func TestTraceContextE2E(t *testing.T) {
	tracedPort := testkit.FreePort(t)
	cfg := senderConfig{Sites: fmt.Sprintf(`
http://127.0.0.1:%d {
	handle /events {
		tracing
		header X-Trace-Id {http.vars.trace_id}
		webhook_events
	}
}
`, tracedPort)}
	s := startSender(t, cfg, "")
	rc := testkit.NewRecorder(t)
	s.createWebhook(t, "app1", map[string]any{"name": "t", "url": rc.URL("/t"), "events": []string{"job_finished"}})

	testkit.Call(t, http.MethodPost, s.ingestURL(), job("app1", ""), http.Header{
		"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"Tracestate":  {"congo=t61rcWkgMzE"},
	})
	wait.Until(t, "the delivery", func() bool { return rc.Count("/t") == 1 })
	h := rc.Requests("/t")[0].Header
	tp := strings.Split(h.Get("traceparent"), "-")
	if len(tp) != 4 || tp[1] != "0af7651916cd43dd8448eb211c80319c" || tp[2] == "b7ad6b7169203331" {
		t.Errorf("traceparent %q: want trace 0af7651916cd43dd8448eb211c80319c with a new parent id", h.Get("traceparent"))
	}
	if h.Get("tracestate") != "congo=t61rcWkgMzE" {
		t.Errorf("tracestate %q", h.Get("tracestate"))
	}

	// The traced route: no traceparent in, the ingest span's trace out.
	tracedURL := fmt.Sprintf("http://127.0.0.1:%d/events", tracedPort)
	a := testkit.Call(t, http.MethodPost, tracedURL, job("app1", `,"n":2`), nil)
	traceID := a.Header.Get("X-Trace-Id")
	if a.Status != http.StatusAccepted || len(traceID) != 32 {
		t.Fatalf("traced ingest answered %d with trace id %q", a.Status, traceID)
	}
	wait.Until(t, "the traced delivery", func() bool { return rc.Count("/t") == 2 })
	if got := rc.Requests("/t")[1].Header.Get("traceparent"); !strings.HasPrefix(got, "00-"+traceID+"-") {
		t.Errorf("delivery of the traced ingest has traceparent %q, want the span's trace %s", got, traceID)
	}
}
