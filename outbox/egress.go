package outbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// egress decides how a delivery leaves: through the proxy, or directly
// (the destination check then applies to the resolved address).
type egress struct {
	proxy *url.URL
	// proxyAddr is the proxy's host:port as the transport dials it.
	proxyAddr   string
	directNets  []netip.Prefix
	directHosts []string
}

// CheckProxyURL validates an egress proxy URL. Its errors never show the
// URL, which may carry credentials.
func CheckProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("scheme must be http or https")
	}
	if u.Hostname() == "" {
		return nil, errors.New("missing host")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must not have a path, query or fragment")
	}
	return u, nil
}

// CheckNoProxy validates a no_proxy entry: a CIDR, an IP address, or a
// host name (which covers its subdomains; a leading "." or "*." is the same).
func CheckNoProxy(entry string) error {
	_, _, err := parseNoProxy(entry)
	return err
}

func parseNoProxy(entry string) (netip.Prefix, string, error) {
	if p, err := netip.ParsePrefix(entry); err == nil {
		return p.Masked(), "", nil
	}
	if a, err := netip.ParseAddr(entry); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), "", nil
	}
	host := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(entry, "*"), "."))
	if host == "" || strings.ContainsAny(host, "/:@ \t*") {
		return netip.Prefix{}, "", fmt.Errorf("%q is not a host name, IP address or CIDR", entry)
	}
	return netip.Prefix{}, host, nil
}

func newEgress(opts *Options) *egress {
	e := &egress{proxy: opts.Proxy}
	if e.proxy == nil {
		return e
	}
	port := e.proxy.Port()
	if port == "" {
		port = "80"
		if e.proxy.Scheme == "https" {
			port = "443"
		}
	}
	e.proxyAddr = net.JoinHostPort(e.proxy.Hostname(), port)
	for _, entry := range opts.NoProxy {
		p, host, err := parseNoProxy(entry)
		switch {
		case err != nil:
			// Checked when the config loaded.
		case host != "":
			e.directHosts = append(e.directHosts, host)
		default:
			e.directNets = append(e.directNets, p)
		}
	}
	return e
}

// proxyFor returns the proxy a request to u goes through, or nil.
func (e *egress) proxyFor(u *url.URL) *url.URL {
	if e.proxy == nil {
		return nil
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if a, err := netip.ParseAddr(host); err == nil {
		for _, p := range e.directNets {
			if p.Contains(a.Unmap().WithZone("")) || p.Contains(a.WithZone("")) {
				return nil
			}
		}
		return e.proxy
	}
	for _, h := range e.directHosts {
		if host == h || strings.HasSuffix(host, "."+h) {
			return nil
		}
	}
	return e.proxy
}

// viaProxyKey marks a request's context with the proxy send chose for it
// (a *egress), so the transport and the dialer agree on it even if a
// reload changes the options meanwhile.
type viaProxyKey struct{}

func withProxy(ctx context.Context, e *egress) context.Context {
	return context.WithValue(ctx, viaProxyKey{}, e)
}

func proxyOf(ctx context.Context) *egress {
	e, _ := ctx.Value(viaProxyKey{}).(*egress)
	return e
}

// proxyFromContext is the transport's Proxy.
func proxyFromContext(r *http.Request) (*url.URL, error) {
	if e := proxyOf(r.Context()); e != nil {
		return e.proxy, nil
	}
	return nil, nil
}

// dialVia dials the proxy, which the operator chose, without the
// destination check, and anything else with it.
func dialVia(guarded, plain func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if e := proxyOf(ctx); e != nil && addr == e.proxyAddr {
			return plain(ctx, network, addr)
		}
		return guarded(ctx, network, addr)
	}
}
