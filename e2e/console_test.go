package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestConsole drives the console in a real headless Chromium against a real
// Caddy, as an operator would: sign in through basic_auth, create a webhook
// (after a save the API refused), send a test event, watch a failing event
// fail, fix the receiver and resend it, then edit and delete the webhook.
func TestConsole(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		t.Skip("Chromium not found (looked for $CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome); install it to run the console test")
	}
	const user, password, appID, secret = "admin", "console-test-password", "console-app", "console-secret"
	// The cheapest cost: every request of the page checks the password.
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	adminPort := testkit.FreePort(t)
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{RetrySchedule: "100ms", Sites: fmt.Sprintf(`
http://127.0.0.1:%d {
	basic_auth {
		%s %s
	}
	handle /webhooks/* {
		webhook_admin
	}
	respond 404
}
`, adminPort, user, hash)}, "")
	site := fmt.Sprintf("http://127.0.0.1:%d", adminPort)

	// Without credentials the console is not served: basic_auth is in front.
	if status, _ := call(t, http.MethodGet, site+"/webhooks/console/", nil); status != http.StatusUnauthorized {
		t.Fatalf("GET /webhooks/console/ without credentials answered %d, want 401 from basic_auth", status)
	}
	// The API description is on the admin endpoint too.
	if status, body := call(t, http.MethodGet, s.adminURL("/webhooks/openapi.json"), nil); status != http.StatusOK || !strings.Contains(string(body), `"openapi": "3.1`) {
		t.Errorf("GET /webhooks/openapi.json on the admin endpoint answered %d, want the OpenAPI 3.1 document", status)
	}

	ctx := newBrowser(t, browser)
	errs := watchConsole(ctx)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	step(t, ctx, "sign in", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	}), chromedp.Navigate(site+"/webhooks/console/"))

	// Open the app from the keyboard: type its id and press Enter.
	step(t, ctx, "open the app", chromedp.SendKeys(chromedp.CSS("#app-id"), appID+"\r"))
	step(t, ctx, "start a new webhook", chromedp.Click(chromedp.CSS("a.button.primary")), chromedp.WaitVisible(chromedp.CSS("#f-name")))

	// A URL the API refuses: the error shows next to the URL field, and
	// everything typed is still there.
	step(t, ctx, "fill the form",
		chromedp.SendKeys(chromedp.CSS("#f-name"), "CI pipeline"),
		chromedp.SendKeys(chromedp.CSS("#f-url"), "ftp://example.com/hook"),
		chromedp.Click(chromedp.CSS("#f-ev-job_finished")),
		chromedp.Click(chromedp.CSS("#f-ev-job_created")),
		chromedp.Click(chromedp.CSS("#f-secret-set")),
		chromedp.SendKeys(chromedp.CSS("#f-secret"), secret),
		chromedp.Click(chromedp.CSS("form button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#f-url-error")))
	if msg := value(t, ctx, chromedp.Text(chromedp.CSS("#f-url-error"))); !strings.Contains(msg, "scheme must be http or https") {
		t.Errorf("after saving an ftp URL the URL field says %q, want the API's message", msg)
	}
	kept := value(t, ctx, chromedp.Evaluate[string](`[document.querySelector('#f-name').value, document.querySelector('#f-secret').value,
		document.querySelector('#f-ev-job_created').checked, document.querySelector('#f-url').getAttribute('aria-invalid')].join('|')`))
	if kept != "CI pipeline|"+secret+"|true|true" {
		t.Errorf("after a refused save the form holds %q, want what was typed kept and the URL marked invalid", kept)
	}
	screenshot(t, ctx, "console-form-error.png")

	step(t, ctx, "save", chromedp.SetValue(chromedp.CSS("#f-url"), rc.URL("/hook")),
		chromedp.Click(chromedp.CSS("form button.primary")), chromedp.WaitVisible(chromedp.CSS("#send-test")))
	hooks := s.listWebhooks(t, appID)
	if len(hooks) != 1 || hooks[0].URL != rc.URL("/hook") || !hooks[0].HasSecret || len(hooks[0].Events) != 2 {
		t.Fatalf("after creating from the console the app has %+v, want one webhook to the receiver with a secret and 2 events", hooks)
	}
	hook := hooks[0]

	step(t, ctx, "send a test event", chromedp.Click(chromedp.CSS("#send-test")),
		chromedp.WaitVisible(chromedp.CSS(`#history tr[data-status="succeeded"]`)))
	if got := rc.Requests("/hook"); len(got) != 1 || got[0].Header.Get("X-Signature") != testkit.HexHMAC(secret, got[0].Body) {
		t.Fatalf("the receiver got %d requests after the test event, want 1 signed with the secret", len(got))
	}

	// A failing receiver: the event fails after its retry.
	rc.SetRespond(testkit.Always(http.StatusInternalServerError))
	event := fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q,"id":"16555c02-a320-4bec-a14a-52754d783970","status":"canceled"}}`, appID)
	s.mustIngest(t, event)
	step(t, ctx, "see the delivery fail", chromedp.Click(chromedp.CSS("#h-refresh")),
		chromedp.WaitVisible(chromedp.CSS(`#history tr[data-status="failed"]`)))

	// Fixed: open the failed delivery and resend it.
	rc.SetRespond(nil)
	step(t, ctx, "open the failed delivery", chromedp.Click(chromedp.CSS(`#history tr[data-status="failed"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#delivery-status[data-delivery-status="failed"]`)))
	if body := value(t, ctx, chromedp.TextContent(chromedp.CSS("#request-body"))); body != string(event) {
		t.Errorf("the delivery page shows the request body %q, want the event exactly as posted %q", body, event)
	}
	if n := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('.attempts > li').length`)); n != 2 {
		t.Errorf("the failed delivery lists %d attempts, want 2 (retry_schedule 100ms)", n)
	}
	step(t, ctx, "resend", chromedp.Click(chromedp.CSS("#resend")),
		chromedp.WaitVisible(chromedp.CSS(`#delivery-status[data-delivery-status="succeeded"]`)))
	if n := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('.attempts > li').length`)); n != 3 {
		t.Errorf("after the resend the delivery lists %d attempts, want 3", n)
	}
	screenshot(t, ctx, "console-delivery-1280.png")

	// The history, with its chart, at desktop and phone widths.
	step(t, ctx, "back to the history", chromedp.Click(chromedp.CSS(`#crumbs a[href$="/webhooks/`+hook.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(".chart-svg")),
		until(`document.querySelectorAll('#history tr[data-status="succeeded"]').length === 2`))
	screenshot(t, ctx, "console-history-1280.png")
	step(t, ctx, "narrow the window", chromedp.EmulateViewport(375, 800))
	if w := value(t, ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
		t.Errorf("at 375 px the history page is %d px wide, want no sideways scrolling", w)
	}
	screenshot(t, ctx, "console-history-375.png")
	step(t, ctx, "widen the window", chromedp.EmulateReset())

	// Edit: rename, drop an event, remove the secret.
	step(t, ctx, "edit", chromedp.Click(chromedp.CSS("#edit")), chromedp.WaitVisible(chromedp.CSS("#f-secret-remove")),
		chromedp.SetValue(chromedp.CSS("#f-name"), "CI pipeline (staging)"),
		chromedp.Click(chromedp.CSS("#f-ev-job_created")),
		chromedp.Click(chromedp.CSS("#f-secret-remove")),
		chromedp.Click(chromedp.CSS("form button.primary")),
		until(`document.querySelector('h1')?.textContent === 'CI pipeline (staging)' && !!document.querySelector('#send-test')`))
	hooks = s.listWebhooks(t, appID)
	if len(hooks) != 1 || hooks[0].Name != "CI pipeline (staging)" || hooks[0].HasSecret || strings.Join(hooks[0].Events, ",") != "job_finished" {
		t.Fatalf("after editing from the console the webhook is %+v, want renamed, job_finished only, no secret", hooks)
	}

	step(t, ctx, "delete", chromedp.Click(chromedp.CSS("#delete")), chromedp.Click(chromedp.CSS("#delete-confirm")),
		chromedp.WaitVisible(chromedp.CSS("#no-webhooks")))
	if hooks := s.listWebhooks(t, appID); len(hooks) != 0 {
		t.Fatalf("after deleting from the console the app has %d webhooks, want 0", len(hooks))
	}
	if e := errs(); len(e) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(e, "\n"))
	}
}

// chromiumPath finds a Chromium or Chrome binary, or returns "".
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile. The flags
// that stop its background traffic matter here: on a closed network it
// would otherwise keep retrying its update and sync services.
func newBrowser(t *testing.T, path string) context.Context {
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	// Cancelling waits for the browser to exit, before its profile
	// directory is removed.
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// watchConsole collects the page's uncaught exceptions and console errors.
func watchConsole(ctx context.Context) func() []string {
	var (
		mu   sync.Mutex
		errs []string
	)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The browser log reports every 4xx the page meets on
			// purpose (the refused save); only the page's own errors count.
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source == "") {
				mu.Lock()
				errs = append(errs, m.String())
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// step runs browser actions, failing the test with what the user was doing.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	stepWithin(t, ctx, wait.Default, "console-failure.png", what, actions...)
}

// stepWithin is step bounded by max, saving a screenshot of a failure
// under shot.
func stepWithin(t *testing.T, ctx context.Context, max time.Duration, shot, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		// What the page showed is the best clue.
		if png, shotErr := chromedp.Run(context.WithoutCancel(ctx), chromedp.FullScreenshot(100)); shotErr == nil {
			path := filepath.Join(artifactDir(t), shot)
			if os.WriteFile(path, png, 0o644) == nil {
				t.Logf("screenshot of the failure: %s", path)
			}
		}
		t.Fatalf("console step %q: %v", what, err)
	}
}

// until waits for a JavaScript condition on the page.
func until(condition string) chromedp.Action[chromedp.Void] {
	return untilWithin(condition, wait.Default)
}

// untilWithin waits up to max for a JavaScript condition on the page.
func untilWithin(condition string, max time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](condition, chromedp.WithPollingTimeout(max))(ctx, t)
		return err
	})
}

// value runs one browser action that reads something.
func value[T any](t *testing.T, ctx context.Context, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, wait.Default)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("reading the console page: %v", err)
	}
	return v
}

// screenshot saves the page as a test artefact under $WEBHOOKS_ARTIFACTS
// (or the temp dir) and logs where.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	// Hide the last toast, which would cover the page, and let the layout
	// settle after a resize.
	value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('toast').classList.remove('shown') ?? true`))
	time.Sleep(300 * time.Millisecond)
	png := value(t, ctx, chromedp.FullScreenshot(100))
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// artifactDir is where test artefacts go: $WEBHOOKS_ARTIFACTS, or a
// directory under the temp dir that outlives the test.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("WEBHOOKS_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "caddy-webhooks-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
