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

// portalSite is a site that end users reach: webhook_portal under
// /webhooks/, with its access log on, so the tests can check that no token
// reaches a log line.
func portalSite(port int, options string) string {
	return fmt.Sprintf(`
http://127.0.0.1:%d {
	log
	handle /webhooks/* {
		webhook_portal {
			%s
		}
	}
	respond "not the portal" 404
}
`, port, options)
}

// portalSender is a sidecar with a portal site beside its own.
type portalSender struct {
	*sender
	portalPort int
}

func startPortalSender(t *testing.T, options string) *portalSender {
	t.Helper()
	port := testkit.FreePort(t)
	s := startSender(t, senderConfig{Sites: portalSite(port, options)}, "")
	return &portalSender{sender: s, portalPort: port}
}

func (p *portalSender) portalURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.portalPort, path)
}

// tokenJSON is what minting a portal token answers.
type tokenJSON struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	URL       string    `json:"url"`
}

// mintToken mints a portal token for appID on the admin endpoint.
func (s *sender) mintToken(t *testing.T, appID, ttl string) tokenJSON {
	t.Helper()
	var body any
	if ttl != "" {
		body = map[string]string{"ttl": ttl}
	}
	status, raw := call(t, http.MethodPost, s.adminURL("/webhooks/apps/"+url.PathEscape(appID)+"/portal-tokens"), body)
	if status != http.StatusCreated {
		t.Fatalf("minting a portal token for %s answered %d %s, want 201", appID, status, raw)
	}
	tok := decode[tokenJSON](t, "portal token", raw)
	if tok.Token == "" || tok.URL != "/webhooks/portal/#token="+url.QueryEscape(tok.Token) {
		t.Fatalf("minted %+v, want a token and its /webhooks/portal/#token= URL", tok)
	}
	return tok
}

// revokeTokens revokes every portal token of appID on the admin endpoint.
func (s *sender) revokeTokens(t *testing.T, appID string) {
	t.Helper()
	if status, raw := call(t, http.MethodDelete, s.adminURL("/webhooks/apps/"+url.PathEscape(appID)+"/portal-tokens"), nil); status != http.StatusNoContent {
		t.Fatalf("revoking the portal tokens of %s answered %d %s, want 204", appID, status, raw)
	}
}

// bearer sends a request with an Authorization header (none when auth is
// empty) and a JSON body (a string, sent as is, or nil).
func bearer(t *testing.T, method, u, auth, body string) (int, []byte, http.Header) {
	t.Helper()
	var b any
	if body != "" {
		b = body
	}
	header := http.Header{}
	if auth != "" {
		header.Set("Authorization", auth)
	}
	a := testkit.Call(t, method, u, b, header)
	return a.Status, a.Body, a.Header
}

// tamper changes one character in the middle of a token (inside its MAC).
func tamper(token string) string {
	b := []byte(token)
	i := len("whp_") + 40
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TestPortalScopes runs every route of the management API through
// webhook_portal with a token of one app, a token of that app on another
// app's path, no token, a tampered token, an expired one and a revoked one,
// and checks the exact status of each against a real Caddy process. Then
// that no log line holds a token.
func TestPortalScopes(t *testing.T) {
	// Every failure below is an invalid token from one address: the limit
	// is raised so the table is not cut short (TestPortalRateLimit checks it).
	p := startPortalSender(t, "max_token_failures 100000 1m")
	rc := testkit.NewRecorder(t)
	const own, other = "tenant-a", "tenant-b"

	// The expired token is minted first, with the shortest TTL, so it has
	// expired by the time the table runs.
	expired := p.mintToken(t, own, "10s")
	revoked := p.mintToken(t, own, "1h")
	p.revokeTokens(t, own)
	token := p.mintToken(t, own, "")
	if d := time.Until(token.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("a token minted without ttl expires in %v, want 1h (the default)", d)
	}

	type fixture struct{ hook, del, delivery, event string }
	setup := func(app string) fixture {
		hook := p.createWebhook(t, app, map[string]any{"name": "main", "url": rc.URL("/" + app), "events": []string{"job_finished"}})
		del := p.createWebhook(t, app, map[string]any{"name": "to delete", "url": rc.URL("/" + app + "/del"), "events": []string{"job_created"}})
		ev := p.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q}}`, app))
		var ds []deliveryJSON
		wait.Until(t, "the delivery of "+app+" to succeed", func() bool {
			ds = p.deliveries(t, app, hook.ID)
			return len(ds) == 1 && ds[0].Status == "succeeded"
		})
		return fixture{hook: hook.ID, del: del.ID, delivery: ds[0].ID, event: ev.ID}
	}
	fx := map[string]fixture{own: setup(own), other: setup(other)}

	for time.Now().Before(expired.ExpiresAt.Add(100 * time.Millisecond)) {
		time.Sleep(100 * time.Millisecond)
	}

	// A route's path for an app; what its own app's token gets (0: the
	// route is not in this build's API yet, and must only pass the portal:
	// neither 401 nor 403).
	type route struct {
		method, path string
		body         string
		own          int
	}
	hook := "/webhooks/apps/{app}/webhooks/{hook}"
	routes := []route{
		{"GET", "/webhooks/apps/{app}/webhooks", "", 200},
		{"POST", "/webhooks/apps/{app}/webhooks", `{"name":"new","url":"` + rc.URL("/new") + `","events":["job_created"]}`, 201},
		{"GET", hook, "", 200},
		{"PATCH", hook, `{"name":"renamed"}`, 200},
		{"GET", hook + "/deliveries", "", 200},
		{"GET", hook + "/deliveries/{delivery}", "", 200},
		{"POST", hook + "/deliveries/{delivery}/resend", "", 202},
		{"POST", hook + "/test", "", 202},
		{"POST", hook + "/recover", `{"since":"2020-01-01T00:00:00Z"}`, 202},
		{"GET", hook + "/stats", "", 200},
		{"DELETE", "/webhooks/apps/{app}/webhooks/{del}", "", 204},
		// Routes of an app that this build does not have yet: the
		// portal passes them, so they work once the API has them.
		{"GET", "/webhooks/apps/{app}/events", "", 0},
		{"GET", "/webhooks/apps/{app}/events/{event}", "", 0},
		{"POST", hook + "/replay", `{"since":"2020-01-01T00:00:00Z"}`, 0},
		// An app's route the portal never grants.
		{"POST", "/webhooks/apps/{app}/portal-tokens", `{"ttl":"1h"}`, 403},
		{"DELETE", "/webhooks/apps/{app}/portal-tokens", "", 403},
		// Routes of no app, or of every app.
		{"GET", "/webhooks/apps", "", 403},
		{"GET", "/webhooks/events", "", 403},
		{"GET", "/webhooks/openapi.json", "", 403},
		{"GET", "/webhooks/operational/deliveries", "", 403},
		{"GET", "/webhooks/console/", "", 403},
		{"GET", "/webhooks/", "", 403},
		{"GET", "/webhooks/apps/", "", 403},
		{"GET", "/webhooks/apps/{app}", "", 403},
		// Paths that name another app once cleaned.
		{"GET", "/webhooks/apps/{app}/../{other}/webhooks", "", 403},
		{"GET", "/webhooks/apps/{app}/webhooks/%2e%2e/%2e%2e/{other}/webhooks", "", 403},
		{"GET", "/webhooks/apps/{app}//webhooks", "", 403},
	}
	fill := func(path, app string) string {
		f, otherApp := fx[app], other
		if app == other {
			otherApp = own
		}
		return strings.NewReplacer("{app}", app, "{other}", otherApp, "{hook}", f.hook, "{del}", f.del,
			"{delivery}", f.delivery, "{event}", f.event).Replace(path)
	}
	// The columns, in this order: the denials first, so that a route that
	// deletes runs for real last.
	columns := []struct {
		name, app, auth string
		want            func(route) int
	}{
		{"no token", own, "", func(route) int { return 401 }},
		{"tampered token", own, "Bearer " + tamper(token.Token), func(route) int { return 401 }},
		{"expired token", own, "Bearer " + expired.Token, func(route) int { return 401 }},
		{"revoked token", own, "Bearer " + revoked.Token, func(route) int { return 401 }},
		{"other app's routes", other, "Bearer " + token.Token, func(route) int { return 403 }},
		{"own app's routes", own, "Bearer " + token.Token, func(r route) int { return r.own }},
	}
	for _, col := range columns {
		for _, r := range routes {
			u := p.portalURL(fill(r.path, col.app))
			status, raw, hdr := bearer(t, r.method, u, col.auth, r.body)
			want := col.want(r)
			if want == 0 {
				if status == 401 || status == 403 {
					t.Errorf("%s: %s %s answered %d %s, want it passed to the API", col.name, r.method, u, status, raw)
				}
				continue
			}
			if status != want {
				t.Errorf("%s: %s %s answered %d %s, want %d", col.name, r.method, u, status, raw, want)
				continue
			}
			if status == 401 || status == 403 {
				e := decode[errorJSON](t, "error", raw)
				if !strings.HasPrefix(e.Error, "authorization: ") {
					t.Errorf("%s: %s %s answered %s, want an error starting with authorization:", col.name, r.method, u, raw)
				}
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("%s: %s %s answered 401 with WWW-Authenticate %q, want a Bearer challenge", col.name, r.method, u, hdr.Get("WWW-Authenticate"))
			}
		}
	}

	// The other app is untouched: what the token attempted on it was refused.
	otherHooks := p.listWebhooks(t, other)
	if len(otherHooks) != 2 || otherHooks[0].Name != "main" {
		t.Errorf("after the table the other app has %+v, want its two webhooks as they were", otherHooks)
	}
	// Within its app, a webhook id of another app is not found.
	if status, raw, _ := bearer(t, "GET", p.portalURL("/webhooks/apps/"+own+"/webhooks/"+fx[other].hook), "Bearer "+token.Token, ""); status != 404 {
		t.Errorf("the other app's webhook under the own app's path answered %d %s, want 404", status, raw)
	}
	// Malformed headers and tokens are all 401.
	for _, auth := range []string{"Bearer", "Bearer ", "Basic " + token.Token, "bearer " + token.Token[:len(token.Token)-1],
		"Bearer whp_", "Bearer " + token.Token + "A", "Bearer " + strings.Repeat("A", 5000), "Bearer " + tamper(expired.Token)} {
		if status, raw, _ := bearer(t, "GET", p.portalURL("/webhooks/apps/"+own+"/webhooks"), auth, ""); status != 401 {
			t.Errorf("Authorization %.40q... answered %d %s, want 401", auth, status, raw)
		}
	}
	// The scheme's name is case-insensitive (RFC 9110).
	if status, raw, _ := bearer(t, "GET", p.portalURL("/webhooks/apps/"+own+"/webhooks"), "bearer "+token.Token, ""); status != 200 {
		t.Errorf("a lower-case bearer scheme answered %d %s, want 200", status, raw)
	}

	// The token's route is not on the portal site but on the operator
	// surfaces, and bad input there is refused naming the field.
	for _, c := range []struct {
		app, body, want string
		status          int
	}{
		{own, `{"ttl":"9s"}`, "ttl: ", 400},
		{own, `{"ttl":"25h"}`, "ttl: ", 400},
		{own, `{"ttl":"soon"}`, "ttl: ", 400},
		{own, `{"ttl":60}`, "ttl: ", 400},
		{own, `{"TTL":"1h"}`, "TTL: unknown field", 400},
		{"bad%20app", `{}`, "appId: ", 400},
		{strings.Repeat("a", 129), `{}`, "appId: ", 400},
	} {
		status, raw := call(t, http.MethodPost, p.adminURL("/webhooks/apps/"+c.app+"/portal-tokens"), c.body)
		if status != c.status || !strings.HasPrefix(decode[errorJSON](t, "error", raw).Error, c.want) {
			t.Errorf("minting for %.20s with %s answered %d %s, want %d starting %q", c.app, c.body, status, raw, c.status, c.want)
		}
	}
	// webhook_admin mints too.
	if status, raw := call(t, http.MethodPost, p.siteURL("/webhooks/apps/"+own+"/portal-tokens"), `{"ttl":"10m"}`); status != 201 {
		t.Errorf("minting through webhook_admin answered %d %s, want 201", status, raw)
	}

	logs := p.Logs()
	if !strings.Contains(logs, `"uri":"/webhooks/apps/`+own+`/webhooks"`) {
		t.Fatal("the portal site's access log has no line for its requests; the log check below would prove nothing")
	}
	for _, tok := range []string{token.Token, expired.Token, revoked.Token} {
		// The MAC part: long enough to be unique, and also found in a
		// tampered copy.
		if i := strings.Index(logs, tok[len("whp_"):len("whp_")+30]); i >= 0 {
			t.Errorf("a token appears in Caddy's log: ...%s...", logs[max(0, i-200):min(len(logs), i+100)])
		}
	}
}

// TestPortalRateLimit: an address that presented max_token_failures invalid
// tokens is refused 429 with Retry-After, valid token or not; requests
// without a token do not count, and the page itself still loads.
func TestPortalRateLimit(t *testing.T) {
	// A window so long that no allowance comes back during the test.
	p := startPortalSender(t, "max_token_failures 3 1h")
	token := p.mintToken(t, "limited", "")
	list := p.portalURL("/webhooks/apps/limited/webhooks")
	if status, raw, _ := bearer(t, "GET", list, "Bearer "+token.Token, ""); status != 200 {
		t.Fatalf("a valid token answered %d %s, want 200", status, raw)
	}
	// No token is not a guess: it does not count.
	for range 5 {
		if status, _, _ := bearer(t, "GET", list, "", ""); status != 401 {
			t.Fatalf("no token answered %d, want 401", status)
		}
	}
	for i := range 3 {
		if status, raw, _ := bearer(t, "GET", list, "Bearer "+tamper(token.Token), ""); status != 401 {
			t.Fatalf("invalid token %d answered %d %s, want 401", i+1, status, raw)
		}
	}
	for _, auth := range []string{"Bearer " + tamper(token.Token), "Bearer " + token.Token, ""} {
		status, raw, hdr := bearer(t, "GET", list, auth, "")
		if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.HasPrefix(decode[errorJSON](t, "error", raw).Error, "authorization: ") {
			t.Errorf("after 3 invalid tokens, Authorization %.12q... answered %d (Retry-After %q) %s, want 429 with Retry-After",
				auth, status, hdr.Get("Retry-After"), raw)
		}
	}
	// The page needs no token and stays up.
	if status, _, _ := bearer(t, "GET", p.portalURL("/webhooks/portal/"), "", ""); status != 200 {
		t.Errorf("the portal page answered %d while the address is limited, want 200", status)
	}
}

// TestPortalTokenExpiry: a token works until its expiresAt and not after.
// Requests are timed by the client: one answered before expiresAt must have
// been accepted, one sent at or after it must be refused; so the token stops
// working at its expiry, not a second later.
func TestPortalTokenExpiry(t *testing.T) {
	p := startPortalSender(t, "max_token_failures 100000 1m")
	token := p.mintToken(t, "expiring", "10s")
	list := p.portalURL("/webhooks/apps/expiring/webhooks")
	var okBefore, refusedAfter int
	for {
		sent := time.Now()
		status, raw, _ := bearer(t, "GET", list, "Bearer "+token.Token, "")
		done := time.Now()
		switch {
		case done.Before(token.ExpiresAt):
			if status != 200 {
				t.Fatalf("a request answered %v before expiresAt got %d %s, want 200", token.ExpiresAt.Sub(done), status, raw)
			}
			okBefore++
		case !sent.Before(token.ExpiresAt):
			if status != 401 {
				t.Fatalf("a request sent %v after expiresAt got %d %s, want 401", sent.Sub(token.ExpiresAt), status, raw)
			}
			refusedAfter++
		}
		if sent.After(token.ExpiresAt.Add(1500 * time.Millisecond)) {
			break
		}
		// Densely around the expiry, sparsely before.
		if time.Until(token.ExpiresAt) > 2*time.Second {
			time.Sleep(500 * time.Millisecond)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if okBefore == 0 || refusedAfter == 0 {
		t.Fatalf("%d requests answered before expiry, %d sent after: want some of each", okBefore, refusedAfter)
	}
	t.Logf("%d requests accepted before expiresAt, %d refused after it", okBefore, refusedAfter)
}

// TestPortalFleet: a token minted on one sidecar works on another sidecar
// of the same fleet, and a revocation on either applies on both at once.
func TestPortalFleet(t *testing.T) {
	dsn := fleetDSN(t)
	var fleet []*portalSender
	for range 2 {
		port := testkit.FreePort(t)
		proc := testcaddy.Start(t, testcaddy.Config{
			Caddyfile: senderConfig{Port: testkit.FreePort(t), Storage: "{env.WEBHOOKS_DSN}", Sites: portalSite(port, "")}.caddyfile(),
			Env:       []string{"WEBHOOKS_DSN=" + dsn},
		})
		fleet = append(fleet, &portalSender{sender: &sender{Process: proc}, portalPort: port})
	}
	a, b := fleet[0], fleet[1]
	rc := testkit.NewRecorder(t)
	token := a.mintToken(t, "fleet-app", "")
	auth := "Bearer " + token.Token

	status, raw, _ := bearer(t, "POST", b.portalURL("/webhooks/apps/fleet-app/webhooks"), auth,
		`{"name":"from b","url":"`+rc.URL("/b")+`","events":["job_finished"]}`)
	if status != 201 {
		t.Fatalf("a token minted on sidecar A, used on sidecar B to create a webhook, answered %d %s, want 201", status, raw)
	}
	hook := decode[webhookJSON](t, "webhook", raw)
	if hooks := a.listWebhooks(t, "fleet-app"); len(hooks) != 1 || hooks[0].ID != hook.ID {
		t.Fatalf("sidecar A lists %+v, want the webhook created through B's portal", hooks)
	}
	// A token minted on B works on A as well: both sign with the one key.
	tokenB := b.mintToken(t, "fleet-app", "")
	if status, raw, _ := bearer(t, "GET", a.portalURL("/webhooks/apps/fleet-app/webhooks/"+hook.ID), "Bearer "+tokenB.Token, ""); status != 200 {
		t.Fatalf("a token minted on B, used on A, answered %d %s, want 200", status, raw)
	}

	b.revokeTokens(t, "fleet-app")
	for i, s := range fleet {
		for _, tok := range []string{token.Token, tokenB.Token} {
			if status, raw, _ := bearer(t, "GET", s.portalURL("/webhooks/apps/fleet-app/webhooks"), "Bearer "+tok, ""); status != 401 {
				t.Errorf("after revoking on B, sidecar %d answered a revoked token %d %s, want 401", i, status, raw)
			}
		}
	}
	fresh := a.mintToken(t, "fleet-app", "")
	if status, raw, _ := bearer(t, "GET", b.portalURL("/webhooks/apps/fleet-app/webhooks"), "Bearer "+fresh.Token, ""); status != 200 {
		t.Errorf("a token minted after the revocation answered %d %s on B, want 200", status, raw)
	}
}

// TestPortalPageHeaders: the page carries the console's strict policy with
// frame-ancestors set from frame_ancestors, its theme is the configured
// variables, and the session tells the page its app.
func TestPortalPageHeaders(t *testing.T) {
	p := startPortalSender(t, `frame_ancestors https://app.example.com http://localhost:8080
			theme --accent "#7c3aed"
			theme --font "Inter, system-ui, sans-serif"`)
	status, raw, hdr := bearer(t, "GET", p.portalURL("/webhooks/portal/"), "", "")
	if status != 200 || !bytes.Contains(raw, []byte(`src="app.js"`)) {
		t.Fatalf("the portal page answered %d %.200s, want the console's page", status, raw)
	}
	csp := hdr.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors https://app.example.com http://localhost:8080", "default-src 'none'", "script-src 'self'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("the portal page's Content-Security-Policy is %q, want it to contain %q", csp, want)
		}
	}
	if hdr.Get("X-Frame-Options") != "" {
		t.Errorf("with frame_ancestors the page sends X-Frame-Options %q, which would forbid the frame", hdr.Get("X-Frame-Options"))
	}
	status, raw, hdr = bearer(t, "GET", p.portalURL("/webhooks/portal/theme.css"), "", "")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/css") ||
		!strings.Contains(string(raw), "--accent: #7c3aed;") || !strings.Contains(string(raw), "--font: Inter, system-ui, sans-serif;") {
		t.Errorf("theme.css answered %d %s %q, want the two variables", status, hdr.Get("Content-Type"), raw)
	}

	token := p.mintToken(t, "themed", "")
	status, raw, _ = bearer(t, "GET", p.portalURL("/webhooks/portal/session"), "Bearer "+token.Token, "")
	var session struct {
		AppID     string    `json:"appId"`
		ExpiresAt time.Time `json:"expiresAt"`
		Events    []string  `json:"events"`
	}
	if status != 200 || json.Unmarshal(raw, &session) != nil || session.AppID != "themed" ||
		!session.ExpiresAt.Equal(token.ExpiresAt) || len(session.Events) != 4 {
		t.Errorf("the session answered %d %s, want the token's app, expiry and the catalog", status, raw)
	}
	if status, _, _ := bearer(t, "GET", p.portalURL("/webhooks/portal/session"), "", ""); status != 401 {
		t.Errorf("the session without a token answered %d, want 401", status)
	}

	// Without frame_ancestors the page cannot be framed at all.
	q := startPortalSender(t, "")
	_, _, hdr = bearer(t, "GET", q.portalURL("/webhooks/portal/"), "", "")
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || hdr.Get("X-Frame-Options") != "DENY" {
		t.Errorf("without frame_ancestors the page sends CSP %q and X-Frame-Options %q, want frame-ancestors 'none' and DENY", csp, hdr.Get("X-Frame-Options"))
	}
}
