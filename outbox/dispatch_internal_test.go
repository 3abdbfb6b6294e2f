package outbox

import (
	"net/netip"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

func TestBlockedReason(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1":        "loopback",
		"::1":              "loopback",
		"10.1.2.3":         "private",
		"172.20.0.1":       "private",
		"192.168.1.1":      "private",
		"fd00::1":          "private",
		"169.254.169.254":  "link-local",
		"fe80::1":          "link-local",
		"0.0.0.0":          "unspecified",
		"::":               "unspecified",
		"224.0.0.1":        "multicast",
		"::ffff:127.0.0.1": "loopback",
		"::ffff:10.0.0.1":  "private",
		"2002:a9fe:a9fe::": "link-local", // 6to4 of 169.254.169.254
		"64:ff9b::a00:1":   "private",    // NAT64 of 10.0.0.1
		"93.184.216.34":    "",
		"2606:4700::1111":  "",
	} {
		if got := blockedReason(netip.MustParseAddr(addr), nil); got != want {
			t.Errorf("blockedReason(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := blockedReason(netip.MustParseAddr("10.1.2.3"), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); got != "" {
		t.Errorf("allowed range still refused: %q", got)
	}
}

func TestJitterSpread(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		j := jitter(100 * time.Second)
		lo, hi = min(lo, j), max(hi, j)
	}
	if lo < 80*time.Second || hi > 120*time.Second || hi-lo < 30*time.Second {
		t.Fatalf("jitter of 100s spans [%v, %v], want within ±20%% and spread", lo, hi)
	}
}

func BenchmarkSignHeaders(b *testing.B) {
	w := &Webhook{ID: "w", Secret: "secret-of-32-bytes-0123456789abc"}
	ev := &Event{ID: "01900000-0000-7000-8000-000000000000", Body: fixture.Event1K()}
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Body)))
	for b.Loop() {
		signedHeaders(w, ev, now)
	}
}

func BenchmarkXSignature(b *testing.B) {
	body := fixture.Event1K()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		signature.XSignature([]byte("secret"), body)
	}
}

func BenchmarkParseEvent(b *testing.B) {
	body := fixture.Event1K()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := ParseEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}
