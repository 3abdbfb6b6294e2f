package caddymodule

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// adminEndpoints returns where Caddy's admin endpoints of ctx's config
// listen (the local one and the remote one, if enabled), as destinations
// no delivery may reach: a delivery to /load or /config/ would reconfigure
// the server, and one to /stop would stop it, whatever allow_destinations
// says about their addresses.
func adminEndpoints(ctx caddy.Context) []outbox.Endpoint {
	var eps []outbox.Endpoint
	for _, listen := range adminListen(ctx) {
		eps = append(eps, listenEndpoints(listen)...)
	}
	return eps
}

// adminListen reads the admin listen addresses of ctx's config. Caddy
// gives modules no accessor for them, so they are read from the context's
// config by reflection, read-only; a Caddy whose context no longer has
// that shape gets the default address (CADDY_ADMIN or localhost:2019).
func adminListen(ctx caddy.Context) []string {
	listen := []string{caddy.DefaultAdminListen}
	cfg := reflect.ValueOf(ctx).FieldByName("cfg")
	if !cfg.IsValid() || cfg.Kind() != reflect.Pointer || cfg.IsNil() {
		return listen
	}
	admin := cfg.Elem().FieldByName("Admin")
	if !admin.IsValid() || admin.Kind() != reflect.Pointer || admin.IsNil() {
		return listen
	}
	a := admin.Elem()
	if f := a.FieldByName("Disabled"); f.IsValid() && f.Kind() == reflect.Bool && f.Bool() {
		listen = nil
	} else if f := a.FieldByName("Listen"); f.IsValid() && f.Kind() == reflect.String && f.String() != "" {
		listen = []string{f.String()}
	}
	if r := a.FieldByName("Remote"); r.IsValid() && r.Kind() == reflect.Pointer && !r.IsNil() {
		l := caddy.DefaultRemoteAdminListen
		if f := r.Elem().FieldByName("Listen"); f.IsValid() && f.Kind() == reflect.String && f.String() != "" {
			l = f.String()
		}
		listen = append(listen, l)
	}
	return listen
}

// listenEndpoints turns a Caddy listen address into the addresses and
// ports that reach it: a wildcard host is every local address, a name
// what it resolves to, and localhost the whole loopback range.
func listenEndpoints(listen string) []outbox.Endpoint {
	input, err := caddy.NewReplacer().ReplaceOrErr(listen, true, true)
	if err != nil {
		return nil
	}
	na, err := caddy.ParseNetworkAddress(input)
	if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() {
		return nil
	}
	var ranges []netip.Prefix
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	switch addr, err := netip.ParseAddr(na.Host); {
	case err == nil && !addr.IsUnspecified():
		ranges = append(ranges, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
	case na.Host == "localhost":
		ranges = loopback
	case na.Host == "" || err == nil:
		ranges = append(loopback, localAddrs()...)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		addrs, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", na.Host)
		cancel()
		for _, a := range addrs {
			ranges = append(ranges, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	var eps []outbox.Endpoint
	for port := na.StartPort; port <= na.EndPort && port <= 65535; port++ {
		for _, r := range ranges {
			eps = append(eps, outbox.Endpoint{Addrs: r, Port: uint16(port)})
		}
	}
	return eps
}

// localAddrs are the addresses of this machine's interfaces, which a
// listener on a wildcard address answers on.
func localAddrs() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if addr, ok := netip.AddrFromSlice(ipn.IP); ok {
				addr = addr.Unmap()
				out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
			}
		}
	}
	return out
}
