package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
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

// eventsWait bounds each wait of the event log's browser tests: generous,
// for a busy machine.
const eventsWait = 60 * time.Second

// eventsStep runs browser actions, failing the test with what the user was
// doing, and a screenshot of it.
func eventsStep(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	stepWithin(t, ctx, eventsWait, "console-events-failure.png", what, actions...)
}

// eventsUntil waits for a JavaScript condition on the page.
func eventsUntil(condition string) chromedp.Action[chromedp.Void] {
	return untilWithin(condition, eventsWait)
}

// setLocalTime sets a datetime-local input to the instant at, in the
// page's own time zone, as a user picking it would.
func setLocalTime(sel string, at time.Time) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		got, err := chromedp.Evaluate[string](fmt.Sprintf(`(() => {
			const d = new Date(%q), p = (n) => String(n).padStart(2, '0');
			const el = document.querySelector(%q);
			el.value = d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
			return el.value;
		})()`, at.UTC().Format(time.RFC3339), sel))(ctx, t)
		if err == nil && got == "" {
			err = fmt.Errorf("%s refused the time %v", sel, at)
		}
		return err
	})
}

// setFields sets form controls' values, as a user editing them would
// before pressing a button.
func setFields(values map[string]string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for sel, v := range values {
			got, err := chromedp.Evaluate[string](fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.value = %q; return el.value; })()`, sel, v))(ctx, t)
			if err != nil {
				return fmt.Errorf("setting %s: %w", sel, err)
			}
			if got != v {
				return fmt.Errorf("%s holds %q after setting %q", sel, got, v)
			}
		}
		return nil
	})
}

// goHash opens a page of the console from the address bar, keeping the
// page loaded (a navigation to a fragment has no load event to wait for).
func goHash(hash string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, hash))
}

// rowIDs reads the data-id of the rows of a table.
func rowIDs(t *testing.T, ctx context.Context, sel string) []string {
	t.Helper()
	return value(t, ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`[...document.querySelectorAll(%q)].map((r) => r.dataset.id)`, sel+" tbody tr")))
}

// hostileName and hostileTitle would run script if the console ever
// parsed a name or a body as HTML.
const (
	hostileName  = `CI <img src=x onerror="document.body.dataset.pwned='name'">`
	hostileTitle = `<script>document.body.dataset.pwned='body'</script><img src=x onerror="document.body.dataset.pwned='body'">`
)

// TestConsoleEvents drives the event log, replay and recover by status in
// a real Chromium against a real Caddy behind basic_auth: newest first with
// load more, filters by type, by a CEL expression (and an invalid one), a
// filter whose scan stops early and goes on, an event's page with its
// deliveries, a jump to one of them, a replay to a new webhook, and the
// recovery of deliveries skipped while a webhook was disabled.
func TestConsoleEvents(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		t.Skip("Chromium not found (looked for $CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome); install it to run the console test")
	}
	const user, password, appID = "admin", "console-events-password", "events-app"
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

	ci := s.createWebhook(t, appID, map[string]any{"name": hostileName, "url": rc.URL("/ci"), "events": []string{"job_finished", "job_created"}})
	paused := s.createWebhook(t, appID, map[string]any{"name": "Paused", "url": rc.URL("/paused"), "events": []string{"job_created"}, "enabled": false})

	// The oldest event, the one a filter will search for.
	rareBody := fmt.Appendf(nil, `{"event":"job_created","data":{"appId":%q,"rare":true,"title":%q}}`, appID, hostileTitle)
	rare := s.mustIngest(t, rareBody)
	// More events than one filtered page examines (20 × 50), of a type no
	// webhook takes.
	const bulk = 1050
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if status, out := ingest(t, s.ingestURL(), fmt.Appendf(nil, `{"event":"app_build_created","data":{"appId":%q,"n":%d}}`, appID, i)); status != http.StatusAccepted {
					t.Errorf("ingest of bulk event %d answered %d %s", i, status, out)
				}
			}
		})
	}
	for i := range bulk {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Two types, newest last.
	post := func(event, status string) string {
		return s.mustIngest(t, fmt.Appendf(nil, `{"event":%q,"data":{"appId":%q,"status":%q}}`, event, appID, status)).ID
	}
	var first []string
	var failed []string
	for _, e := range [][2]string{{"job_finished", "failed"}, {"job_created", "queued"}, {"job_finished", "succeeded"}, {"job_created", "queued"}, {"job_finished", "failed"}} {
		id := post(e[0], e[1])
		first = append(first, id)
		if e[1] == "failed" {
			failed = append(failed, id)
		}
	}
	// A second set from a whole second on, the window a replay will take.
	replaySince := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(replaySince) + 10*time.Millisecond)
	var second []string
	for _, e := range [][2]string{{"job_finished", "canceled"}, {"job_created", "queued"}, {"job_finished", "canceled"}} {
		second = append(second, post(e[0], e[1]))
	}
	newest := slices.Concat(first, second)
	slices.Reverse(newest)
	finished := []string{second[2], second[0], first[4], first[2], first[0]}
	s.settled(t, appID, ci.ID)

	ctx := newBrowser(t, browser)
	errs := watchConsole(ctx)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	eventsStep(t, ctx, "sign in and open the app", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	}), chromedp.Navigate(site+"/webhooks/console/#/apps/"+appID), chromedp.WaitVisible(chromedp.CSS("#events-link")))

	// Newest first, then the next page from the cursor.
	eventsStep(t, ctx, "open the events", chromedp.Click(chromedp.CSS("#events-link")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 20`))
	ids := rowIDs(t, ctx, "#events")
	if !slices.Equal(ids[:len(newest)], newest) {
		t.Errorf("the events list starts with %v, want the newest first %v", ids[:len(newest)], newest)
	}
	eventsStep(t, ctx, "load more", chromedp.Click(chromedp.CSS("#e-more")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 40`))
	ids = rowIDs(t, ctx, "#events")
	if !slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(b, a) }) || len(slices.Compact(slices.Clone(ids))) != 40 {
		t.Errorf("after load more the list holds %v, want 40 distinct events, newest first", ids)
	}
	screenshot(t, ctx, "console-events-1280.png")

	// By type: the five job_finished events, and the filter in the address.
	eventsStep(t, ctx, "filter by type", chromedp.SetValue(chromedp.CSS("#e-event"), "job_finished"),
		chromedp.Click(chromedp.CSS("#e-apply")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 5`))
	if ids := rowIDs(t, ctx, "#events"); !slices.Equal(ids, finished) {
		t.Errorf("filtered by job_finished the list shows %v, want %v", ids, finished)
	}
	if shown := value(t, ctx, chromedp.Evaluate[string](`[location.hash, document.querySelector('#e-more').hidden, document.querySelector('#e-partial').hidden].join('|')`)); shown != "#/apps/"+appID+"/events?event=job_finished|true|true" {
		t.Errorf("filtered by type the page shows %q, want the filter in the address, no load more, no partial notice", shown)
	}

	// With a CEL expression too.
	eventsStep(t, ctx, "filter by an expression", chromedp.SendKeys(chromedp.CSS("#e-filter"), `data.status == "failed"`),
		chromedp.Click(chromedp.CSS("#e-apply")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 2`))
	if ids := rowIDs(t, ctx, "#events"); !slices.Equal(ids, []string{failed[1], failed[0]}) {
		t.Errorf("filtered by data.status == \"failed\" the list shows %v, want the two failed jobs %v", ids, []string{failed[1], failed[0]})
	}

	// An invalid one: the server's message next to the field.
	const broken = `data.status ==`
	status, raw := call(t, http.MethodGet, s.adminURL("/webhooks/apps/"+appID+"/events?filter="+url.QueryEscape(broken)), nil)
	apiErr := decode[errorJSON](t, "an invalid filter", raw).Error
	if status != http.StatusBadRequest || !strings.HasPrefix(apiErr, "filter: ") {
		t.Fatalf("GET events with filter %q answered %d %q, want 400 naming filter", broken, status, apiErr)
	}
	eventsStep(t, ctx, "try an invalid expression", chromedp.SetValue(chromedp.CSS("#e-filter"), broken),
		chromedp.Click(chromedp.CSS("#e-apply")), chromedp.WaitVisible(chromedp.CSS("#e-filter-error")))
	shown := value(t, ctx, chromedp.Evaluate[string](`[document.querySelector('#e-filter-error').textContent,
		document.querySelector('#e-filter').getAttribute('aria-invalid'), document.activeElement.id].join('|')`))
	if shown != strings.TrimPrefix(apiErr, "filter: ")+"|true|e-filter" {
		t.Errorf("after an invalid filter the page shows %q, want the server's message %q next to the field, marked invalid and focused", shown, apiErr)
	}
	screenshot(t, ctx, "console-events-filter-error-1280.png")

	// A time window: the second set only, in the address too; then one
	// that ends before it starts, refused under until.
	eventsStep(t, ctx, "filter by time", setFields(map[string]string{"#e-event": "", "#e-filter": ""}),
		setLocalTime("#e-since", replaySince), chromedp.Click(chromedp.CSS("#e-apply")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 3`))
	if ids, want := rowIDs(t, ctx, "#events"), []string{second[2], second[1], second[0]}; !slices.Equal(ids, want) {
		t.Errorf("received since %v the list shows %v, want %v", replaySince, ids, want)
	}
	if h := value(t, ctx, chromedp.Evaluate[string](`location.hash`)); h != "#/apps/"+appID+"/events?since="+url.QueryEscape(replaySince.UTC().Format(time.RFC3339)) {
		t.Errorf("filtered by time the address is %q, want the window in it", h)
	}
	eventsStep(t, ctx, "filter by a window that ends before it starts", setLocalTime("#e-until", replaySince.Add(-time.Minute)),
		chromedp.Click(chromedp.CSS("#e-apply")), chromedp.WaitVisible(chromedp.CSS("#e-until-error")))
	if msg := value(t, ctx, chromedp.Text(chromedp.CSS("#e-until-error"))); !strings.Contains(msg, "is before since") {
		t.Errorf("a window that ends before it starts says %q under until, want the API's message", msg)
	}

	// A filter that matches only the oldest event: the first page stops
	// at its scan bound and says so; load more goes on and finds it.
	eventsStep(t, ctx, "search the whole log", setFields(map[string]string{"#e-since": "", "#e-until": "", "#e-filter": "has(data.rare)"}),
		chromedp.Click(chromedp.CSS("#e-apply")), chromedp.WaitVisible(chromedp.CSS("#e-partial")))
	if shown := value(t, ctx, chromedp.Evaluate[string](`[document.querySelectorAll('#events tbody tr').length, document.querySelector('#e-partial').textContent,
		document.querySelector('#e-more').hidden, document.querySelector('#e-empty').hidden, document.querySelector('#e-filter-error').hidden].join('|')`)); shown != "0|Scan stopped early; load more to continue.|false|true|true" {
		t.Errorf("a filter matching none of the newest 1,000 events shows %q, want no rows, the partial notice, load more, no \"no events\" and no error", shown)
	}
	screenshot(t, ctx, "console-events-partial-1280.png")
	eventsStep(t, ctx, "go on searching", chromedp.Click(chromedp.CSS("#e-more")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 1 && document.querySelector('#e-partial').hidden && document.querySelector('#e-more').hidden`))
	if ids := rowIDs(t, ctx, "#events"); !slices.Equal(ids, []string{rare.ID}) {
		t.Errorf("following the partial page found %v, want the rare event %s", ids, rare.ID)
	}

	// Its page: the body as text, every delivery with its webhook.
	openRare := []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#events tr[data-id="` + rare.ID + `"] a`)),
		eventsUntil(`document.querySelector('#event-deliveries tr[data-webhook="` + paused.ID + `"]')?.dataset.status === 'skipped' &&
			document.querySelector('#event-deliveries tr[data-webhook="` + ci.ID + `"]')?.dataset.status === 'succeeded'`)}
	eventsStep(t, ctx, "open the event", openRare...)
	type eventPage struct {
		Body       string
		Deliveries []string
		Markup     int
		Pwned      string
	}
	page := value(t, ctx, chromedp.Evaluate[eventPage](`({
		body: document.querySelector('#event-body').textContent,
		deliveries: [...document.querySelectorAll('#event-deliveries tbody tr')].map((r) => r.querySelector('a').textContent + '=' + r.dataset.status).sort(),
		markup: document.querySelectorAll('main img, main script').length,
		pwned: document.body.dataset.pwned || '',
	})`))
	if want := (eventPage{string(rareBody), []string{hostileName + "=succeeded", "Paused=skipped"}, 0, ""}); !reflect.DeepEqual(page, want) {
		t.Errorf("the event page shows %+v, want %+v: the body byte for byte as text, each delivery with its webhook's name, no markup parsed", page, want)
	}
	screenshot(t, ctx, "console-event-1280.png")
	eventsStep(t, ctx, "narrow the window", chromedp.EmulateViewport(375, 800))
	if w := value(t, ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
		t.Errorf("at 375 px the event page is %d px wide, want no sideways scrolling", w)
	}
	screenshot(t, ctx, "console-event-375.png")

	// Back: the list with its filter, as left.
	eventsStep(t, ctx, "go back to the list", chromedp.Evaluate[chromedp.Void](`history.back()`),
		chromedp.WaitVisible(chromedp.CSS("#e-partial")))
	if f := value(t, ctx, chromedp.Evaluate[string](`document.querySelector('#e-filter').value`)); f != "has(data.rare)" {
		t.Errorf("back on the list the filter field holds %q, want the filter applied before", f)
	}
	if w := value(t, ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
		t.Errorf("at 375 px the events list is %d px wide, want no sideways scrolling", w)
	}
	screenshot(t, ctx, "console-events-375.png")
	eventsStep(t, ctx, "widen the window", chromedp.EmulateViewport(1280, 900))
	eventsStep(t, ctx, "find it again", chromedp.Click(chromedp.CSS("#e-more")),
		chromedp.WaitVisible(chromedp.CSS(`#events tr[data-id="`+rare.ID+`"]`)))
	eventsStep(t, ctx, "open it again", openRare...)

	// Jump to the delivery in the webhook's history.
	eventsStep(t, ctx, "open the delivery", chromedp.Click(chromedp.CSS(`#event-deliveries tr[data-webhook="`+ci.ID+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#delivery-status[data-delivery-status="succeeded"]`)))
	ciDeliveries := s.deliveries(t, appID, ci.ID)
	i := slices.IndexFunc(ciDeliveries, func(d deliveryJSON) bool { return d.EventID == rare.ID })
	if i < 0 {
		t.Fatalf("webhook %s has no delivery of event %s", ci.ID, rare.ID)
	}
	jump := value(t, ctx, chromedp.Evaluate[string](`[location.hash, document.querySelector('#request-body').textContent].join('|')`))
	if want := "#/apps/" + appID + "/webhooks/" + ci.ID + "/deliveries/" + ciDeliveries[i].ID + "|" + string(rareBody); jump != want {
		t.Errorf("the delivery link led to %q, want %q", jump, want)
	}

	// Replay to a webhook created after the events, from a second on.
	fresh := s.createWebhook(t, appID, map[string]any{"name": "Late", "url": rc.URL("/late"), "events": []string{"job_finished"}})
	eventsStep(t, ctx, "open the new webhook", goHash("#/apps/"+appID+"/webhooks/"+fresh.ID),
		chromedp.WaitVisible(chromedp.CSS("#rp-submit")))
	eventsStep(t, ctx, "replay a window that ends before it starts", setLocalTime("#rp-since", replaySince),
		setLocalTime("#rp-until", replaySince.Add(-time.Hour)), chromedp.Click(chromedp.CSS("#rp-submit")),
		chromedp.WaitVisible(chromedp.CSS("#rp-until-error")))
	if msg := value(t, ctx, chromedp.Text(chromedp.CSS("#rp-until-error"))); !strings.Contains(msg, "is before since") {
		t.Errorf("a replay window that ends before it starts says %q next to until, want the API's message", msg)
	}
	if n := len(s.deliveries(t, appID, fresh.ID)); n != 0 {
		t.Fatalf("a refused replay created %d deliveries", n)
	}
	eventsStep(t, ctx, "replay since a time", setFields(map[string]string{"#rp-until": ""}),
		chromedp.Click(chromedp.CSS("#rp-submit")), eventsUntil(`document.querySelector('#rp-result').dataset.replayed === '2'`),
		eventsUntil(`document.querySelectorAll('#history tr[data-status="succeeded"]').length === 2`))
	if msg := value(t, ctx, chromedp.Text(chromedp.CSS("#rp-result"))); !strings.HasPrefix(msg, "2 events replayed") {
		t.Errorf("after the replay the page says %q, want the count", msg)
	}
	var replayed []string
	for _, d := range s.deliveries(t, appID, fresh.ID) {
		replayed = append(replayed, d.EventID)
	}
	if !slices.Equal(replayed, []string{second[2], second[0]}) {
		t.Errorf("the replay delivered events %v, want the job_finished events since %v: %v", replayed, replaySince, []string{second[2], second[0]})
	}
	eventsStep(t, ctx, "replay again", chromedp.Evaluate[chromedp.Void](`delete document.querySelector('#rp-result').dataset.replayed`),
		chromedp.Click(chromedp.CSS("#rp-submit")), eventsUntil(`document.querySelector('#rp-result').dataset.replayed === '0'`))
	if n := rc.Count("/late"); n != 2 {
		t.Errorf("the new webhook's endpoint got %d requests, want the 2 replayed", n)
	}

	// Recover what the paused webhook skipped: failed only finds none,
	// skipped finds every job_created event.
	status, raw = call(t, http.MethodPatch, s.hooksURL(appID)+"/"+paused.ID, map[string]any{"enabled": true})
	if status != http.StatusOK {
		t.Fatalf("enabling the paused webhook answered %d %s", status, raw)
	}
	skipped := 0
	for _, d := range s.deliveries(t, appID, paused.ID) {
		if d.Status == "skipped" {
			skipped++
		}
	}
	if skipped != 4 {
		t.Fatalf("the paused webhook has %d skipped deliveries, want 4 (every job_created event)", skipped)
	}
	eventsStep(t, ctx, "open the paused webhook", goHash("#/apps/"+appID+"/webhooks/"+paused.ID),
		chromedp.WaitVisible(chromedp.CSS("#r-submit")), eventsUntil(`document.querySelectorAll('#history tr[data-status="skipped"]').length === 4`))
	eventsStep(t, ctx, "recover failed deliveries", chromedp.Click(chromedp.CSS("#r-submit")),
		eventsUntil(`document.querySelector('#r-result').dataset.recovered === '0'`))
	eventsStep(t, ctx, "recover with no status", chromedp.Click(chromedp.CSS("#r-status-failed")),
		chromedp.Click(chromedp.CSS("#r-submit")), chromedp.WaitVisible(chromedp.CSS("#r-status-error")))
	if msg := value(t, ctx, chromedp.Text(chromedp.CSS("#r-status-error"))); !strings.Contains(msg, "failed, skipped or both") {
		t.Errorf("recover with no status ticked says %q next to the choice, want the API's message", msg)
	}
	eventsStep(t, ctx, "recover skipped deliveries", chromedp.Click(chromedp.CSS("#r-status-skipped")),
		chromedp.Click(chromedp.CSS("#r-submit")), eventsUntil(`document.querySelector('#r-result').dataset.recovered === '4'`),
		eventsUntil(`document.querySelectorAll('#history tr[data-status="succeeded"]').length === 4`))
	if msg := value(t, ctx, chromedp.Text(chromedp.CSS("#r-result"))); msg != "4 skipped deliveries queued again." {
		t.Errorf("after recovering skipped deliveries the page says %q", msg)
	}
	if n := rc.Count("/paused"); n != 4 {
		t.Errorf("the paused webhook's endpoint got %d requests after the recovery, want 4", n)
	}
	screenshot(t, ctx, "console-replay-recover-1280.png")
	eventsStep(t, ctx, "narrow the window", chromedp.EmulateViewport(375, 800))
	if w := value(t, ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
		t.Errorf("at 375 px the webhook page is %d px wide, want no sideways scrolling", w)
	}
	screenshot(t, ctx, "console-replay-recover-375.png")
	eventsStep(t, ctx, "widen the window", chromedp.EmulateViewport(1280, 900))
	if e := errs(); len(e) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(e, "\n"))
	}
}

// TestPortalEvents: in the portal, an app's owner browses their event log,
// filters it, opens an event and its delivery, and replays to a webhook
// created afterwards, with only the portal token.
func TestPortalEvents(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		t.Skip("Chromium not found (looked for $CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome); install it to run the portal browser test")
	}
	const appID = "acme-customer-7"
	p := startPortalSender(t, "")
	rc := testkit.NewRecorder(t)
	hook := p.createWebhook(t, appID, map[string]any{"name": "Builds", "url": rc.URL("/builds"), "events": []string{"app_build_created"}})
	build := p.mustIngest(t, fmt.Appendf(nil, `{"event":"app_build_created","data":{"appId":%q,"id":"b1"}}`, appID))
	job := p.mustIngest(t, fmt.Appendf(nil, `{"event":"job_finished","data":{"appId":%q,"id":"j1"}}`, appID))
	// Another app's event, which the portal must not show.
	p.mustIngest(t, []byte(`{"event":"job_finished","data":{"appId":"someone-else"}}`))
	p.settled(t, appID, hook.ID)
	tok := p.mintToken(t, appID, "1h")

	ctx := newBrowser(t, browser)
	errs := watchConsole(ctx)
	eventsStep(t, ctx, "open the portal", chromedp.Navigate(p.portalURL(tok.URL)), chromedp.WaitVisible(chromedp.CSS("#events-link")))
	eventsStep(t, ctx, "open the events", chromedp.Click(chromedp.CSS("#events-link")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 2`))
	if ids := rowIDs(t, ctx, "#events"); !slices.Equal(ids, []string{job.ID, build.ID}) {
		t.Errorf("the portal's event log shows %v, want its app's two events newest first %v", ids, []string{job.ID, build.ID})
	}
	eventsStep(t, ctx, "filter", chromedp.SendKeys(chromedp.CSS("#e-filter"), `data.id == "b1"`), chromedp.Click(chromedp.CSS("#e-apply")),
		eventsUntil(`document.querySelectorAll('#events tbody tr').length === 1`))
	eventsStep(t, ctx, "open the event", chromedp.Click(chromedp.CSS(`#events tr[data-id="`+build.ID+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#event-deliveries tr[data-status="succeeded"]`)))
	eventsStep(t, ctx, "open its delivery", chromedp.Click(chromedp.CSS(`#event-deliveries tr[data-webhook="`+hook.ID+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#delivery-status[data-delivery-status="succeeded"]`)))

	late := p.createWebhook(t, appID, map[string]any{"name": "Jobs", "url": rc.URL("/jobs"), "events": []string{"job_finished"}})
	eventsStep(t, ctx, "open the new webhook", goHash("#/apps/"+appID+"/webhooks/"+late.ID),
		chromedp.WaitVisible(chromedp.CSS("#rp-submit")))
	eventsStep(t, ctx, "replay", chromedp.Click(chromedp.CSS("#rp-submit")),
		eventsUntil(`document.querySelector('#rp-result').dataset.replayed === '1'`))
	wait.Until(t, "the replayed event at the new webhook's endpoint", func() bool { return rc.Count("/jobs") == 1 })
	if got := rc.Requests("/jobs"); got[0].Header.Get("webhook-id") != job.ID {
		t.Errorf("the replay sent webhook-id %q, want the event's id %s", got[0].Header.Get("webhook-id"), job.ID)
	}
	if e := errs(); len(e) > 0 {
		t.Errorf("the portal reported errors:\n%s", strings.Join(e, "\n"))
	}
}
