package receiver_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testcaddy"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

const fleetCaddyfile = `{
	admin {ADMIN}
}

http://:{PORT} {
	bind 127.0.0.1
	handle /hook* {
		webhook_verify {
			secret {env.E2E_SECRET}
			scheme standard
			replay_window 1h
			replay_storage {env.E2E_REPLAY_DSN}
		}
		reverse_proxy {BACKEND}
	}
}
`

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// tcpProxy stands between the receivers and PostgreSQL, so the test can
// take the database away from them, and give it back, as an outage would.
type tcpProxy struct {
	target string
	addr   string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]bool
}

func (p *tcpProxy) start(t *testing.T) {
	t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.l, p.addr = l, l.Addr().String()
	if p.conns == nil {
		p.conns = map[net.Conn]bool{}
	}
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *tcpProxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// stop refuses new connections and cuts the open ones.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.l.Close()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// TestFleetReplayStorage runs two Caddy processes whose webhook_verify
// share a replay window in PostgreSQL: what one forwarded, the other
// answers as a duplicate, and without the database neither forwards.
func TestFleetReplayStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Caddy processes and PostgreSQL")
	}
	const password = "fleet-password-never-logged"
	direct, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := &tcpProxy{target: direct.Host}
	proxy.start(t)
	defer proxy.stop()
	dsn := *direct
	dsn.Host = proxy.addr
	// The test server trusts local connections, so the password is never
	// asked for; it is there to be looked for in the logs.
	dsn.User = url.UserPassword(direct.User.Username(), password)

	be := testkit.NewRecorder(t)
	received := func(testkit.Request, int) (int, string) { return http.StatusOK, `{"received":true}` }
	be.SetRespond(received)
	// seen counts the deliveries the backend got of an event (by webhook-id).
	seen := func(id string) int {
		n := 0
		for _, r := range be.Requests("") {
			if r.Header.Get("webhook-id") == id {
				n++
			}
		}
		return n
	}

	secret := []byte("fleet secret")
	start := func() (*testcaddy.Process, string, string) {
		return startCaddy(t, fleetCaddyfile, be.Addr(), "E2E_SECRET="+string(secret), "E2E_REPLAY_DSN="+dsn.String())
	}
	a, addrA, configA := start()
	b, addrB, _ := start()

	client := testkit.Client()
	type answer struct {
		status int
		header http.Header
		body   string
	}
	deliver := func(addr, host, path, id string) answer {
		t.Helper()
		body := []byte(`{"event":"job_created","data":{"appId":"a"}}`)
		now := time.Now()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", signature.StandardTimestamp(now))
		req.Header.Set("webhook-signature", signature.StandardSign(secret, id, now, body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header, strings.TrimSpace(string(got))}
	}
	isDuplicate := func(a answer) bool {
		return a.status == 200 && a.header.Get("Webhook-Duplicate") == "true" && a.body == `{"duplicate":true}`
	}

	t.Run("forwarded by one, a duplicate to the other", func(t *testing.T) {
		if got := deliver(addrA, "localhost:"+portOf(addrA), "/hook", "evt_1"); got.status != 200 || got.header.Get("Webhook-Duplicate") != "" {
			t.Fatalf("first delivery: %d %v %s", got.status, got.header, got.body)
		}
		// The other receiver listens on another port; the host is the same.
		for _, spelling := range [][2]string{
			{"localhost:" + portOf(addrB), "/hook"},
			{"LOCALHOST:" + portOf(addrB), "/hook"},
			{"Localhost:" + portOf(addrB), "/hook"},
			{"localhost", "/hook"},
			{"localhost", "/hook/"},
			{"localhost", "/HOOK"},
			{"localhost", "/hook;x"},
		} {
			if got := deliver(addrB, spelling[0], spelling[1], "evt_1"); !isDuplicate(got) {
				t.Fatalf("host %q path %q at the other receiver: %d %v %s; want 200, Webhook-Duplicate: true, {\"duplicate\":true}",
					spelling[0], spelling[1], got.status, got.header, got.body)
			}
		}
		if n := seen("evt_1"); n != 1 {
			t.Fatalf("the backend saw evt_1 %d times, want once", n)
		}
	})

	t.Run("in flight at one, 409 at the other", func(t *testing.T) {
		// The backend holds evt_slow until released, to keep it in flight.
		held, release := make(chan struct{}), make(chan struct{})
		be.SetRespond(func(r testkit.Request, nth int) (int, string) {
			if r.Header.Get("webhook-id") == "evt_slow" {
				close(held)
				<-release
			}
			return received(r, nth)
		})
		first := make(chan answer, 1)
		go func() { first <- deliver(addrA, "", "/hook", "evt_slow") }()
		<-held
		got := deliver(addrB, "", "/hook", "evt_slow")
		close(release)
		if got.status != http.StatusConflict || got.header.Get("Retry-After") == "" {
			t.Fatalf("a copy while the first is in flight at the other receiver: %d %v, want 409 with Retry-After", got.status, got.header)
		}
		if got := <-first; got.status != 200 {
			t.Fatalf("first delivery: %d", got.status)
		}
		if got := deliver(addrB, "", "/hook", "evt_slow"); !isDuplicate(got) {
			t.Fatalf("after the first was answered: %d %v", got.status, got.header)
		}
		if n := seen("evt_slow"); n != 1 {
			t.Fatalf("the backend saw evt_slow %d times, want once", n)
		}
	})

	t.Run("a reload keeps the shared window", func(t *testing.T) {
		if err := a.Reload(configA + "\n"); err != nil {
			t.Fatal(err)
		}
		if got := deliver(addrA, "", "/hook", "evt_slow"); !isDuplicate(got) {
			t.Fatalf("after a reload: %d %v", got.status, got.header)
		}
	})

	t.Run("database down: 503, nothing forwarded", func(t *testing.T) {
		proxy.stop()
		for _, addr := range []string{addrA, addrB} {
			got := deliver(addr, "", "/hook", "evt_down")
			if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" ||
				got.body != `{"error":"replay store unavailable"}` {
				t.Fatalf("with the database down: %d %v %s; want 503 with Retry-After and a JSON error", got.status, got.header, got.body)
			}
		}
		// Not even a delivery already seen: without the database, this
		// receiver cannot tell.
		if got := deliver(addrB, "", "/hook", "evt_1"); got.status != http.StatusServiceUnavailable {
			t.Fatalf("a known delivery with the database down: %d", got.status)
		}
		if n := seen("evt_down"); n != 0 {
			t.Fatalf("with the database down the backend saw %d deliveries", n)
		}
	})

	t.Run("database back: forwarded once", func(t *testing.T) {
		proxy.start(t)
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := deliver(addrA, "", "/hook", "evt_down")
			if got.status == 200 && got.header.Get("Webhook-Duplicate") == "" {
				break
			}
			if got.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("after the database came back: %d %v %s", got.status, got.header, got.body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		deadline = time.Now().Add(60 * time.Second)
		for {
			got := deliver(addrB, "", "/hook", "evt_down")
			if isDuplicate(got) {
				break
			}
			if got.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("the other receiver after the database came back: %d %v %s", got.status, got.header, got.body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if n := seen("evt_down"); n != 1 {
			t.Fatalf("the backend saw evt_down %d times, want once", n)
		}
	})

	for _, p := range []*testcaddy.Process{a, b} {
		if strings.Contains(p.Logs(), password) {
			t.Errorf("a Caddy log shows the DSN's password:\n%s", p.Logs())
		}
	}
}
