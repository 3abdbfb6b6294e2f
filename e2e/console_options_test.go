package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// The console's webhook form edits the per-webhook options: a sensitive
// header's value is never put in the page and is kept unless retyped, a
// filter the compiler refuses shows its message next to the field with
// everything typed kept, and the delivery settings are saved.
func TestConsoleWebhookOptions(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		t.Skip("Chromium not found (looked for $CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome); install it to run the console test")
	}
	const app, key = "console-opts", "key-55aa66bb77"
	s := startSender(t, senderConfig{}, "")
	rc := testkit.NewRecorder(t)
	hook := s.createWebhook(t, app, map[string]any{"name": "opts", "url": rc.URL("/o"), "events": []string{"job_finished"},
		"headers": map[string]any{"X-Api-Key": key, "X-Team": "ops"}})
	ctx := newBrowser(t, browser)
	pageErrors := watchConsole(ctx)
	edit := s.siteURL("/webhooks/console/#/apps/" + app + "/webhooks/" + hook.ID + "/edit")

	step(t, ctx, "open the edit form", chromedp.Navigate(edit), chromedp.WaitVisible(chromedp.CSS("#f-headers")))
	html := value(t, ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML + [...document.querySelectorAll('input')].map(i => i.value).join(' ')`))
	if strings.Contains(html, key) {
		t.Fatal("the edit form carries the sensitive header's value")
	}
	if !strings.Contains(html, "ops") || !strings.Contains(html, "X-Api-Key") {
		t.Fatal("the edit form does not show the headers")
	}
	step(t, ctx, "add a header, a bad filter and the delivery settings",
		chromedp.Click(chromedp.CSS("#f-header-add")),
		chromedp.SendKeys(chromedp.CSS("#f-header-name-2"), "X-Env"),
		chromedp.SendKeys(chromedp.CSS("#f-header-value-2"), "prod"),
		chromedp.SendKeys(chromedp.CSS("#f-filter"), "data.amount >"),
		chromedp.SendKeys(chromedp.CSS("#f-retry"), "1s 1m"),
		chromedp.SendKeys(chromedp.CSS("#f-timeout"), "3s"),
		chromedp.SendKeys(chromedp.CSS("#f-maxinflight"), "2"),
		chromedp.SendKeys(chromedp.CSS("#f-ratelimit"), "5"),
		chromedp.Click(chromedp.CSS("form button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#f-filter-error")))
	if msg := value(t, ctx, chromedp.Text(chromedp.CSS("#f-filter-error"))); !strings.Contains(msg, "Syntax error") {
		t.Fatalf("the filter's error shows %q, want the compiler's message", msg)
	}
	if kept := value(t, ctx, chromedp.Evaluate[string](`document.querySelector('#f-header-value-2').value + '|' + document.querySelector('#f-retry').value`)); kept != "prod|1s 1m" {
		t.Fatalf("after the refused save the form holds %q", kept)
	}
	step(t, ctx, "fix the filter and save",
		chromedp.SetValue(chromedp.CSS("#f-filter"), `has(data.amount) && data.amount > 100`),
		chromedp.Click(chromedp.CSS("form button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#send-test")))
	status, body := call(t, http.MethodGet, s.hooksURL(app)+"/"+hook.ID, nil)
	for _, want := range []string{`"headers":{"X-Env":"prod","X-Team":"ops"},"sensitiveHeaders":["X-Api-Key"]`,
		`"filter":"has(data.amount) \u0026\u0026 data.amount \u003e 100"`, `"retrySchedule":["1s","1m0s"]`, `"timeout":"3s"`, `"maxInFlight":2`, `"rateLimit":5`} {
		if status != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("after the save the webhook is %d %s, want %s in it", status, body, want)
		}
	}
	// The kept key still goes out.
	s.mustIngest(t, job(app, `,"amount":500`))
	wait.Until(t, "the delivery", func() bool { return rc.Count("/o") == 1 })
	if got := rc.Requests("/o")[0].Header.Get("X-Api-Key"); got != key {
		t.Errorf("after the console's save X-Api-Key arrived as %q", got)
	}

	step(t, ctx, "remove the team header and the settings",
		chromedp.Click(chromedp.CSS("#edit")), chromedp.WaitVisible(chromedp.CSS("#f-headers")),
		until(`document.querySelector('#f-timeout')?.value === '3s'`),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`[...document.querySelectorAll('.header-row')].find(r => r.querySelector('.header-name').value === 'X-Team').querySelector('.header-remove').click(),
				document.querySelector('#f-timeout').value = '', document.querySelector('#f-ratelimit').value = '', true`)(ctx, t)
			return err
		}),
		chromedp.Click(chromedp.CSS("form button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#send-test")))
	_, body = call(t, http.MethodGet, s.hooksURL(app)+"/"+hook.ID, nil)
	if strings.Contains(string(body), "X-Team") || strings.Contains(string(body), `"timeout"`) || strings.Contains(string(body), `"rateLimit"`) ||
		!strings.Contains(string(body), `"sensitiveHeaders":["X-Api-Key"]`) {
		t.Errorf("after removing them the webhook is %s", body)
	}
	screenshot(t, ctx, "console-webhook-options.png")
	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors: %v", errs)
	}
}
