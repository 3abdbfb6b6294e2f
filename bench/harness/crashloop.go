package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	crashKills = flag.Int("crashloop-kills", 10, "crashloop: SIGKILLs in a row")
	crashEvery = flag.Duration("crashloop-every", 5*time.Second, "crashloop: load on each process before it is killed")
)

// crashloop SIGKILLs a sidecar under steady load from concurrent posters,
// restarts it on the same Badger directory, again and again, then lets the
// last process drain and checks that every event answered 202 reached the
// endpoint at least once, counting duplicates. e2e's TestCrashLoop is the
// short form of the same loop.
func crashloop() {
	var mu sync.Mutex
	got := map[string]int{} // webhook-id -> requests
	endpoint := serve(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		got[r.Header.Get("Webhook-Id")]++
		mu.Unlock()
	})
	port := freePort()
	cfg := strings.ReplaceAll(sidecarConfig(""), "{PORT}", strconv.Itoa(port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	p := startCaddy("crashloop", cfg)
	dir := p.dir
	createWebhook(p, "bench", endpoint)

	var (
		accepted sync.Map // event id -> true, for every 202
		nOK      atomic.Int64
		nRefused atomic.Int64
		next     atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conns}}
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(url, "application/json", bytes.NewReader(event("bench", int(next.Add(1)))))
				if err != nil {
					nRefused.Add(1)
					time.Sleep(10 * time.Millisecond) // down or restarting
					continue
				}
				var res struct{ ID string }
				derr := json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
				if resp.StatusCode != 202 || derr != nil || res.ID == "" {
					nRefused.Add(1) // a 202 cut by the kill promised nothing
					continue
				}
				accepted.Store(res.ID, true)
				nOK.Add(1)
			}
		}()
	}

	log.Printf("crashloop: %d SIGKILLs, one every %v of load from %d posters", *crashKills, *crashEvery, *conns)
	start := time.Now()
	var cpu, down float64
	for i := 1; i <= *crashKills; i++ {
		time.Sleep(*crashEvery)
		cpu += p.cpuSeconds()
		p.cmd.Process.Kill()
		p.cmd.Wait()
		killed := time.Now()
		p = startCaddyIn("crashloop", cfg, dir)
		down += time.Since(killed).Seconds()
		log.Printf("crashloop: kill %d at %d accepted, restarted in %.2fs", i, nOK.Load(), time.Since(killed).Seconds())
	}
	time.Sleep(*crashEvery)
	close(stop)
	wg.Wait()
	loopTook := time.Since(start)
	defer p.stop()

	// Drain: every 202 seen by the endpoint, then a pending gauge of 0 read
	// after a stats tick (every 5 s) that followed the last post.
	stopped := time.Now()
	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		accepted.Range(func(k, _ any) bool {
			if got[k.(string)] == 0 {
				n++
			}
			return true
		})
		return n
	}
	deadline := time.Now().Add(10 * time.Minute)
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for time.Now().Before(deadline) && (time.Since(stopped) < 6*time.Second || metric(p, "caddy_webhooks_outbox_pending") != "0") {
		time.Sleep(500 * time.Millisecond)
	}
	drained := time.Since(stopped)
	cpu += p.cpuSeconds()

	lost := missing()
	mu.Lock()
	var dups, stray int
	for id, n := range got {
		dups += n - 1
		if _, ok := accepted.Load(id); !ok {
			stray++
		}
	}
	mu.Unlock()
	verdict := "every 202 delivered"
	if lost > 0 {
		verdict = fmt.Sprintf("FAIL: %d events answered 202 never delivered", lost)
	}
	pendingLeft := metric(p, "caddy_webhooks_outbox_pending")
	ok := nOK.Load()
	note := fmt.Sprintf("%s; %d accepted, %d duplicate requests (%.2f%%), %d delivered whose 202 the kill cut, %d posts refused; restarts took %.1fs in all; drained %.1fs after the last post, pending %s",
		verdict, ok, dups, 100*float64(dups)/float64(max(ok, 1)), stray, nRefused.Load(), down, drained.Seconds(), pendingLeft)
	fmt.Printf("\ncrashloop: %s\n", note)
	rows = append(rows, row{scenario: fmt.Sprintf("crash loop: %d SIGKILLs, %v of load each", *crashKills, *crashEvery),
		rps: float64(ok) / loopTook.Seconds(), perSecond: "accepted/s", cpu: cpu, rssMB: p.status("VmHWM"), note: note})
}
