package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestCrashLoop SIGKILLs the sidecar ten times in a row while concurrent
// posters keep sending events, restarting it on the same Badger directory
// after each kill, then lets it drain: every event answered 202 by any of
// the eleven processes reaches the endpoint at least once, with the body it
// was posted with, and the last process's history has one finished
// delivery per event the endpoint got. Duplicates (attempts in flight at a
// kill) are allowed by the at-least-once contract and counted.
// bench/run crashloop runs a longer form of the same loop.
func TestCrashLoop(t *testing.T) {
	const (
		kills    = 10
		perCycle = 400 // 202s each process gives before it is killed
		posters  = 16
		app      = "crashloop-app"
	)
	rc := testkit.NewRecorder(t) // outlives every Caddy process
	cfg := senderConfig{
		// One port for all processes, so the posters keep one URL.
		Port:          testkit.FreePort(t),
		RetrySchedule: "100ms 200ms 400ms 800ms 1s 1s 1s 1s 1s 1s",
	}
	sd := startSender(t, cfg, "")
	dir, ingestURL := sd.Dir, sd.ingestURL()
	hook := sd.createWebhook(t, app, map[string]any{"name": "sink", "url": rc.URL("/sink"), "events": []string{"job_created"}})

	var (
		mu       sync.Mutex
		accepted = map[string]int{} // event id -> seq, for every 202
		next     atomic.Int64
		ok202    atomic.Int64
		refused  atomic.Int64 // connection errors and other answers
		stop     = make(chan struct{})
	)
	post := func(seq int) {
		body := fmt.Sprintf(`{"event":"job_created","data":{"appId":%q,"seq":%d,"note":"crash loop event %d"}}`, app, seq, seq)
		id, ok, err := postAccepted(ingestURL, body)
		if err != nil {
			refused.Add(1)
			// The sidecar is down or restarting; do not spin on the port.
			time.Sleep(10 * time.Millisecond)
			return
		}
		if !ok {
			refused.Add(1)
			return
		}
		mu.Lock()
		accepted[id] = seq
		mu.Unlock()
		ok202.Add(1)
	}
	var wg sync.WaitGroup
	for range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				post(int(next.Add(1)))
			}
		}()
	}
	stopPosters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopPosters)

	// waitAccepted waits for n answers of 202 in all, under load.
	waitAccepted := func(n int64, round int) {
		t.Helper()
		wait.Within(t, 60*time.Second, fmt.Sprintf("round %d: only %d of %d events answered 202", round, ok202.Load(), n), func() bool {
			return ok202.Load() >= n
		})
	}
	start := time.Now()
	for round := 1; round <= kills; round++ {
		waitAccepted(int64(round*perCycle), round)
		sd.Kill()
		sd = startSender(t, cfg, dir)
	}
	waitAccepted(int64((kills+1)*perCycle), kills+1)
	stopPosters()
	t.Logf("%d kills and restarts in %v; %d events answered 202, %d posts refused or cut by a kill",
		kills, time.Since(start).Round(time.Millisecond), len(accepted), refused.Load())

	// Every 202 reached the endpoint.
	seen := func() map[string]int {
		n := map[string]int{}
		for _, r := range rc.Requests("/sink") {
			n[r.Header.Get("webhook-id")]++
		}
		return n
	}
	missing := func(got map[string]int) []int {
		var seqs []int
		for id, seq := range accepted {
			if got[id] == 0 {
				seqs = append(seqs, seq)
			}
		}
		sort.Ints(seqs)
		return seqs
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(missing(seen())) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m := missing(seen()); len(m) > 0 {
		t.Fatalf("%d of %d events answered 202 never reached the endpoint after %d kills (seqs %v)", len(m), len(accepted), kills, head(m, 20))
	}

	// Nothing is left pending, and the history has one delivery per event
	// the endpoint got (events whose 202 a kill cut off included).
	var hist []deliveryJSON
	wait.Within(t, 90*time.Second, "deliveries were still pending after every event reached the endpoint", func() bool {
		hist = sd.allDeliveries(t, app, hook.ID)
		for _, d := range hist {
			if d.Status != "succeeded" {
				return false
			}
		}
		return true
	})
	got := seen()
	if len(hist) != len(got) {
		t.Errorf("history lists %d deliveries, want %d (one per event the endpoint got)", len(hist), len(got))
	}

	// Each request carried the body posted for its id.
	for _, r := range rc.Requests("/sink") {
		id := r.Header.Get("webhook-id")
		var ev struct {
			Data struct {
				Seq int `json:"seq"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &ev); err != nil {
			t.Errorf("delivery %s has a body that is not the posted JSON: %q", id, r.Body)
			continue
		}
		if seq, ok := accepted[id]; ok && ev.Data.Seq != seq {
			t.Errorf("delivery with webhook-id %s carries seq %d, want %d (the request answered with that id)", id, ev.Data.Seq, seq)
		}
	}
	dups, stray := 0, 0
	for id, n := range got {
		dups += n - 1
		if _, ok := accepted[id]; !ok {
			stray++
		}
	}
	t.Logf("all %d events answered 202 delivered; %d duplicate requests (%.2f%%); %d more events delivered whose 202 a kill cut off",
		len(accepted), dups, 100*float64(dups)/float64(len(accepted)), stray)
}
