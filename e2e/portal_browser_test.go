package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// serviceListener reserves the address of a service's own site. It is
// localhost, not 127.0.0.1: another site than the portal's, as a service's
// own domain is, so Chrome runs the portal's frame in its own process.
func serviceListener(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
}

// serveService serves a service's own settings page on ln: its backend
// mints a portal token for the signed-in customer's app and embeds the
// portal in an iframe, as the README shows.
func serveService(t *testing.T, ln net.Listener, s *portalSender, appID string) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		// The backend's two lines: mint, then embed the returned url.
		status, raw := call(t, http.MethodPost, s.adminURL("/webhooks/apps/"+appID+"/portal-tokens"), `{"ttl":"1h"}`)
		var tok tokenJSON
		if status != http.StatusCreated || json.Unmarshal(raw, &tok) != nil {
			http.Error(w, "minting failed", http.StatusBadGateway)
			return
		}
		src := s.portalURL(tok.URL)
		fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme · Settings</title>
<style>
body { margin: 0; font-family: Georgia, serif; background: #f4f1ea; }
header { padding: 12px 16px; background: #2d1b4e; color: #fff; }
iframe { display: block; border: 0; width: 100%%; height: 1400px; background: #fff; }
</style></head>
<body><header>Acme Cloud · Settings › Webhooks</header>
<iframe id="portal" title="Webhooks" src="%s" onload="document.body.dataset.framed = 'loaded'"></iframe>
</body></html>`, html.EscapeString(src))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// portalFrame waits for the iframe showing the portal and returns a
// context that drives it.
func portalFrame(t *testing.T, ctx context.Context, portalOrigin string) context.Context {
	t.Helper()
	var info *target.Info
	deadline := time.Now().Add(wait.Default)
	for info == nil {
		infos, err := chromedp.Targets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range infos {
			if i.Type == "iframe" && strings.HasPrefix(i.URL, portalOrigin+"/webhooks/portal/") {
				info = i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no iframe of %s appeared; targets: %v", portalOrigin, infos)
		}
		time.Sleep(50 * time.Millisecond)
	}
	frame, cancel := chromedp.NewContext(ctx, chromedp.WithTargetID(info.TargetID))
	t.Cleanup(cancel)
	return frame
}

// TestPortalInIframe: a customer manages their webhooks in the portal,
// embedded in a service's page on an origin frame_ancestors lists: creates
// a webhook, sends a test event, opens its history and resends it. The
// same page on an origin not listed cannot frame the portal.
func TestPortalInIframe(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		t.Skip("Chromium not found (looked for $CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome); install it to run the portal browser test")
	}
	const appID = "acme-customer-42"
	allowed, service := serviceListener(t)
	refused, elsewhere := serviceListener(t)
	p := startPortalSender(t, `frame_ancestors `+service+`
			theme --accent "#6d28d9"
			theme --font "Georgia, serif"`)
	serveService(t, allowed, p, appID)
	serveService(t, refused, p, appID)
	rc := testkit.NewRecorder(t)
	portalOrigin := strings.TrimSuffix(p.portalURL(""), "/")

	ctx := newBrowser(t, browser)
	// Started on the test's own context rather than a step's, whose end
	// would cut the browser-wide calls that find the frame.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	step(t, ctx, "open the service's settings", chromedp.Navigate(service),
		until(`document.body.dataset.framed === 'loaded'`))
	frame := portalFrame(t, ctx, portalOrigin)
	errs := watchConsole(frame)

	step(t, frame, "see the app's page", chromedp.WaitVisible(chromedp.CSS("#no-webhooks")))
	state := value(t, frame, chromedp.Evaluate[string](`[document.querySelector('h1').textContent, !!document.querySelector('#app-id'),
		document.querySelectorAll('#crumbs a[href="#/"]').length, location.hash, location.href.includes('whp_'),
		(sessionStorage.getItem('webhooks-portal-token') || '').startsWith('whp_'),
		getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()].join('|')`))
	if state != "Webhooks of "+appID+"|false|0|#/|false|true|#6d28d9" {
		t.Errorf("the portal shows %q; want its one app, no app picker, no link to the app list, the token out of the address bar and in sessionStorage, the theme applied", state)
	}

	step(t, frame, "start a new webhook", chromedp.Click(chromedp.CSS("a.button.primary")), chromedp.WaitVisible(chromedp.CSS("#f-name")))
	step(t, frame, "fill the form",
		chromedp.SendKeys(chromedp.CSS("#f-name"), "Our CI"),
		chromedp.SendKeys(chromedp.CSS("#f-url"), rc.URL("/ci")),
		chromedp.Click(chromedp.CSS("#f-ev-job_finished")),
		chromedp.Click(chromedp.CSS("form button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#send-test")))
	hooks := p.listWebhooks(t, appID)
	if len(hooks) != 1 || hooks[0].URL != rc.URL("/ci") || hooks[0].Name != "Our CI" {
		t.Fatalf("after creating in the portal the app has %+v, want the one webhook", hooks)
	}

	step(t, frame, "send a test event", chromedp.Click(chromedp.CSS("#send-test")),
		chromedp.WaitVisible(chromedp.CSS(`#history tr[data-status="succeeded"]`)))
	if n := rc.Count("/ci"); n != 1 {
		t.Fatalf("the receiver got %d requests after the test event, want 1", n)
	}
	portalShot(t, ctx, frame, "portal-history-1280.png")

	step(t, frame, "open the delivery", chromedp.Click(chromedp.CSS(`#history tr[data-status="succeeded"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#delivery-status[data-delivery-status="succeeded"]`)))
	step(t, frame, "resend", chromedp.Click(chromedp.CSS("#resend")),
		until(`document.querySelectorAll('.attempts > li').length === 2 && document.querySelector('#delivery-status')?.dataset.deliveryStatus === 'succeeded'`))
	if n := rc.Count("/ci"); n != 2 {
		t.Errorf("the receiver got %d requests after the resend, want 2", n)
	}
	portalShot(t, ctx, frame, "portal-delivery-1280.png")

	step(t, ctx, "narrow the window", chromedp.EmulateViewport(375, 1500))
	step(t, frame, "back to the history", chromedp.Click(chromedp.CSS(`#crumbs a[href$="/webhooks/`+hooks[0].ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#history tr[data-status="succeeded"]`)))
	if w := value(t, frame, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
		t.Errorf("at 375 px the portal is %d px wide, want no sideways scrolling", w)
	}
	portalShot(t, ctx, frame, "portal-history-375.png")
	step(t, ctx, "widen the window", chromedp.EmulateReset())
	if e := errs(); len(e) > 0 {
		t.Errorf("the portal reported errors:\n%s", strings.Join(e, "\n"))
	}

	// The same page on an origin frame_ancestors does not list: Chrome
	// fetches the portal's document, finds it may not frame it, and shows
	// its error page instead, so none of the portal's scripts run.
	scripts := strings.Count(p.Logs(), `"uri":"/webhooks/portal/app.js"`)
	other := newBrowser(t, browser)
	if err := chromedp.Do(other); err != nil {
		t.Fatal(err)
	}
	step(t, other, "open the page elsewhere", chromedp.Navigate(elsewhere),
		until(`document.body.dataset.framed === 'loaded'`))
	refusedFrame := portalFrame(t, other, portalOrigin)
	shown := value(t, refusedFrame, chromedp.Evaluate[string](`[location.protocol, !!document.getElementById('main')].join('|')`))
	if shown != "chrome-error:|false" {
		t.Errorf("on an origin not in frame_ancestors the frame shows %q, want Chrome's error page (chrome-error:) and no portal", shown)
	}
	if scripts == 0 {
		t.Fatal("the access log shows no fetch of app.js by the allowed page; the check below would prove nothing")
	}
	if n := strings.Count(p.Logs(), `"uri":"/webhooks/portal/app.js"`); n != scripts {
		t.Errorf("on an origin not in frame_ancestors the portal's app.js was fetched %d more times, want none", n-scripts)
	}
	portalShot(t, other, nil, "portal-refused-1280.png")
}

// portalShot saves a screenshot of the service's page with the portal in
// it, the portal's last toast hidden.
func portalShot(t *testing.T, page, frame context.Context, name string) {
	t.Helper()
	if frame != nil {
		value(t, frame, chromedp.Evaluate[bool](`document.getElementById('toast').classList.remove('shown') ?? true`))
	}
	time.Sleep(300 * time.Millisecond)
	png := value(t, page, chromedp.FullScreenshot(100))
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
