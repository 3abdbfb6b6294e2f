package outbox

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// The address policy: one judgement, blockedReason, for a literal IP in a
// webhook URL when it is created or edited and for the address a delivery
// dials after resolving a name. Go's net/netip methods name what they
// can; the tables below are the rest of the IANA special-purpose address
// registries, the entries whose "Globally Reachable" is False:
//
//	https://www.iana.org/assignments/iana-ipv4-special-registry/
//	https://www.iana.org/assignments/iana-ipv6-special-registry/
//
// IPv4 embedded in IPv6 (mapped, 6to4, NAT64) is judged as the IPv4
// address it reaches.
var (
	specialIPv4 = []special{
		{netip.MustParsePrefix("0.0.0.0/8"), "this network"},                // RFC 791
		{netip.MustParsePrefix("100.64.0.0/10"), "shared address space"},    // RFC 6598 (carrier-grade NAT)
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"}, // RFC 6890
		{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},            // RFC 5737
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},            // RFC 2544
		{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},         // RFC 5737
		{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},          // RFC 5737
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},                  // RFC 1112 (and 255.255.255.255, limited broadcast)
	}
	specialIPv6 = []special{
		{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use translation"}, // RFC 8215
		{netip.MustParsePrefix("2001:2::/48"), "benchmarking"},             // RFC 5180
		{netip.MustParsePrefix("2001:db8::/32"), "documentation"},          // RFC 3849
		{netip.MustParsePrefix("3fff::/20"), "documentation"},              // RFC 9637
		{netip.MustParsePrefix("2001::/23"), "IETF protocol assignment"},   // RFC 2928
	}
	// globalIPv6 are the sub-allocations of 2001::/23 the registry marks
	// globally reachable (anycast services, ORCHIDv2 and the like).
	globalIPv6 = prefixes("2001:1::1/128", "2001:1::2/128", "2001:1::3/128", "2001:3::/32",
		"2001:4:112::/48", "2001:20::/28", "2001:30::/28")
	// globalUnicast is the only IPv6 space IANA allocates for global
	// unicast (the IPv6 Address Space registry); the rest is reserved,
	// unique-local, link-local or multicast.
	globalUnicast = netip.MustParsePrefix("2000::/3")

	sixToFour = netip.MustParsePrefix("2002::/16")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
)

type special struct {
	prefix netip.Prefix
	name   string
}

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

// blockedReason says why a delivery may not reach addr ("loopback",
// "private", ...), or "" when it may. An address inside allow is always
// reachable.
func blockedReason(addr netip.Addr, allow []netip.Prefix) string {
	addr = addr.WithZone("")
	for _, p := range allow {
		if p.Contains(addr) {
			return ""
		}
	}
	if inner, ok := embeddedIPv4(addr); ok {
		return blockedReason(inner, allow)
	}
	switch {
	case addr.IsLoopback():
		return "loopback"
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsLinkLocalUnicast():
		return "link-local"
	case addr.IsMulticast():
		return "multicast"
	case addr.IsPrivate():
		return "private"
	case addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	table := specialIPv4
	if addr.Is6() {
		for _, p := range globalIPv6 {
			if p.Contains(addr) {
				return ""
			}
		}
		table = specialIPv6
	}
	for _, s := range table {
		if s.prefix.Contains(addr) {
			return s.name
		}
	}
	if addr.Is6() && !globalUnicast.Contains(addr) {
		return "reserved"
	}
	return ""
}

func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	if addr.Is4In6() {
		return addr.Unmap(), true
	}
	if !addr.Is6() {
		return netip.Addr{}, false
	}
	b := addr.As16()
	switch {
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case nat64.Contains(addr):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	}
	return netip.Addr{}, false
}

// Endpoint is a port on a range of addresses, such as the listener of
// Caddy's admin endpoint.
type Endpoint struct {
	Addrs netip.Prefix
	Port  uint16
}

// denied reports whether dialing addr:port reaches one of the endpoints.
// The unspecified address reaches every local listener of its family.
func denied(addr netip.Addr, port uint16, deny []Endpoint) bool {
	addr = addr.WithZone("").Unmap()
	for _, e := range deny {
		if e.Port == port && (e.Addrs.Contains(addr) || addr.IsUnspecified()) {
			return true
		}
	}
	return false
}

// BlockedError is a delivery refused because its destination resolved to
// an address outside the allowed ranges, or to Caddy's admin endpoint.
type BlockedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *BlockedError) Error() string {
	if e.Reason == reasonAdmin {
		return fmt.Sprintf("destination %s is Caddy's admin endpoint", e.Addr)
	}
	return fmt.Sprintf("destination %s is %s and not in allow_destinations", e.Addr, e.Reason)
}

const reasonAdmin = "admin"

// checkAddr applies the whole policy to one destination.
func checkAddr(addr netip.Addr, port uint16, opts *Options) error {
	if denied(addr, port, opts.DenyEndpoints) {
		return &BlockedError{Addr: addr.WithZone(""), Reason: reasonAdmin}
	}
	if reason := blockedReason(addr, opts.AllowDestinations); reason != "" {
		return &BlockedError{Addr: addr.WithZone(""), Reason: reason}
	}
	return nil
}

// dialControl checks the address a connection is about to use, after DNS
// resolution, so a name that resolves (or rebinds) to a refused address is
// caught too.
func dialControl(opts func() *Options) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dialing %q: %w", address, err)
		}
		return checkAddr(ap.Addr(), ap.Port(), opts())
	}
}

// hostIP reads a URL host as an IP address the way some resolver could:
// the standard forms, and the legacy IPv4 forms of inet_aton(3) that the
// C library accepts (127.1, 0177.0.0.1, 0x7f000001, 2130706433), which Go
// would otherwise resolve as names. A trailing dot is ignored.
func hostIP(host string) (netip.Addr, bool) {
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr, true
	}
	return parseInetAton(strings.TrimSuffix(host, "."))
}

// parseInetAton parses one to four numbers separated by dots, each
// decimal, octal (leading 0) or hexadecimal (leading 0x); the last fills
// the bytes the others leave.
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			p, base = p[2:], 16
			if p == "" {
				p = "0" // "0x" alone is zero to inet_aton
			}
		case len(p) > 1 && p[0] == '0':
			p, base = p[1:], 8
		}
		if p == "" || p[0] == '+' || p[0] == '-' {
			return netip.Addr{}, false
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		last := i == len(parts)-1
		if !last {
			if n > 0xff {
				return netip.Addr{}, false
			}
			v = v<<8 | n
			continue
		}
		rest := uint(4 - i) // bytes the last number fills
		if n >= 1<<(8*rest) {
			return netip.Addr{}, false
		}
		v = v<<(8*rest) | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// defaultPort is the port a URL without one dials.
func defaultPort(scheme string) uint16 {
	if scheme == "https" {
		return 443
	}
	return 80
}
