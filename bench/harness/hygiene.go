package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

var (
	hygieneEvents = flag.Int("hygiene-events", 1_000_000, "events delivered in the hygiene scenario")
	hygieneRate   = flag.Int("hygiene-rate", 1500, "events per second in the hygiene scenario")
	hygieneKeep   = flag.Duration("hygiene-retention", time.Minute, "retention in the hygiene scenario")
)

// hygiene delivers many events to a healthy endpoint with a short
// retention and samples the disk: once retention has passed, expired
// history must be dropped, so disk use levels off instead of growing with
// the number of events delivered.
func hygiene() {
	sk := newSink(true)
	defer sk.close()
	// A short timeout keeps the longest retry round, which events outlive,
	// at about a minute.
	p, url := startSidecar("hygiene", fmt.Sprintf("retention %s\n\t\ttimeout 5s", *hygieneKeep))
	defer p.stop()
	createWebhook(p, "bench", sk.url)
	n, rate := *hygieneEvents, *hygieneRate
	log.Printf("hygiene: %d events at %d/s, retention %s", n, rate, *hygieneKeep)
	fmt.Printf("\n| t | posted | delivered | disk MB | RSS MB |\n|---|---|---|---|---|\n")
	start := time.Now()
	var posted atomic.Int64
	sample := func() {
		fmt.Printf("| %s | %d | %d | %.0f | %.0f |\n", time.Since(start).Round(time.Second), posted.Load(), sk.count.Load(), dirMB(p.dir), p.status("VmRSS"))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		per := rate / 100
		for i := 0; i < n; {
			<-tick.C
			for j := 0; j < per && i < n; j, i = j+1, i+1 {
				sem <- struct{}{}
				wg.Add(1)
				go func(i int) {
					defer func() { <-sem; wg.Done() }()
					resp, err := client.Post(url, "application/json", bytes.NewReader(event("bench", i)))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 202 {
							posted.Add(1)
						}
					}
				}(i)
			}
		}
		wg.Wait()
	}()
	every := time.NewTicker(30 * time.Second)
	defer every.Stop()
	var peak float64
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-every.C:
			sample()
			peak = max(peak, dirMB(p.dir))
		}
	}
	sk.waitFor(posted.Load(), 5*time.Minute)
	sample()
	// Let the events' retention (1m plus the longest retry round, about
	// 1 min here) pass and housekeeping (every minute) return the space.
	for range 12 {
		time.Sleep(30 * time.Second)
		sample()
		peak = max(peak, dirMB(p.dir))
	}
	rows = append(rows, row{scenario: fmt.Sprintf("hygiene: %d events, retention %s", posted.Load(), *hygieneKeep), rps: float64(sk.count.Load()) / time.Since(start).Seconds(), perSecond: "deliveries/s",
		cpu: p.cpuSeconds(), rssMB: p.status("VmHWM"), note: fmt.Sprintf("disk peak %.0f MB, %.0f MB at the end", peak, dirMB(p.dir))})
}
