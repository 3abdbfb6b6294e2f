// Command harness runs the benchmark scenarios of bench/run: it starts real
// Caddy processes on loopback, loads them with wrk or its own poster, and
// prints requests/s, latency, CPU seconds, peak RSS and the ratio to plain
// Caddy measured in the same run.
package main

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

var (
	caddyBin  = flag.String("caddy", "bench/out/caddy", "Caddy binary built from ./caddy")
	duration  = flag.Duration("duration", 10*time.Second, "wrk duration per load scenario")
	conns     = flag.Int("connections", 64, "concurrent keep-alive connections")
	backlog   = flag.Int("backlog", 100_000, "deliveries in the drain scenario")
	pending   = flag.Int("pending", 1_000_000, "deliveries waiting in the memory scenario")
	soakFor   = flag.Duration("soak", 10*time.Minute, "soak duration (at most 10m)")
	soakRate  = flag.Int("soak-rate", 500, "events per second during the soak")
	keepTemps = flag.Bool("keep", false, "keep temporary directories")
	profDir   = flag.String("profile", "", "save CPU and heap profiles of the sidecar into this directory")
	holdSink  = flag.Bool("hold", false, "ingest scenario: hold deliveries (endpoint closed) to measure ingest alone")
	goMemLim  = flag.String("gomemlimit", "", "GOMEMLIMIT of the Caddy processes (e.g. 160MiB); default none")
	mapped    = flag.String("mapped-release", "", "storage badger's mapped_release_interval for sidecars (e.g. off, 1s); default the store's")
	attemptTO = flag.Duration("timeout", 10*time.Minute, "sidecars' attempt timeout: long, so that attempts a closed endpoint holds do not fail")
)

type row struct {
	scenario  string
	rps       float64
	p50, p99  string
	cpu       float64
	rssMB     float64
	ratio     string
	note      string
	baseline  bool
	perSecond string // unit of rps
}

var rows []row

func main() {
	log.SetFlags(log.Ltime)
	flag.Parse()
	scen := flag.Args()
	if len(scen) == 0 {
		scen = []string{"ingest", "receiver", "e2e", "fanout", "memory"}
	}
	for _, s := range scen {
		before := len(rows)
		switch s {
		case "ingest":
			benchIngest()
		case "receiver":
			benchReceiver()
		case "e2e":
			benchE2E()
		case "fanout":
			benchFanout()
		case "memory":
			benchMemory()
		case "soak":
			soak()
		case "hygiene":
			hygiene()
		case "fleet":
			fleet()
		case "crashloop":
			crashloop()
		default:
			log.Fatalf("unknown scenario %q", s)
		}
		for _, r := range rows[before:] {
			log.Printf("result: %s: %.0f %s, p50 %s, p99 %s, CPU %.1fs, peak RSS %.0f MB, %s %s", r.scenario, r.rps, r.perSecond, r.p50, r.p99, r.cpu, r.rssMB, r.ratio, r.note)
		}
	}
	printTable()
	printTargets()
}

func printTable() {
	if len(rows) == 0 {
		return
	}
	out, _ := exec.Command("sh", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; free -g | awk '/Mem:/{print $2}'").Output()
	f := strings.Fields(strings.ReplaceAll(string(out), "\n", " | "))
	fmt.Printf("\nmachine: %s\n\n", strings.Join(f, " "))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| scenario\t| rate\t| p50\t| p99\t| CPU s\t| peak RSS MB\t| vs plain Caddy\t| note\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range rows {
		unit := r.perSecond
		if unit == "" {
			unit = "req/s"
		}
		fmt.Fprintf(tw, "| %s\t| %.0f %s\t| %s\t| %s\t| %.1f\t| %.0f\t| %s\t| %s\t|\n", r.scenario, r.rps, unit, r.p50, r.p99, r.cpu, r.rssMB, r.ratio, r.note)
	}
	tw.Flush()
}

// ---- processes ----

type caddyProc struct {
	cmd   *exec.Cmd
	admin string
	dir   string
	logs  bytes.Buffer
}

func freePort() int {
	port, err := testkit.LoopbackPort()
	if err != nil {
		log.Fatal(err)
	}
	return port
}

func startCaddy(name, caddyfile string) *caddyProc {
	dir, err := os.MkdirTemp("", "bench-"+name+"-")
	if err != nil {
		log.Fatal(err)
	}
	return startCaddyIn(name, caddyfile, dir)
}

// startCaddyIn starts Caddy in dir, which may hold a store from an earlier
// process (a restart).
func startCaddyIn(name, caddyfile, dir string) *caddyProc {
	admin := fmt.Sprintf("127.0.0.1:%d", freePort())
	text := strings.NewReplacer("{ADMIN}", admin, "{DIR}", dir).Replace(caddyfile)
	cf := filepath.Join(dir, "Caddyfile")
	os.WriteFile(cf, []byte(text), 0o644)
	p := &caddyProc{admin: admin, dir: dir}
	p.cmd = exec.Command(*caddyBin, "run", "--config", cf, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir+"/data", "XDG_CONFIG_HOME="+dir+"/config", "GOMAXPROCS=2")
	if *goMemLim != "" {
		p.cmd.Env = append(p.cmd.Env, "GOMEMLIMIT="+*goMemLim)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + admin + "/config/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 300 {
			log.Fatalf("%s did not start:\n%s", name, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *caddyProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	if !*keepTemps {
		os.RemoveAll(p.dir)
	}
}

// saveProfile fetches a pprof profile from the admin endpoint.
func (p *caddyProc) saveProfile(kind, name string) {
	if *profDir == "" {
		return
	}
	os.MkdirAll(*profDir, 0o755)
	resp, err := http.Get("http://" + p.admin + "/debug/pprof/" + kind)
	if err != nil {
		log.Printf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, _ := os.Create(filepath.Join(*profDir, name))
	defer f.Close()
	io.Copy(f, resp.Body)
}

// cpuSeconds is user+system time of the process so far.
func (p *caddyProc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// status reads a kB field of /proc/pid/status (VmHWM is peak RSS).
func (p *caddyProc) status(field string) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return v / 1024
		}
	}
	return 0
}

func dirMB(dir string) float64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return float64(n) / (1 << 20)
}

// ---- load ----

type wrkResult struct {
	rps      float64
	p50, p99 string
	non2xx   int
	total    int
}

var (
	reRPS   = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reP50   = regexp.MustCompile(`\n\s+50%\s+(\S+)`)
	reP99   = regexp.MustCompile(`\n\s+99%\s+(\S+)`)
	reNon   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reTotal = regexp.MustCompile(`(\d+) requests in`)
)

// wrk POSTs body to url with headers for the configured duration.
func wrk(url string, body []byte, headers map[string]string) wrkResult {
	lua, _ := os.CreateTemp("", "wrk-*.lua")
	defer os.Remove(lua.Name())
	fmt.Fprintf(lua, "wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
	for k, v := range headers {
		fmt.Fprintf(lua, "wrk.headers[%q] = %q\n", k, v)
	}
	lua.Close()
	out, err := exec.Command("wrk", "-t2", fmt.Sprintf("-c%d", *conns), "-d"+duration.String(), "--latency", "-s", lua.Name(), url).CombinedOutput()
	if err != nil {
		log.Fatalf("wrk: %v\n%s", err, out)
	}
	s := string(out)
	var r wrkResult
	if m := reRPS.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reP50.FindStringSubmatch(s); m != nil {
		r.p50 = m[1]
	}
	if m := reP99.FindStringSubmatch(s); m != nil {
		r.p99 = m[1]
	}
	if m := reNon.FindStringSubmatch(s); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	if m := reTotal.FindStringSubmatch(s); m != nil {
		r.total, _ = strconv.Atoi(m[1])
	}
	return r
}

func measure(name string, p *caddyProc, url string, body []byte, headers map[string]string) (row, wrkResult) {
	log.Printf("%s: %s for %v at %d connections", name, url, *duration, *conns)
	c0 := p.cpuSeconds()
	r := wrk(url, body, headers)
	rw := row{scenario: name, rps: r.rps, p50: r.p50, p99: r.p99, cpu: p.cpuSeconds() - c0, rssMB: p.status("VmHWM")}
	if r.non2xx > 0 {
		rw.note = fmt.Sprintf("%d of %d not 2xx", r.non2xx, r.total)
	}
	return rw, r
}

func ratio(r, base float64) string { return fmt.Sprintf("%.0f%%", 100*r/base) }

// event is a ~1 KiB event body.
func event(app string, n int) []byte {
	pad := strings.Repeat("x", 1024-90-len(app))
	return []byte(fmt.Sprintf(`{"event":"job_finished","data":{"appId":%q,"n":%d,"pad":%q}}`, app, n, pad))
}

// ---- sink: the webhook endpoint ----

type sink struct {
	srv      *http.Server
	url      string
	count    atomic.Int64
	mu       sync.Mutex
	first    time.Time
	last     time.Time
	open     chan struct{}
	openOnce sync.Once
}

// newSink starts an endpoint; a closed sink holds requests until opened.
func newSink(open bool) *sink {
	s := &sink{open: make(chan struct{})}
	if open {
		s.release()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	s.url = "http://" + l.Addr().String() + "/hook"
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-s.open
		now := time.Now()
		s.mu.Lock()
		if s.first.IsZero() {
			s.first = now
		}
		s.last = now
		s.mu.Unlock()
		s.count.Add(1)
		w.WriteHeader(204)
	})}
	go s.srv.Serve(l)
	return s
}

func (s *sink) release() { s.openOnce.Do(func() { close(s.open) }) }
func (s *sink) close()   { s.release(); s.srv.Close() }

func (s *sink) waitFor(n int64, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for s.count.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// sidecarConfig is a sidecar on a Badger directory of its own; extra
// lines go inside the webhooks option, where a storage line replaces it.
func sidecarConfig(extra string) string {
	storage := "storage {DIR}/webhooks"
	if *mapped != "" {
		storage = "storage badger {\n\t\t\tpath {DIR}/webhooks\n\t\t\tmapped_release_interval " + *mapped + "\n\t\t}"
	}
	return `{
	admin {ADMIN}
	webhooks {
		` + storage + `
		allow_destinations 127.0.0.0/8
		timeout ` + attemptTO.String() + `
		retry_schedule 1s 5s 30s
		` + extra + `
	}
}
http://127.0.0.1:{PORT} {
	webhook_events
}
`
}

func startSidecar(name, extra string) (*caddyProc, string) {
	port := freePort()
	p := startCaddy(name, strings.ReplaceAll(sidecarConfig(extra), "{PORT}", strconv.Itoa(port)))
	return p, fmt.Sprintf("http://127.0.0.1:%d/", port)
}

func createWebhook(p *caddyProc, app, url string) {
	body, _ := json.Marshal(map[string]any{"name": "bench", "url": url, "events": []string{"job_finished"}, "secret": "bench-secret"})
	resp, err := http.Post("http://"+p.admin+"/webhooks/apps/"+app+"/webhooks", "application/json", bytes.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		b, _ := io.ReadAll(resp.Body)
		log.Fatalf("creating webhook: %d %s", resp.StatusCode, b)
	}
}

// post sends n events from conns goroutines and returns how many got a
// 2xx answer (202 from ingest, the endpoint's 204 through a proxy).
func post(url, app string, n int) int64 {
	var next, ok atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns}}
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				resp, err := client.Post(url, "application/json", bytes.NewReader(event(app, int(i))))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return ok.Load()
}

// ---- scenarios ----

func benchIngest() {
	port := freePort()
	plain := startCaddy("respond", fmt.Sprintf("{\n\tadmin {ADMIN}\n}\nhttp://127.0.0.1:%d {\n\trespond \"ok\" 200\n}\n", port))
	base, _ := measure("plain respond", plain, fmt.Sprintf("http://127.0.0.1:%d/", port), event("bench", 1), nil)
	plain.stop()
	base.baseline = true
	rows = append(rows, base)

	delivering := ingestOnce("ingest (webhook_events, fsync, 1 webhook, delivered meanwhile)", !*holdSink, "ingest.cpu", base.rps)
	ratioTarget("ingest while delivering to one webhook", delivering, base.rps, 0.35, "plain respond")
	held := ingestOnce("ingest (webhook_events, fsync, 1 webhook, deliveries held)", false, "ingest-held.cpu", base.rps)
	ratioTarget("ingest with deliveries held", held, base.rps, 0.50, "plain respond")
}

// ingestOnce measures ingest into a sidecar whose endpoint is open or
// holds every delivery until the load ends; every accepted event must then
// be delivered.
func ingestOnce(name string, open bool, profile string, base float64) float64 {
	sk := newSink(open)
	defer sk.close()
	p, url := startSidecar("ingest", "")
	defer p.stop()
	createWebhook(p, "bench", sk.url)
	go p.saveProfile(fmt.Sprintf("profile?seconds=%d", int(duration.Seconds())-2), profile)
	r, w := measure(name, p, url, event("bench", 1), nil)
	r.ratio = ratio(r.rps, base)
	accepted := int64(w.total - w.non2xx)
	sk.release()
	ok := sk.waitFor(accepted, 5*time.Minute)
	r.note = strings.TrimSpace(r.note + fmt.Sprintf(" %d accepted, %d delivered", accepted, sk.count.Load()))
	if !ok {
		r.note += " (not all delivered in 5m)"
	}
	rows = append(rows, r)
	return r.rps
}

// benchReceiver alternates plain reverse_proxy and webhook_verify in front
// of it three times and compares the medians, since one run of each moves
// by several percent with the machine.
func benchReceiver() {
	bport := freePort()
	backend := startCaddy("backend", fmt.Sprintf("{\n\tadmin {ADMIN}\n}\nhttp://127.0.0.1:%d {\n\trespond \"ok\" 200\n}\n", bport))
	defer backend.stop()
	body := event("bench", 1)
	mac := hmac.New(sha256.New, []byte("bench-secret"))
	mac.Write(body)
	sig := hex.EncodeToString(mac.Sum(nil))

	var plainRuns, verifyRuns []row
	for i := range 3 {
		port := freePort()
		plain := startCaddy("proxy", fmt.Sprintf("{\n\tadmin {ADMIN}\n}\nhttp://127.0.0.1:%d {\n\treverse_proxy 127.0.0.1:%d\n}\n", port, bport))
		if i == 0 {
			go plain.saveProfile(fmt.Sprintf("profile?seconds=%d", int(duration.Seconds())-2), "proxy.cpu")
		}
		r, _ := measure(fmt.Sprintf("plain reverse_proxy (run %d)", i+1), plain, fmt.Sprintf("http://127.0.0.1:%d/", port), body, nil)
		plain.stop()
		plainRuns = append(plainRuns, r)

		port = freePort()
		v := startCaddy("verify", fmt.Sprintf("{\n\tadmin {ADMIN}\n}\nhttp://127.0.0.1:%d {\n\twebhook_verify {\n\t\tsecret bench-secret\n\t}\n\treverse_proxy 127.0.0.1:%d\n}\n", port, bport))
		if i == 0 {
			go v.saveProfile(fmt.Sprintf("profile?seconds=%d", int(duration.Seconds())-2), "receiver.cpu")
		}
		r, _ = measure(fmt.Sprintf("webhook_verify + reverse_proxy (run %d)", i+1), v, fmt.Sprintf("http://127.0.0.1:%d/", port), body, map[string]string{"X-Signature": sig})
		v.stop()
		verifyRuns = append(verifyRuns, r)
	}
	base, r := median(plainRuns), median(verifyRuns)
	base.scenario, base.baseline = "plain reverse_proxy to a respond Caddy (median of 3)", true
	r.scenario, r.ratio = "webhook_verify (x-signature) + reverse_proxy (median of 3)", ratio(r.rps, base.rps)
	r.note = strings.TrimSpace(fmt.Sprintf("runs %.0f / %.0f / %.0f vs %.0f / %.0f / %.0f req/s %s",
		verifyRuns[0].rps, verifyRuns[1].rps, verifyRuns[2].rps, plainRuns[0].rps, plainRuns[1].rps, plainRuns[2].rps, r.note))
	rows = append(rows, base, r)
	ratioTarget("receiver, median of three", r.rps, base.rps, 0.95, "plain reverse_proxy")
}

// median is the run with the median rate.
func median(runs []row) row {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b row) int { return cmp.Compare(a.rps, b.rps) })
	return s[len(s)/2]
}

// benchE2E measures deliveries per second end to end (post, commit,
// deliver) and the drain of a backlog held by a closed endpoint.
func benchE2E() {
	n := *backlog
	// The baseline: the same poster and endpoint, through plain Caddy's
	// reverse_proxy, which makes the same HTTP legs a delivery does.
	sk := newSink(true)
	port := freePort()
	proxy := startCaddy("proxy", fmt.Sprintf("{\n\tadmin {ADMIN}\n}\nhttp://127.0.0.1:%d {\n\treverse_proxy %s\n}\n", port, strings.TrimSuffix(strings.TrimPrefix(sk.url, "http://"), "/hook")))
	log.Printf("e2e: posting %d events through plain reverse_proxy", n)
	c0 := proxy.cpuSeconds()
	start := time.Now()
	proxied := post(fmt.Sprintf("http://127.0.0.1:%d/hook", port), "bench", n)
	took := time.Since(start)
	base := row{scenario: fmt.Sprintf("plain reverse_proxy to the endpoint, %d events", n), rps: float64(proxied) / took.Seconds(), perSecond: "req/s",
		cpu: proxy.cpuSeconds() - c0, rssMB: proxy.status("VmHWM"), baseline: true, note: fmt.Sprintf("%d proxied in %.1fs", proxied, took.Seconds())}
	rows = append(rows, base)
	proxy.stop()
	sk.close()

	// With the default max_in_flight_per_webhook of 8 the one endpoint
	// sees 8 requests at a time; at 64 it sees as many as the proxy sends.
	e2e := e2eOnce(fmt.Sprintf("end to end, %d events, endpoint up", n), "", "e2e.cpu", base.rps)
	wide := e2eOnce(fmt.Sprintf("end to end, %d events, endpoint up, max_in_flight_per_webhook 64", n), "max_in_flight_per_webhook 64", "e2e-64.cpu", base.rps)
	ratioTarget("end to end (max_in_flight_per_webhook 8, the default)", e2e, base.rps, 0.80, "plain reverse_proxy to the same endpoint")
	ratioTarget("end to end (max_in_flight_per_webhook 64, the proxy's concurrency)", wide, base.rps, 0.80, "plain reverse_proxy to the same endpoint")

	sk = newSink(false)
	defer sk.close()
	p, url := startSidecar("drain", "")
	defer p.stop()
	createWebhook(p, "bench", sk.url)
	log.Printf("drain: queueing %d deliveries behind a closed endpoint", n)
	accepted := post(url, "bench", n)
	c0 = p.cpuSeconds()
	start = time.Now()
	go p.saveProfile("profile?seconds=5", "drain.cpu")
	sk.release()
	sk.waitFor(accepted, 5*time.Minute)
	took = time.Since(start)
	rows = append(rows, row{scenario: fmt.Sprintf("drain of a %d backlog", n), rps: float64(sk.count.Load()) / took.Seconds(), perSecond: "deliveries/s",
		cpu: p.cpuSeconds() - c0, rssMB: p.status("VmHWM"), note: fmt.Sprintf("%d delivered in %.1fs", sk.count.Load(), took.Seconds())})
}

// e2eOnce posts the backlog's worth of events to a sidecar with one
// webhook on a live endpoint and returns deliveries/s until the last one.
func e2eOnce(name, extra, profile string, base float64) float64 {
	n := *backlog
	sk := newSink(true)
	defer sk.close()
	p, url := startSidecar("e2e", extra)
	defer p.stop()
	createWebhook(p, "bench", sk.url)
	log.Printf("%s", name)
	go p.saveProfile("profile?seconds=8", profile)
	c0 := p.cpuSeconds()
	start := time.Now()
	accepted := post(url, "bench", n)
	sk.waitFor(accepted, 5*time.Minute)
	took := time.Since(start)
	rate := float64(sk.count.Load()) / took.Seconds()
	rows = append(rows, row{scenario: name, rps: rate, perSecond: "deliveries/s", ratio: ratio(rate, base),
		cpu: p.cpuSeconds() - c0, rssMB: p.status("VmHWM"), note: fmt.Sprintf("%d accepted, %d delivered in %.1fs", accepted, sk.count.Load(), took.Seconds())})
	return rate
}

func benchFanout() {
	for _, k := range []int{1, 10, 100} {
		events := 100_000 / k
		if events > 30_000 {
			events = 30_000
		}
		sk := newSink(true)
		p, url := startSidecar(fmt.Sprintf("fanout%d", k), "")
		for range k {
			createWebhook(p, "fan", sk.url)
		}
		log.Printf("fanout: %d events to %d webhooks", events, k)
		if k == 100 {
			go p.saveProfile("profile?seconds=8", "fanout100.cpu")
		}
		c0 := p.cpuSeconds()
		start := time.Now()
		accepted := post(url, "fan", events)
		sk.waitFor(accepted*int64(k), 5*time.Minute)
		took := time.Since(start)
		rate := float64(sk.count.Load()) / took.Seconds()
		rows = append(rows, row{scenario: fmt.Sprintf("fan-out to %d webhooks", k), rps: rate, perSecond: "deliveries/s",
			cpu: p.cpuSeconds() - c0, rssMB: p.status("VmHWM"), note: fmt.Sprintf("%d events, %d delivered in %.1fs", accepted, sk.count.Load(), took.Seconds())})
		if k == 100 {
			addTarget("fan-out to 100 webhooks", "≥ 25,000 deliveries/s", fmt.Sprintf("%.0f deliveries/s", rate), rate >= 25_000)
		}
		p.stop()
		sk.close()
	}
}

// benchMemory holds many deliveries behind a closed endpoint, reports the
// peak RSS, then opens the endpoint and times the drain.
func benchMemory() {
	n := *pending
	sk := newSink(false)
	defer sk.close()
	p, url := startSidecar("memory", "")
	defer p.stop()
	createWebhook(p, "bench", sk.url)
	log.Printf("memory: queueing %d deliveries behind a closed endpoint", n)
	start := time.Now()
	sampler := sampleRSS(p, 250*time.Millisecond)
	accepted := post(url, "bench", n)
	ingestTook := time.Since(start)
	peak, anon, file := sampler.end()
	rssPending := p.status("VmHWM")
	p.saveProfile("heap", "memory-pending.heap")
	disk := dirMB(p.dir)
	sk.release()
	start = time.Now()
	sampler = sampleRSS(p, 250*time.Millisecond)
	sk.waitFor(accepted, 10*time.Minute)
	took := time.Since(start)
	drainPeak, drainAnon, drainFile := sampler.end()
	addTarget(fmt.Sprintf("peak RSS with %d pending", n), "< 256 MB", peak.String(), peak.total < 256)
	rows = append(rows, row{scenario: fmt.Sprintf("%d pending, then drained", n), rps: float64(sk.count.Load()) / took.Seconds(), perSecond: "deliveries/s",
		rssMB: p.status("VmHWM"), cpu: p.cpuSeconds(),
		note: fmt.Sprintf("ingest %.0f/s; while pending: VmHWM %.0f MB, peak RSS %s, peak anonymous %.0f MB, peak file-backed %.0f MB; "+
			"%.0f MB on disk; %d delivered in %.0fs; while draining: peak RSS %s, peak anonymous %.0f MB, peak file-backed %.0f MB",
			float64(accepted)/ingestTook.Seconds(), rssPending, peak, anon, file, disk, sk.count.Load(), took.Seconds(), drainPeak, drainAnon, drainFile)})
}
