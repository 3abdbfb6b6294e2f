package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestFanOutAndFiltering posts events of several types for two apps: each
// webhook gets exactly the events of its app and its types.
func TestFanOutAndFiltering(t *testing.T) {
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	const appA, appB = "fan-app-a", "fan-app-b"
	aJobs := s.createWebhook(t, appA, map[string]any{"name": "a-jobs", "url": rc.URL("/a-jobs"), "events": []string{"job_created", "job_finished"}})
	aBuilds := s.createWebhook(t, appA, map[string]any{"name": "a-builds", "url": rc.URL("/a-builds"), "events": []string{"app_build_created", "job_finished"}})
	bJobs := s.createWebhook(t, appB, map[string]any{"name": "b-jobs", "url": rc.URL("/b-jobs"), "events": []string{"job_created"}})

	posts := []struct {
		app, event string
		n          int
		deliveries int // per event
	}{
		{appA, "job_created", 3, 1},
		{appA, "job_finished", 2, 2},
		{appA, "app_build_created", 1, 1},
		{appA, "app_deployment_created", 2, 0},
		{appB, "job_created", 2, 1},
		{appB, "job_finished", 1, 0},
		{"fan-app-without-webhooks", "job_created", 1, 0},
	}
	for _, p := range posts {
		for i := range p.n {
			a := s.mustIngest(t, fmt.Appendf(nil, `{"event":%q,"data":{"appId":%q,"n":%d}}`, p.event, p.app, i))
			if a.Deliveries != p.deliveries {
				t.Errorf("ingest of %s for %s answered deliveries=%d, want %d", p.event, p.app, a.Deliveries, p.deliveries)
			}
		}
	}

	want := map[string][]string{
		"/a-jobs":   {"job_created", "job_created", "job_created", "job_finished", "job_finished"},
		"/a-builds": {"app_build_created", "job_finished", "job_finished"},
		"/b-jobs":   {"job_created", "job_created"},
	}
	total := 0
	for _, evs := range want {
		total += len(evs)
	}
	wait.Until(t, "the receivers did not get every expected delivery", func() bool { return rc.Count("") >= total })
	s.settled(t, appA, aJobs.ID, aBuilds.ID)
	s.settled(t, appB, bJobs.ID)

	for path, evs := range want {
		var got []string
		for _, r := range rc.Requests(path) {
			var ev struct {
				Event string `json:"event"`
				Data  struct {
					AppID string `json:"appId"`
				} `json:"data"`
			}
			if err := json.Unmarshal(r.Body, &ev); err != nil {
				t.Errorf("%s got a body that is not JSON: %q", path, r.Body)
				continue
			}
			if wantApp := map[bool]string{true: appB, false: appA}[strings.HasPrefix(path, "/b-")]; ev.Data.AppID != wantApp {
				t.Errorf("%s (a webhook of %s) got an event of app %s", path, wantApp, ev.Data.AppID)
			}
			got = append(got, ev.Event)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(evs, ",") {
			t.Errorf("webhook %s got events %v, want %v", path, got, evs)
		}
	}
	if n := rc.Count(""); n != total {
		t.Errorf("receivers got %d requests in all, want %d", n, total)
	}
	for _, r := range rc.Requests("") {
		if r.Header.Get("X-Signature") != "" || r.Header.Get("webhook-signature") != "" {
			t.Errorf("a webhook without a secret got signature headers: X-Signature=%q webhook-signature=%q",
				r.Header.Get("X-Signature"), r.Header.Get("webhook-signature"))
			break
		}
	}
}
