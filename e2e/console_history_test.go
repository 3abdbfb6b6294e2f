package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestConsoleHistory drives a webhook's page in a real headless Chromium:
// the history's status and event filters, "Load more" past the first page
// of 20, "Resend every failed delivery since", and the secret generator,
// whose secret then signs the test event.
func TestConsoleHistory(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		t.Skip("Chromium not found (looked for $CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome); install it to run the console test")
	}
	const (
		app       = "console-history-app"
		succeeded = 22 // more than a page
		failed    = 3
	)
	rc := testkit.NewRecorder(t)
	var down atomic.Bool
	down.Store(true)
	rc.SetRespond(func(r testkit.Request, _ int) (int, string) {
		if down.Load() && bytes.Contains(r.Body, []byte(`"fail":true`)) {
			return http.StatusInternalServerError, "down"
		}
		return http.StatusOK, "ok"
	})
	s := startSender(t, senderConfig{RetrySchedule: "100ms"}, "")
	hook := s.createWebhook(t, app, map[string]any{"name": "history", "url": rc.URL("/hook"), "events": []string{"job_created", "job_finished"}})
	for i := range succeeded {
		s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"n":%d}}`, app, i))
	}
	for i := range failed {
		s.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q,"n":%d,"fail":true}}`, app, i))
	}
	s.settled(t, app, hook.ID)

	ctx := newBrowser(t, browser)
	errs := watchConsole(ctx)
	rows := func(sel string) string { return `document.querySelectorAll('#history tbody tr` + sel + `').length` }
	choose := func(id, v string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const s = document.querySelector('#%s'); s.value = %q; s.dispatchEvent(new Event('change')); return true })()`, id, v))(ctx, tg)
			return err
		})
	}
	step(t, ctx, "open the webhook", chromedp.Navigate(s.siteURL("/webhooks/console/#/apps/"+app+"/webhooks/"+hook.ID)),
		until(rows("")+` === 20`))

	step(t, ctx, "filter by status", choose("h-status", "failed"),
		until(rows("")+` === 3 && `+rows(`[data-status="failed"]`)+` === 3`))
	step(t, ctx, "filter by status and event", choose("h-event", "job_created"),
		until(`document.querySelector('#history').hidden && !document.querySelector('#h-more').offsetParent`))
	step(t, ctx, "filter by event only", choose("h-status", ""),
		until(rows("")+` === 20 && `+rows(`[data-status="succeeded"]`)+` === 20`))
	step(t, ctx, "load more", chromedp.Click(chromedp.CSS("#h-more")),
		until(rows("")+` === 22 && document.querySelector('#h-more').hidden`))
	step(t, ctx, "no filter", choose("h-event", ""),
		until(rows("")+` === 20 && !document.querySelector('#h-more').hidden`))
	step(t, ctx, "load the rest", chromedp.Click(chromedp.CSS("#h-more")),
		until(rows("")+` === 25 && document.querySelector('#h-more').hidden`))

	// The endpoint is fixed: recover resends the three failed deliveries.
	down.Store(false)
	step(t, ctx, "resend every failed delivery since yesterday", chromedp.Click(chromedp.CSS("#r-submit")),
		until(`document.querySelector('#r-result').textContent === '3 failed deliveries queued again.'`))
	s.settled(t, app, hook.ID)
	ok := 0
	for _, d := range s.allDeliveries(t, app, hook.ID) {
		if d.Status == "succeeded" {
			ok++
		}
	}
	if ok != succeeded+failed {
		t.Errorf("after recovering from the console %d deliveries succeeded, want %d", ok, succeeded+failed)
	}

	// The generator fills a strong secret, which the saved webhook signs with.
	step(t, ctx, "edit", chromedp.Click(chromedp.CSS("#edit")), chromedp.WaitVisible(chromedp.CSS("#f-secret-set")),
		chromedp.Click(chromedp.CSS("#f-secret-set")),
		chromedp.Click(chromedp.CSS("#f-secret-group .secret-input button")),
		until(`document.querySelector('#f-secret').value.length > 0`))
	secret := value(t, ctx, chromedp.Evaluate[string](`document.querySelector('#f-secret').value`))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(secret) {
		t.Fatalf("the generator filled %q, want 32 random bytes in hex", secret)
	}
	before := rc.Count("/hook")
	step(t, ctx, "save and send a test event", chromedp.Click(chromedp.CSS("form button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#send-test")), chromedp.Click(chromedp.CSS("#send-test")))
	wait.Until(t, "the test event after saving the generated secret was not delivered", func() bool { return rc.Count("/hook") > before })
	got := rc.Requests("/hook")[before]
	if got.Header.Get("X-Signature") != testkit.HexHMAC(secret, got.Body) {
		t.Errorf("the test event is not signed with the generated secret")
	}
	if e := errs(); len(e) > 0 {
		t.Errorf("the page reported errors:\n%v", e)
	}
}
