package outbox

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

var (
	privateRanges = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
		netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
		netip.MustParsePrefix("fc00::/7"),      // unique local
	}
	sixToFour = netip.MustParsePrefix("2002::/16")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64Loc  = netip.MustParsePrefix("64:ff9b:1::/48")
)

// blockedReason says why a delivery may not reach addr ("loopback",
// "private", ...), or "" when it may. An address inside allow is always
// reachable. IPv4 addresses embedded in IPv6 (mapped, 6to4, NAT64) are
// judged as the IPv4 address they reach.
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
	for _, p := range privateRanges {
		if p.Contains(addr) {
			return "private"
		}
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
	case nat64.Contains(addr), nat64Loc.Contains(addr):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	}
	return netip.Addr{}, false
}

// BlockedError is a delivery refused because its destination resolved to
// an address outside the allowed ranges.
type BlockedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("destination %s is %s and not in allow_destinations", e.Addr, e.Reason)
}

// dialControl checks the address a connection is about to use, after DNS
// resolution, so a name that resolves (or rebinds) to a refused address is
// caught too.
func dialControl(allow func() []netip.Prefix) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("dialing %q: %w", address, err)
		}
		if reason := blockedReason(addr, allow()); reason != "" {
			return &BlockedError{Addr: addr.WithZone(""), Reason: reason}
		}
		return nil
	}
}
