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

// TestCrashLosesNothing SIGKILLs Caddy while events pour in and restarts it
// on the same storage: every event answered 202 is delivered at least once.
func TestCrashLosesNothing(t *testing.T) {
	const (
		total     = 2000
		posters   = 32
		killAfter = 500 // 202s
		app       = "crash-app"
	)
	rc := testkit.NewRecorder(t) // outlives both Caddy processes
	cfg := senderConfig{RetrySchedule: "100ms 200ms 400ms 800ms 1s 1s 1s 1s"}
	first := startSender(t, cfg, "")
	hook := first.createWebhook(t, app, map[string]any{"name": "sink", "url": rc.URL("/sink"), "events": []string{"job_created"}})

	var (
		mu       sync.Mutex
		accepted = map[string]int{} // event id -> seq, for every 202
		next     atomic.Int64
		ok202    atomic.Int64
		refused  atomic.Int64 // connection errors and non-202 answers
		killed   = make(chan struct{})
		killOnce sync.Once
	)
	post := func(seq int) {
		body := fmt.Sprintf(`{"event":"job_created","data":{"appId":%q,"seq":%d,"note":"crash test event %d"}}`, app, seq, seq)
		id, ok, err := postAccepted(first.ingestURL(), body)
		if err != nil || !ok {
			refused.Add(1)
			return
		}
		mu.Lock()
		accepted[id] = seq
		mu.Unlock()
		if ok202.Add(1) >= killAfter {
			killOnce.Do(func() { close(killed) })
		}
	}

	var wg sync.WaitGroup
	for range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := int(next.Add(1))
				if seq > total {
					return
				}
				post(seq)
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d of %d events were answered 202 within 60s", ok202.Load(), killAfter)
	}
	first.Kill()
	killedAt := time.Now()
	wg.Wait()
	t.Logf("SIGKILLed Caddy after %d events answered 202; %d posts answered otherwise or failed", ok202.Load(), refused.Load())

	// Restart on the same directory and storage; a new admin port.
	second := startSender(t, cfg, first.Dir)
	t.Logf("restarted in %v", time.Since(killedAt).Round(time.Millisecond))

	missing := func() []string {
		seen := map[string]bool{}
		for _, r := range rc.Requests("/sink") {
			seen[r.Header.Get("webhook-id")] = true
		}
		var out []string
		for id := range accepted {
			if !seen[id] {
				out = append(out, id)
			}
		}
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		sort.Strings(m)
		var seqs []int
		for _, id := range m {
			seqs = append(seqs, accepted[id])
		}
		sort.Ints(seqs)
		t.Fatalf("%d of %d events answered 202 were never delivered after the crash and restart (seqs %v)", len(m), len(accepted), head(seqs, 20))
	}

	// Every delivery carries the body of the request that got its id.
	byID := map[string]int{}
	stray := 0
	for _, r := range rc.Requests("/sink") {
		id := r.Header.Get("webhook-id")
		byID[id]++
		var ev struct {
			Event string `json:"event"`
			Data  struct {
				AppID string `json:"appId"`
				Seq   int    `json:"seq"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &ev); err != nil {
			t.Errorf("delivery %s has a body that is not the posted JSON: %q", id, r.Body)
			continue
		}
		if seq, ok := accepted[id]; ok {
			if ev.Data.Seq != seq {
				t.Errorf("delivery with webhook-id %s carries seq %d, want %d (the request answered with that id)", id, ev.Data.Seq, seq)
			}
		} else if byID[id] == 1 {
			stray++ // committed, but the 202 never reached the poster
		}
	}
	dups := 0
	for _, n := range byID {
		dups += n - 1
	}
	t.Logf("%d events answered 202, all delivered; %d duplicate deliveries; %d more events delivered whose 202 was lost in the crash",
		len(accepted), dups, stray)

	// The restarted sender's history agrees: one delivery per committed
	// event, all of them succeeded.
	var hist []deliveryJSON
	wait.Until(t, "deliveries were still pending after all events reached the receiver", func() bool {
		hist = second.allDeliveries(t, app, hook.ID)
		for _, d := range hist {
			if d.Status != "succeeded" {
				return false
			}
		}
		return true
	})
	if len(hist) != len(byID) {
		t.Errorf("history after the restart lists %d deliveries, want %d (one per event the receiver got)", len(hist), len(byID))
	}
}

func head(xs []int, n int) []int {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}
