package outbox

import (
	"net/url"
	"testing"
)

// Which destinations skip the proxy: a host name entry covers itself and
// its subdomains whatever its spelling, never a mere suffix; IP and CIDR
// entries cover URLs with a literal IP in them; the URL's port plays no
// part.
func TestNoProxyMatch(t *testing.T) {
	proxy, _ := url.Parse("http://proxy.internal:3128")
	e := newEgress(&Options{Proxy: proxy, NoProxy: []string{
		"example.com", ".corp.example", "*.wild.example", "Upper.Example",
		"10.0.0.0/8", "192.168.1.7", "fd00::/8", "2001:db8::1",
	}})
	for _, tc := range []struct {
		url    string
		direct bool
	}{
		{"http://example.com/", true},
		{"https://example.com:8443/hook", true},
		{"http://api.example.com/", true},
		{"http://a.b.example.com:9000/", true},
		{"http://API.Example.COM./", true},
		{"http://badexample.com/", false},
		{"http://example.com.evil.net/", false},
		{"http://example.org/", false},
		{"http://corp.example/", true},
		{"http://x.corp.example/", true},
		{"http://notcorp.example/", false},
		{"http://wild.example/", true},
		{"http://a.wild.example/", true},
		{"http://mywild.example/", false},
		{"http://upper.example/", true},
		{"http://10.1.2.3:8080/", true},
		{"http://11.0.0.1/", false},
		{"http://192.168.1.7/", true},
		{"http://192.168.1.8/", false},
		{"http://[::ffff:10.0.0.1]/", true},
		{"http://[fd00::1]:8443/", true},
		{"http://[2001:db8::1]/", true},
		{"http://[2001:db8::2]/", false},
		// Names spelled like an entry's address are names, not addresses.
		{"http://192.168.1.7.nip.io/", false},
		{"http://10.example.net/", false},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.proxyFor(u) == nil; got != tc.direct {
			t.Errorf("%s dialled directly: %v, want %v", tc.url, got, tc.direct)
		}
	}
	if newEgress(&Options{NoProxy: []string{"example.com"}}).proxyFor(&url.URL{Host: "example.org"}) != nil {
		t.Error("a proxy chosen without one configured")
	}
}

func TestCheckNoProxy(t *testing.T) {
	for _, ok := range []string{"example.com", ".example.com", "*.example.com", "10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8"} {
		if err := CheckNoProxy(ok); err != nil {
			t.Errorf("no_proxy %q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "*", ".", "example.com:8080", "http://example.com", "user@example.com", "a b", "*.*.example.com", "10.0.0.0/33"} {
		if err := CheckNoProxy(bad); err == nil {
			t.Errorf("no_proxy %q accepted", bad)
		}
	}
}
