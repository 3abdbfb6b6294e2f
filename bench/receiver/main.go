// Command receiver measures what webhook_verify costs in front of
// reverse_proxy. It starts a fast local backend, then runs the built Caddy
// twice, (a) with plain reverse_proxy and (b) with webhook_verify and
// reverse_proxy, loads each with signed 1 KiB bodies from a fixed number of
// keep-alive connections for a fixed time, and prints req/s, p50, p99 and
// the ratio of (b) to (a).
//
//	go build -o /tmp/caddy ./caddy
//	go run ./bench/receiver -caddy /tmp/caddy -duration 10s -connections 64
//
// Everything runs on one machine, so the load generator competes with Caddy
// and the backend for CPU: compare the two runs, not the absolute numbers
// with other machines.
package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

func main() {
	caddyBin := flag.String("caddy", "", "path to the caddy binary built from ./caddy (required)")
	duration := flag.Duration("duration", 10*time.Second, "how long to load each configuration")
	conns := flag.Int("connections", 64, "concurrent keep-alive connections")
	size := flag.Int("body", 1024, "body size in bytes")
	scheme := flag.String("scheme", "x-signature", "webhook_verify scheme: x-signature or standard")
	rounds := flag.Int("rounds", 1, "alternate the two configurations this many times and report each one's median round, to even out a noisy machine")
	flag.Parse()
	if *caddyBin == "" {
		flag.Usage()
		os.Exit(2)
	}

	secret := []byte("bench-secret") // no space: it goes into the Caddyfile unquoted
	body := bytes.Repeat([]byte{'a'}, *size)

	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(backend, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))

	verify := "webhook_verify {\n\t\tsecret " + string(secret) + "\n\t\tscheme " + *scheme + "\n\t}"
	var plains, verifieds []result
	for range max(*rounds, 1) {
		plains = append(plains, run(*caddyBin, backend.Addr().String(), "", *scheme, secret, body, *duration, *conns))
		verifieds = append(verifieds, run(*caddyBin, backend.Addr().String(), verify, *scheme, secret, body, *duration, *conns))
	}
	plain, verified := median(plains), median(verifieds)

	fmt.Printf("%-32s %10s %10s %10s %8s\n", "config", "req/s", "p50", "p99", "errors")
	plain.print("reverse_proxy")
	verified.print("webhook_verify + reverse_proxy")
	fmt.Printf("ratio (verify / plain): %.2f\n", verified.rps/plain.rps)
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

// median returns the round with the median throughput.
func median(rs []result) result {
	slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.rps, b.rps) })
	return rs[len(rs)/2]
}

func (r result) print(name string) {
	fmt.Printf("%-32s %10.0f %10s %10s %8d\n", name, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors)
}

// run starts Caddy with the given handler before reverse_proxy, loads it
// and stops it.
func run(bin, backend, handler, scheme string, secret, body []byte, d time.Duration, conns int) result {
	dir, err := os.MkdirTemp("", "receiver-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	port := freePort()
	caddyfile := fmt.Sprintf(`{
	admin off
	log {
		level ERROR
	}
}

http://127.0.0.1:%d {
	%s
	reverse_proxy %s
}
`, port, handler, backend)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()

	url := fmt.Sprintf("http://127.0.0.1:%d/hook", port)
	waitReady(url)

	header := http.Header{"Content-Type": {"application/json"}}
	now := time.Now()
	switch scheme {
	case "standard":
		header.Set("webhook-id", "msg_bench")
		header.Set("webhook-timestamp", signature.StandardTimestamp(now))
		header.Set("webhook-signature", signature.StandardSign(secret, "msg_bench", now, body))
	default:
		header.Set("X-Signature", signature.XSignature(secret, body))
	}
	return load(url, header, body, d, conns)
}

// load posts body from conns workers, each on its own keep-alive
// connection, until d has passed.
func load(url string, header http.Header, body []byte, d time.Duration, conns int) result {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	transport := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	defer transport.CloseIdleConnections()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		all    []time.Duration
		errors atomic.Int64
	)
	start := time.Now()
	for range conns {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header = header.Clone()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errors.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errors.Add(1)
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[int(float64(len(all)-1)*p)]
	}
	return result{
		rps:    float64(len(all)) / elapsed.Seconds(),
		p50:    pct(0.50),
		p99:    pct(0.99),
		errors: errors.Load(),
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitReady waits until Caddy answers on url at all (any status).
func waitReady(url string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatalf("caddy did not answer on %s", url)
}
