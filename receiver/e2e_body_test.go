package receiver_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

const slowBodyCaddyfile = `{
	admin {ADMIN}
}

http://127.0.0.1:{PORT} {
	handle /slow {
		webhook_verify {
			secret {env.E2E_SECRET}
			read_timeout 5m
		}
		reverse_proxy {BACKEND}
	}
	handle /stall {
		webhook_verify {
			secret {env.E2E_SECRET}
			read_timeout 1s
		}
		reverse_proxy {BACKEND}
	}
}
`

// TestSlowBodies runs the built Caddy against clients that declare bodies
// they do not send: the handler decides on the headers first, takes memory
// only for bytes that arrived, and gives up on a body after read_timeout.
func TestSlowBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Caddy process")
	}
	be := testkit.NewRecorder(t)
	p, addr, _ := startCaddy(t, slowBodyCaddyfile, be.Addr(), "E2E_SECRET=slow body secret")
	head := func(path string, length int, extra string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n",
			path, addr, length, extra)
	}
	// Well formed, so it passes the header check; it never gets to match.
	validLooking := "X-Signature: " + strings.Repeat("0", 64) + "\r\n"

	t.Run("no signature header: 401 at once, without the body", func(t *testing.T) {
		conn := dial(t, addr)
		if _, err := io.WriteString(conn, head("/slow", 1_000_000, "")); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(conn)
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("no answer before the body was sent: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte(`"error":"missing header X-Signature"`)) {
			t.Fatalf("answered %d %s, want 401 with a JSON error naming X-Signature", resp.StatusCode, body)
		}
		if !resp.Close {
			t.Error("answered without Connection: close")
		}
		if _, err := rd.ReadByte(); err != io.EOF {
			t.Errorf("after the 401 the connection gave %v, want EOF", err)
		}
		if be.Count("") != 0 {
			t.Fatal("the request reached the backend")
		}
	})

	t.Run("a stalled body: 408 after read_timeout", func(t *testing.T) {
		conn := dial(t, addr)
		if _, err := io.WriteString(conn, head("/stall", 100, validLooking)+"{"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a stalled body: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !bytes.Contains(body, []byte(`read_timeout of 1s`)) {
			t.Fatalf("answered %d %s, want 408 with a JSON error naming read_timeout", resp.StatusCode, body)
		}
		if be.Count("") != 0 {
			t.Fatal("the request reached the backend")
		}
	})

	t.Run("400 connections declaring 1MB and sending a byte", func(t *testing.T) {
		const conns, declared = 400, 1_000_000
		before := liveHeap(t, p.Admin)
		rssBefore := rss(p.Dir)
		for range conns {
			conn := dial(t, addr)
			if _, err := io.WriteString(conn, head("/slow", declared, validLooking)+"{"); err != nil {
				t.Fatal(err)
			}
		}
		// Measure once every request is inside the handler, waiting for
		// its body.
		deadline := time.Now().Add(2 * time.Minute)
		for n := 0; n < conns; n = inHandler(t, p.Admin) {
			if time.Now().After(deadline) {
				t.Fatalf("after 2m, %d of %d requests had reached webhook_verify", n, conns)
			}
			time.Sleep(100 * time.Millisecond)
		}
		after := liveHeap(t, p.Admin)
		grew := int64(after) - int64(before)
		t.Logf("live heap %.1f MB before, %.1f MB with %d connections waiting: %+.1f MB (declared: %d MB); RSS %s before, %s after",
			mb(before), mb(after), conns, float64(grew)/1e6, conns*declared/1_000_000, rssBefore, rss(p.Dir))
		// Reserving the declared bodies would take 400 MB.
		if grew > 100e6 {
			t.Fatalf("%d connections that sent a byte each took %.0f MB of heap", conns, float64(grew)/1e6)
		}
	})
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Generous: the deadline only keeps a broken server from hanging the test.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

func mb(n uint64) float64 { return float64(n) / 1e6 }

// liveHeap reads the Caddy process's HeapAlloc after a garbage collection,
// from the admin endpoint's heap profile.
func liveHeap(t *testing.T, admin string) uint64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("the heap profile (status %d) has no HeapAlloc line", resp.StatusCode)
	return 0
}

// inHandler counts the goroutines of the Caddy process that are inside
// webhook_verify's ServeHTTP, from the admin endpoint's goroutine profile.
func inHandler(t *testing.T, admin string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Stacks come in blocks: "<count> @ <pcs>", then a "#" line per frame.
	total := 0
	for _, block := range strings.Split(string(text), "\n\n") {
		if !strings.Contains(block, "receiver.(*Handler).ServeHTTP") {
			continue
		}
		// The first block opens with the profile's own header line.
		count, _, _ := strings.Cut(block, " @ ")
		n, err := strconv.Atoi(count[strings.LastIndexByte(count, '\n')+1:])
		if err == nil {
			total += n
		}
	}
	return total
}

// rss is the resident set of the Caddy process started in dir, for the
// log; the assertion is on the heap, which counts reserved memory whether
// or not the kernel has backed it yet.
func rss(dir string) string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		cmd, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(cmd, []byte(filepath.Join(dir, "Caddyfile"))) || !bytes.Contains(cmd, []byte("run")) {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(f), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown"
}
