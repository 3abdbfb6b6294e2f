package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
)

// fleetSetup is one of the stores the fleet scenario compares.
type fleetSetup struct {
	store    string // badger or postgres
	sidecars int
}

func (c fleetSetup) String() string {
	if c.sidecars == 1 {
		return fmt.Sprintf("%s, 1 sidecar", c.store)
	}
	return fmt.Sprintf("%s, %d sidecars", c.store, c.sidecars)
}

// fleet compares the PostgreSQL store with Badger in one run, for one
// Badger sidecar, one PostgreSQL sidecar and three sharing a database:
// end to end (post -backlog events with the endpoint up), the drain of a
// -backlog backlog, ingest under wrk-like load with delivery measured in
// the same window, and the time from 202 to the endpoint on an idle fleet.
func fleet() {
	base, err := pgtest.Server()
	if err != nil {
		log.Printf("fleet: skipped, no PostgreSQL: %v", err)
		return
	}
	defer pgtest.Stop()
	setups := []fleetSetup{{"badger", 1}, {"postgres", 1}, {"postgres", 3}}
	type result struct{ e2e, drain, ingest, delivered float64 }
	res := map[fleetSetup]result{}
	for _, c := range setups {
		var r result
		r.e2e = fleetEndToEnd(base, c)
		r.drain = fleetDrain(base, c)
		r.ingest, r.delivered = fleetIngest(base, c)
		fleetLatency(base, c)
		res[c] = r
	}
	// Ratios within this run: each figure against Badger's, and three
	// PostgreSQL sidecars against one.
	b, p1 := res[setups[0]], res[setups[1]]
	for i := range rows {
		r := &rows[i]
		for _, c := range setups[1:] {
			if !strings.HasSuffix(r.scenario, "("+c.String()+")") {
				continue
			}
			var vs, one float64
			switch {
			case strings.HasPrefix(r.scenario, "end to end"):
				vs, one = b.e2e, p1.e2e
			case strings.HasPrefix(r.scenario, "drain"):
				vs, one = b.drain, p1.drain
			case strings.HasPrefix(r.scenario, "ingest"):
				vs, one = b.ingest, p1.ingest
			default:
				continue
			}
			r.ratio = fmt.Sprintf("%.2f× Badger", r.rps/vs)
			if c.sidecars > 1 {
				r.ratio += fmt.Sprintf(", %.2f× 1 PostgreSQL", r.rps/one)
			}
		}
	}
}

// newFleet starts the sidecars of a setup, each on a fresh schema for
// PostgreSQL, and creates the benchmark's webhook.
func newFleet(base string, c fleetSetup, name, sinkURL string) ([]*caddyProc, []string) {
	storage := ""
	if c.store == "postgres" {
		storage = "storage " + newSchema(base)
	}
	var procs []*caddyProc
	var urls []string
	for i := range c.sidecars {
		port := freePort()
		p := startCaddy(fmt.Sprintf("%s-%s-%d", name, c.store, i), strings.ReplaceAll(sidecarConfig(storage), "{PORT}", strconv.Itoa(port)))
		procs = append(procs, p)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/", port))
	}
	createWebhook(procs[0], "bench", sinkURL)
	return procs, urls
}

func stopAll(procs []*caddyProc) {
	for _, p := range procs {
		p.stop()
	}
}

func cpuOf(procs []*caddyProc) (cpu, rss float64) {
	for _, p := range procs {
		cpu += p.cpuSeconds()
		rss = max(rss, p.status("VmHWM"))
	}
	return cpu, rss
}

// fleetEndToEnd posts -backlog events spread over the sidecars with the
// endpoint up and times until the endpoint has them all.
func fleetEndToEnd(base string, c fleetSetup) float64 {
	n := *backlog
	sk := newSink(true)
	defer sk.close()
	procs, urls := newFleet(base, c, "e2e", sk.url)
	defer stopAll(procs)
	log.Printf("fleet: %d events end to end through %s", n, c)
	go procs[0].saveProfile("profile?seconds=10", fmt.Sprintf("fleet-e2e-%s-%d.cpu", c.store, c.sidecars))
	c0, _ := cpuOf(procs)
	start := time.Now()
	accepted := postSpread(urls, n)
	sk.waitFor(accepted, 10*time.Minute)
	took := time.Since(start)
	cpu, rss := cpuOf(procs)
	rate := float64(sk.count.Load()) / took.Seconds()
	rows = append(rows, row{scenario: fmt.Sprintf("end to end, %d events (%s)", n, c), rps: rate, perSecond: "deliveries/s",
		cpu: cpu - c0, rssMB: rss, note: fmt.Sprintf("%d accepted, %d delivered in %.1fs", accepted, sk.count.Load(), took.Seconds())})
	return rate
}

// fleetDrain queues -backlog deliveries behind a closed endpoint, then
// opens it and times the drain.
func fleetDrain(base string, c fleetSetup) float64 {
	n := *backlog
	sk := newSink(false)
	defer sk.close()
	procs, urls := newFleet(base, c, "drain", sk.url)
	defer stopAll(procs)
	log.Printf("fleet: queueing %d deliveries behind a closed endpoint through %s", n, c)
	accepted := postSpread(urls, n)
	// The attempts that reached the closed endpoint are held open; the
	// rest wait in the store.
	go procs[0].saveProfile("profile?seconds=10", fmt.Sprintf("fleet-drain-%s-%d.cpu", c.store, c.sidecars))
	c0, _ := cpuOf(procs)
	start := time.Now()
	sk.release()
	sk.waitFor(accepted, 10*time.Minute)
	took := time.Since(start)
	cpu, rss := cpuOf(procs)
	rate := float64(sk.count.Load()) / took.Seconds()
	rows = append(rows, row{scenario: fmt.Sprintf("drain of a %d backlog (%s)", n, c), rps: rate, perSecond: "deliveries/s",
		cpu: cpu - c0, rssMB: rss, note: fmt.Sprintf("%d delivered in %.1fs", sk.count.Load(), took.Seconds())})
	return rate
}

// fleetIngest posts as fast as -connections allow for -duration with the
// endpoint up, and counts what the endpoint received in the same window,
// so the row shows whether delivery keeps up with ingest.
func fleetIngest(base string, c fleetSetup) (ingest, delivered float64) {
	sk := newSink(true)
	defer sk.close()
	procs, urls := newFleet(base, c, "ingest", sk.url)
	defer stopAll(procs)
	log.Printf("fleet: ingest for %v at %d connections through %s", *duration, *conns, c)
	c0, _ := cpuOf(procs)
	d0 := sk.count.Load()
	start := time.Now()
	accepted, lat := postFor(urls, *duration)
	took := time.Since(start)
	got := sk.count.Load() - d0
	cpu, rss := cpuOf(procs)
	caught := sk.waitFor(accepted, 5*time.Minute)
	after := time.Since(start) - took
	ingest, delivered = float64(accepted)/took.Seconds(), float64(got)/took.Seconds()
	note := fmt.Sprintf("delivered %.0f/s in the same window (%.2f× ingest); %d accepted, %d delivered by the end of the window, all %d %s %.1fs later",
		delivered, delivered/ingest, accepted, got, accepted, map[bool]string{true: "delivered", false: "not delivered"}[caught], after.Seconds())
	rows = append(rows, row{scenario: fmt.Sprintf("ingest with delivery (%s)", c), rps: ingest, perSecond: "req/s",
		p50: lat.pct(50), p99: lat.pct(99), cpu: cpu - c0, rssMB: rss, note: note})
	return ingest, delivered
}

// fleetLatency posts one event at a time to an idle fleet and reports the
// time from the 202 to the endpoint receiving it.
func fleetLatency(base string, c fleetSetup) {
	const n = 200
	ls := newLatencySink()
	defer ls.close()
	procs, urls := newFleet(base, c, "latency", ls.url)
	defer stopAll(procs)
	log.Printf("fleet: %d events one at a time to an idle fleet through %s", n, c)
	// Let every sidecar go idle.
	time.Sleep(3 * time.Second)
	client := &http.Client{}
	var took durations
	for i := range n {
		resp, err := client.Post(urls[i%len(urls)], "application/json", bytes.NewReader(event("bench", i)))
		if err != nil {
			log.Fatalf("fleet latency: %v", err)
		}
		var a struct{ ID string }
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		acked := time.Now()
		if resp.StatusCode != 202 || json.Unmarshal(b, &a) != nil {
			log.Fatalf("fleet latency: ingest answered %d %s", resp.StatusCode, b)
		}
		at, ok := ls.wait(a.ID, 30*time.Second)
		if !ok {
			log.Fatalf("fleet latency: event %s not delivered in 30s", a.ID)
		}
		took = append(took, max(at.Sub(acked), 0))
		// An idle pause: the fleet goes back to waiting between events.
		time.Sleep(50 * time.Millisecond)
	}
	rows = append(rows, row{scenario: fmt.Sprintf("202 to endpoint, idle (%s)", c), rps: float64(n), perSecond: "events",
		p50: took.pct(50), p99: took.pct(99), note: "time from the 202 to the endpoint receiving the event"})
}

func newSchema(base string) string {
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

// postSpread posts n events, spread evenly over the sidecars.
func postSpread(urls []string, n int) int64 {
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for i, u := range urls {
		share := n / len(urls)
		if i == 0 {
			share += n % len(urls)
		}
		wg.Add(1)
		go func() { defer wg.Done(); accepted.Add(post(u, "bench", share)) }()
	}
	wg.Wait()
	return accepted.Load()
}

// postFor posts from -connections goroutines, spread over the sidecars,
// for d, and returns how many got 202 and their latencies.
func postFor(urls []string, d time.Duration) (int64, durations) {
	var ok atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns}}
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var all durations
	var wg sync.WaitGroup
	for i := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine durations
			u := urls[i%len(urls)]
			for n := 0; time.Now().Before(deadline); n++ {
				t0 := time.Now()
				resp, err := client.Post(u, "application/json", bytes.NewReader(event("bench", n)))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 202 {
					ok.Add(1)
					mine = append(mine, time.Since(t0))
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ok.Load(), all
}

type durations []time.Duration

func (d durations) pct(p int) string {
	if len(d) == 0 {
		return ""
	}
	s := slices.Clone(d)
	slices.Sort(s)
	v := s[min(len(s)-1, len(s)*p/100)]
	return fmt.Sprintf("%.2f ms", float64(v)/float64(time.Millisecond))
}

// latencySink is an endpoint that records when each webhook-id arrived.
type latencySink struct {
	srv *http.Server
	url string
	mu  sync.Mutex
	at  map[string]time.Time
}

func newLatencySink() *latencySink {
	s := &latencySink{at: map[string]time.Time{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	s.url = "http://" + l.Addr().String() + "/hook"
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		if _, ok := s.at[r.Header.Get("webhook-id")]; !ok {
			s.at[r.Header.Get("webhook-id")] = now
		}
		s.mu.Unlock()
		w.WriteHeader(204)
	})}
	go s.srv.Serve(l)
	return s
}

func (s *latencySink) wait(id string, max time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		at, ok := s.at[id]
		s.mu.Unlock()
		if ok {
			return at, true
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, false
}

func (s *latencySink) close() { s.srv.Close() }
