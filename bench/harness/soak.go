package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soak runs mixed load against one sidecar with a healthy, a slow and a
// failing endpoint, samples RSS and disk, and checks at the end that every
// accepted event reached the healthy endpoint.
func soak() {
	d := min(*soakFor, 10*time.Minute)
	var mu sync.Mutex
	got := map[string]bool{}
	healthy := serve(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		got[r.Header.Get("Webhook-Id")] = true
		mu.Unlock()
	})
	slow := serve(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(2 * time.Second)
	})
	failing := serve(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(500)
	})
	p, url := startSidecar("soak", "")
	defer p.stop()
	for _, u := range []string{healthy, slow, failing} {
		createWebhook(p, "soak", u)
	}
	log.Printf("soak: %d events/s for %v (healthy, slow 2s, failing 500)", *soakRate, d)

	var accepted sync.Map
	var nAccepted, nRejected atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(*soakRate))
	defer tick.Stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		sem := make(chan struct{}, 64)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(i int) {
				defer func() { <-sem; wg.Done() }()
				resp, err := client.Post(url, "application/json", bytes.NewReader(event("soak", i)))
				if err != nil {
					nRejected.Add(1)
					return
				}
				defer resp.Body.Close()
				var res struct{ ID string }
				json.NewDecoder(resp.Body).Decode(&res)
				if resp.StatusCode == 202 {
					accepted.Store(res.ID, true)
					nAccepted.Add(1)
				} else {
					nRejected.Add(1)
				}
			}(i)
		}
	}()

	fmt.Printf("\n| t | accepted | RSS MB | disk MB | pending |\n|---|---|---|---|---|\n")
	start := time.Now()
	sample := func() {
		fmt.Printf("| %s | %d | %.0f | %.0f | %s |\n", time.Since(start).Round(time.Second), nAccepted.Load(), p.status("VmRSS"), dirMB(p.dir), metric(p, "caddy_webhooks_outbox_pending"))
	}
	every := time.NewTicker(30 * time.Second)
	deadline := time.After(d)
loop:
	for {
		select {
		case <-every.C:
			sample()
		case <-deadline:
			break loop
		}
	}
	every.Stop()
	close(stop)
	wg.Wait()
	sample()

	// Every accepted event must reach the healthy endpoint.
	var missing int
	for wait := time.Now(); ; {
		missing = 0
		mu.Lock()
		accepted.Range(func(k, _ any) bool {
			if !got[k.(string)] {
				missing++
			}
			return true
		})
		mu.Unlock()
		if missing == 0 || time.Since(wait) > 2*time.Minute {
			break
		}
		time.Sleep(time.Second)
	}
	verdict := "every accepted event reached the healthy endpoint"
	if missing > 0 {
		verdict = fmt.Sprintf("FAIL: %d accepted events never reached the healthy endpoint", missing)
	}
	fmt.Printf("\nsoak: %d accepted, %d rejected; peak RSS %.0f MB; %s\n", nAccepted.Load(), nRejected.Load(), p.status("VmHWM"), verdict)
	rows = append(rows, row{scenario: fmt.Sprintf("soak %v at %d/s", d, *soakRate), rps: float64(nAccepted.Load()) / d.Seconds(), perSecond: "events/s",
		cpu: p.cpuSeconds(), rssMB: p.status("VmHWM"), note: verdict})
}

func serve(h http.HandlerFunc) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(l, h)
	return "http://" + l.Addr().String() + "/"
}

// metric reads one unlabelled sample from the admin endpoint's /metrics.
func metric(p *caddyProc, name string) string {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return "?"
}
