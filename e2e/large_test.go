package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// TestLargeEventsLoseNothing posts many large events at once, so the
// ingest's group commit gathers more than one Badger transaction can hold
// (15% of the 32 MiB memtable, about 4.8 MB): every event answered 202 must
// still be delivered.
func TestLargeEventsLoseNothing(t *testing.T) {
	const (
		posters   = 128
		perPoster = 3
		padding   = 60_000 // under Badger's 64 KiB value threshold, so it counts in full
		app       = "large-app"
	)
	rc := testkit.NewRecorder(t)
	s := startSender(t, senderConfig{}, "")
	hook := s.createWebhook(t, app, map[string]any{"name": "big", "url": rc.URL("/big"), "events": []string{"job_created"}})

	pad := strings.Repeat("x", padding)
	var (
		mu       sync.Mutex
		accepted = map[string]int{}
		failed   []string
		wg       sync.WaitGroup
		start    = make(chan struct{})
	)
	for p := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range perPoster {
				seq := p*perPoster + i
				body := fmt.Sprintf(`{"event":"job_created","data":{"appId":%q,"seq":%d,"pad":%q}}`, app, seq, pad)
				req, _ := http.NewRequest(http.MethodPost, s.ingestURL(), strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := testkit.Client().Do(req)
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
					continue
				}
				var a ingestAnswer
				err = json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode == http.StatusAccepted && err == nil && a.ID != "" {
					accepted[a.ID] = seq
				} else {
					failed = append(failed, fmt.Sprintf("seq %d: %d", seq, resp.StatusCode))
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(failed) > 0 {
		t.Logf("%d posts were not answered 202 (allowed; they make no promise), e.g. %s", len(failed), failed[0])
	}
	if len(accepted) == 0 {
		t.Fatalf("no large event was answered 202")
	}

	missing := func() []int {
		seen := map[string]bool{}
		for _, r := range rc.Requests("/big") {
			seen[r.Header.Get("webhook-id")] = true
		}
		var out []int
		for id, seq := range accepted {
			if !seen[id] {
				out = append(out, seq)
			}
		}
		sort.Ints(out)
		return out
	}
	deadline := time.Now().Add(wait.Default)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		hist := s.allDeliveries(t, app, hook.ID)
		t.Fatalf("%d of %d large events answered 202 were never delivered (seqs %v); the history lists %d deliveries",
			len(m), len(accepted), head(m, 20), len(hist))
	}
}
