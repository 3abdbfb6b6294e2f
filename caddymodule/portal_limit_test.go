package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// An IPv6 client is counted by its /64, which one host usually has whole:
// two addresses in one /64 spend one allowance of failed tokens, an
// address in the next /64 has its own. IPv4 clients are counted one by
// one.
func TestPortalFailuresCountedByPrefix(t *testing.T) {
	// from is a request as Caddy hands it on: the client IP in its vars
	// (trusted_proxies applied), or only the connection's address.
	from := func(remoteAddr, clientIP string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/webhooks/portal/session", nil)
		r.RemoteAddr = remoteAddr
		if clientIP != "" {
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: clientIP}))
		}
		return r
	}
	for _, tc := range []struct {
		name                   string
		spender, sharer, other *http.Request
	}{
		{"IPv6 by connection", from("[2001:db8:1:2::1]:40000", ""), from("[2001:db8:1:2:ffff:ffff:ffff:fffe]:40001", ""), from("[2001:db8:1:3::1]:40000", "")},
		{"IPv6 by client IP", from("192.0.2.1:1", "2001:db8:1:2::1"), from("192.0.2.1:1", "2001:db8:1:2:abcd::9"), from("192.0.2.1:1", "2001:db8:1:3::1")},
		{"IPv6 with a zone", from("[fe80::1%eth0]:40000", ""), from("[fe80::2%eth1]:40000", ""), from("[fe80:0:0:1::1%eth0]:40000", "")},
		{"IPv4 one by one", from("198.51.100.7:40000", ""), from("[::ffff:198.51.100.7]:40001", ""), from("198.51.100.8:40000", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const max = 3
			f := newFailureLimit(max, time.Hour)
			now := time.Unix(1700000000, 0)
			for range max {
				if _, blocked := f.blocked(clientPrefix(tc.spender), now); blocked {
					t.Fatal("blocked before its allowance was spent")
				}
				f.fail(clientPrefix(tc.spender), now)
			}
			if _, blocked := f.blocked(clientPrefix(tc.spender), now); !blocked {
				t.Fatalf("%s not blocked after %d failures", tc.spender.RemoteAddr, max)
			}
			if _, blocked := f.blocked(clientPrefix(tc.sharer), now); !blocked {
				t.Errorf("%s (prefix %s) not blocked after %s (prefix %s) spent the allowance; want them counted as one",
					tc.sharer.RemoteAddr, clientPrefix(tc.sharer), tc.spender.RemoteAddr, clientPrefix(tc.spender))
			}
			if _, blocked := f.blocked(clientPrefix(tc.other), now); blocked {
				t.Errorf("%s (prefix %s) blocked by the failures of %s (prefix %s); want its own allowance",
					tc.other.RemoteAddr, clientPrefix(tc.other), tc.spender.RemoteAddr, clientPrefix(tc.spender))
			}
		})
	}
}
