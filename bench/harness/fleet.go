package main

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
)

// fleet compares the PostgreSQL store with Badger in one run: ingest at 64
// connections into one sidecar, and end-to-end delivery with one sidecar
// and with three sharing the database.
func fleet() {
	base, err := pgtest.Server()
	if err != nil {
		log.Printf("fleet: skipped, no PostgreSQL: %v", err)
		return
	}
	defer pgtest.Stop()
	newSchema := func() string {
		name := fmt.Sprintf("bench_%d", time.Now().UnixNano())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			log.Fatalf("fleet: %v", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
			log.Fatalf("fleet: %v", err)
		}
		u, _ := url.Parse(base)
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		return u.String()
	}
	body := event("bench", 1)

	// Ingest into one sidecar.
	for _, store := range []string{"badger", "postgres"} {
		sk := newSink(true)
		storage := ""
		if store == "postgres" {
			storage = "storage " + newSchema()
		}
		p, u := startSidecarWith("ingest-"+store, storage)
		createWebhook(p, "bench", sk.url)
		r, w := measure("ingest, "+store+" store", p, u, body, nil)
		accepted := int64(w.total - w.non2xx)
		sk.waitFor(accepted, 2*time.Minute)
		r.note = strings.TrimSpace(r.note + fmt.Sprintf(" %d accepted, %d delivered", accepted, sk.count.Load()))
		rows = append(rows, r)
		p.stop()
		sk.close()
	}

	// End to end with one and three sidecars.
	n := 30_000
	for _, c := range []struct {
		store    string
		sidecars int
	}{{"badger", 1}, {"postgres", 1}, {"postgres", 3}} {
		sk := newSink(true)
		storage := ""
		if c.store == "postgres" {
			storage = "storage " + newSchema()
		}
		var procs []*caddyProc
		var urls []string
		for i := range c.sidecars {
			p, u := startSidecarWith(fmt.Sprintf("e2e-%s-%d", c.store, i), storage)
			procs = append(procs, p)
			urls = append(urls, u)
		}
		createWebhook(procs[0], "bench", sk.url)
		if c.sidecars > 1 {
			// The other sidecars' ingest caches see the webhook within 1s.
			time.Sleep(1500 * time.Millisecond)
		}
		log.Printf("fleet: %d events through %d %s sidecar(s)", n, c.sidecars, c.store)
		start := time.Now()
		var accepted int64
		done := make(chan int64, len(urls))
		for _, u := range urls {
			go func(u string) { done <- post(u, "bench", n/len(urls)) }(u)
		}
		for range urls {
			accepted += <-done
		}
		sk.waitFor(accepted, 5*time.Minute)
		took := time.Since(start)
		var cpu, rss float64
		for _, p := range procs {
			cpu += p.cpuSeconds()
			rss = max(rss, p.status("VmHWM"))
		}
		rows = append(rows, row{scenario: fmt.Sprintf("end to end, %s store, %d sidecar(s)", c.store, c.sidecars), rps: float64(sk.count.Load()) / took.Seconds(), perSecond: "deliveries/s",
			cpu: cpu, rssMB: rss, note: fmt.Sprintf("%d accepted, %d delivered in %.1fs", accepted, sk.count.Load(), took.Seconds())})
		for _, p := range procs {
			p.stop()
		}
		sk.close()
	}
}

// startSidecarWith starts a sidecar with extra webhooks options.
func startSidecarWith(name, extra string) (*caddyProc, string) {
	port := freePort()
	p := startCaddy(name, strings.ReplaceAll(sidecarConfig(extra), "{PORT}", strconv.Itoa(port)))
	return p, fmt.Sprintf("http://127.0.0.1:%d/", port)
}
