// Package testkit holds what the project's tests share for talking HTTP on
// loopback: free ports, an endpoint that records what it is sent, a caller
// that fails the test on a transport error, a reader of Prometheus
// scrapes, and the signatures tests check deliveries against.
package testkit

import (
	"net"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := LoopbackPort()
	if err != nil {
		t.Fatalf("finding a free loopback port: %v", err)
	}
	return port
}

// LoopbackPort is FreePort for code with no test to fail, such as a server
// started once for every test of a process.
func LoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
