package receiver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestReplayKeySpellings(t *testing.T) {
	const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	want := newReplayKey("localhost:8080", "/hook", id)
	for _, tc := range []struct{ host, path string }{
		{"LOCALHOST:8080", "/hook"},
		{"Localhost:8080", "/hook"},
		{"localhost", "/hook"},
		{"localhost:443", "/hook"},
		{"localhost.", "/hook"},
		{"localhost.:8080", "/hook"},
		{"localhost:", "/hook"},
		{"localhost", "/hook/"},
		{"localhost", "/HOOK"},
		{"localhost", "/Hook/"},
		{"localhost", "/hook;x"},
		{"localhost", "/hook;jsessionid=1/"},
		{"localhost", "//hook"},
		{"localhost", "/./hook"},
		{"localhost", "/a/../hook"},
		{"localhost", "/a;x/..;y/hook"},
		{"localhost", "hook"},
		{"localhost", "/hook/."},
	} {
		if got := newReplayKey(tc.host, tc.path, id); got != want {
			t.Errorf("host %q path %q: keyed as another delivery than localhost:8080 /hook (host %q, path %q)",
				tc.host, tc.path, normalHost(tc.host), normalPath(tc.path))
		}
	}

	want = newReplayKey("[::1]:8080", "/hook", id)
	for _, host := range []string{"[::1]", "::1", "[0:0::1]:443", "[0000::0001]", "[::1%25lo]:8080"} {
		if newReplayKey(host, "/hook", id) != want {
			t.Errorf("host %q keyed apart from [::1] (as %q)", host, normalHost(host))
		}
	}
	want = newReplayKey("127.0.0.1", "/hook", id)
	for _, host := range []string{"127.0.0.1:8080", "[::ffff:127.0.0.1]:8080", "127.0.0.1."} {
		if newReplayKey(host, "/hook", id) != want {
			t.Errorf("host %q keyed apart from 127.0.0.1 (as %q)", host, normalHost(host))
		}
	}

	// Other endpoints and other ids stay other deliveries.
	base := newReplayKey("example.com", "/hook", id)
	for _, tc := range []struct{ host, path, id string }{
		{"example.org", "/hook", id},
		{"example.com", "/hook2", id},
		{"example.com", "/hook/a", id},
		{"example.com", "/", id},
		{"example.com", "/hook", id + "x"},
		{"example.com", "/hook", strings.ToLower(id)},
		// The parts do not run together.
		{"example.com/hook", "", id},
		{"example.com", "/hook" + id, ""},
	} {
		if newReplayKey(tc.host, tc.path, tc.id) == base {
			t.Errorf("host %q path %q id %q keyed as example.com /hook %s", tc.host, tc.path, tc.id, id)
		}
	}
}

// FuzzReplayKey checks the normalisers: normalising twice changes nothing,
// and the spellings of one host or path that servers read alike normalise
// alike.
func FuzzReplayKey(f *testing.F) {
	for _, seed := range [][2]string{
		{"LOCALHOST:8080", "/hook"}, {"Localhost:8080", "/HOOK"}, {"localhost", "/hook/"},
		{"[::1]:443", "/hook;x"}, {"127.0.0.1.", "//a/./b/../c"}, {"[fe80::1%25eth0]", "/a;b/..;c/d"},
		{"example.com:", ""}, {"[x]:80", "*"}, {"a:b:c", "/%2e%2e/"}, {"İ.example", "/ſ/K"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		h, p := normalHost(host), normalPath(path)
		if again := normalHost(h); again != h {
			t.Fatalf("normalHost(%q) = %q, but normalHost(%q) = %q", host, h, h, again)
		}
		if again := normalPath(p); again != p {
			t.Fatalf("normalPath(%q) = %q, but normalPath(%q) = %q", path, p, p, again)
		}
		key := newReplayKey(host, path, "id")
		if newReplayKey(h, p, "id") != key {
			t.Fatalf("host %q path %q: the key changed once normalised", host, path)
		}

		hostVariants := []string{asciiUpper(h), h + "."}
		if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
			// With a port, an IPv6 address takes brackets.
			hostVariants = append(hostVariants, "["+h+"]", "["+asciiUpper(h)+"]:8080", "["+h+"]:")
		} else if !strings.ContainsAny(h, ":[]") {
			// Anything else keeping a colon or a bracket is not a host
			// name, and has no port to add.
			hostVariants = append(hostVariants, h+":8080", h+":", asciiUpper(h)+".:443")
		}
		for _, v := range hostVariants {
			if got := normalHost(v); got != h {
				t.Fatalf("host %q normalises to %q, but its spelling %q to %q", host, h, v, got)
			}
		}
		for _, v := range []string{
			asciiUpper(p), p + "/", "/." + p, "/x/.." + p, strings.ReplaceAll(p, "/", "//"),
			strings.ReplaceAll(p, "/", ";v=1/") + ";x", "/x;y/..;z" + p,
		} {
			if got := normalPath(v); got != p {
				t.Fatalf("path %q normalises to %q, but its spelling %q to %q", path, p, v, got)
			}
		}
	})
}

// asciiUpper upper-cases ASCII letters only: the spelling a sender or a
// replayer changes, unlike Unicode case mappings that do not round-trip.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func TestReplayWindowSpellings(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"n":1}`)
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	h := &Handler{Secrets: []string{string(secret)}, Scheme: "standard", ReplayWindow: caddy.Duration(time.Hour)}
	provision(t, h, clock)
	next := &backend{}

	for _, target := range []string{
		"http://localhost:8080/hook",
		"http://LOCALHOST:8080/hook",
		"http://Localhost:8080/hook",
		"http://localhost/hook",
		"http://localhost:8080/hook/",
		"http://localhost:8080/HOOK",
		"http://localhost:8080/hook;x",
	} {
		r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		r.Header = standardRequest(t, secret, "evt_spelled", clock.Now(), body).Header
		if w := serve(t, h, next, r); w.Code != 200 {
			t.Fatalf("%s answered %d", target, w.Code)
		}
	}
	if next.count() != 1 {
		t.Fatalf("one delivery spelled 7 ways reached the backend %d times, want once", next.count())
	}
}

func TestDeliveryIDLength(t *testing.T) {
	secret := []byte("s3cret")
	h := &Handler{Secrets: []string{string(secret)}, Scheme: "standard", ReplayWindow: caddy.Duration(time.Hour)}
	provision(t, h, nil)
	body := []byte(`{}`)

	next := &backend{}
	at := strings.Repeat("i", maxDeliveryID)
	if w := serve(t, h, next, standardRequest(t, secret, at, time.Now(), body)); w.Code != 200 {
		t.Fatalf("an id of %d bytes answered %d, want 200", len(at), w.Code)
	}
	w := serve(t, h, next, standardRequest(t, secret, at+"i", time.Now(), body))
	if w.Code != http.StatusBadRequest {
		t.Fatalf("an id of %d bytes answered %d, want 400", len(at)+1, w.Code)
	}
	if msg := errorOf(t, w); msg != "webhook-id: delivery id longer than 256 bytes" {
		t.Errorf("error %q does not name the id", msg)
	}
	if next.count() != 1 {
		t.Error("a delivery with an overlong id reached the backend")
	}

	// Without a window the id is not kept, and not limited.
	plain := &Handler{Secrets: []string{string(secret)}, Scheme: "standard"}
	provision(t, plain, nil)
	if w := serve(t, plain, next, standardRequest(t, secret, at+"i", time.Now(), body)); w.Code != 200 {
		t.Fatalf("without replay_window a long id answered %d, want 200", w.Code)
	}
}

// TestReplayCacheMemoryBounded fills a cache to capacity with deliveries
// whose paths and ids are as long as a sender may make them, and checks
// that it costs what its fixed-size entries say, not what was sent.
func TestReplayCacheMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a cache of 100,000 entries")
	}
	ctx := context.Background()
	now := time.Unix(1700000000, 0)
	longPath := "/" + strings.Repeat("p", 2000)
	longID := strings.Repeat("i", maxDeliveryID-8)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newReplayCache(replayCapacity)
	for i := range replayCapacity + 1000 {
		key := newReplayKey("example.com", longPath, fmt.Sprintf("%s%08d", longID, i))
		_, claim, _ := c.begin(ctx, key, now)
		_ = claim.finish(ctx, true, now, time.Hour)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)

	if c.len() != replayCapacity {
		t.Fatalf("the cache holds %d entries, want its capacity %d", c.len(), replayCapacity)
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d entries of %d-byte paths and ids: %.1f MB", c.len(), len(longPath)+len(longID)+8, float64(grew)/1e6)
	// Keeping what was sent would take over 200 MB.
	if grew > 32<<20 {
		t.Fatalf("a full cache takes %.1f MB, want at most 32 MB", float64(grew)/1e6)
	}
}
