package caddymodule

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/time/rate"
)

// failureLimitMaxAddrs bounds the addresses remembered at once. An address
// whose allowance is whole again is forgotten first; past the bound, new
// addresses share one allowance, so a flood from many addresses is slowed
// as one.
const failureLimitMaxAddrs = 100000

// failureLimit counts failed token checks per client address: each address
// may fail max times, and regains one every window/max. Once its allowance
// is spent its requests are refused before any token is checked, so tokens
// cannot be guessed at speed.
type failureLimit struct {
	every time.Duration
	max   int

	mu       sync.Mutex
	addrs    map[netip.Prefix]*rate.Limiter
	overflow *rate.Limiter
}

func newFailureLimit(max int, window time.Duration) *failureLimit {
	every := window / time.Duration(max)
	return &failureLimit{
		every:    every,
		max:      max,
		addrs:    map[netip.Prefix]*rate.Limiter{},
		overflow: rate.NewLimiter(rate.Every(every), max),
	}
}

// blocked reports whether addr has no failure left, and if so how long
// until it has one.
func (f *failureLimit) blocked(addr netip.Prefix, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lim, ok := f.addrs[addr]
	if !ok {
		if len(f.addrs) < failureLimitMaxAddrs {
			return 0, false
		}
		lim = f.overflow
	}
	if lim.TokensAt(now) >= 1 {
		return 0, false
	}
	return f.every, true
}

// fail counts a failed check from addr.
func (f *failureLimit) fail(addr netip.Prefix, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lim, ok := f.addrs[addr]
	if !ok {
		if len(f.addrs) >= failureLimitMaxAddrs {
			f.prune(now)
		}
		if len(f.addrs) >= failureLimitMaxAddrs {
			f.overflow.AllowN(now, 1)
			return
		}
		lim = rate.NewLimiter(rate.Every(f.every), f.max)
		f.addrs[addr] = lim
	}
	lim.AllowN(now, 1)
}

// prune forgets the addresses whose allowance is whole again: they are as
// if never seen.
func (f *failureLimit) prune(now time.Time) {
	for addr, lim := range f.addrs {
		if lim.TokensAt(now) >= float64(f.max) {
			delete(f.addrs, addr)
		}
	}
}

// clientPrefix is the address a request is counted under: the client IP
// as Caddy determined it (trusted_proxies applied), an IPv6 client by its
// /64, which one host usually has whole.
func clientPrefix(r *http.Request) netip.Prefix {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		s, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}
	}
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.WithZone("").Prefix(bits)
	return p
}
