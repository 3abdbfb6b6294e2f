package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

// Instance is a PostgreSQL server of one test's own, which the test may stop
// (as an operator or a crash would) and start again on the same port and
// data directory. It is removed when the test ends.
type Instance struct {
	t    testing.TB
	bin  string
	base string
	data string
	log  string
	port int
	cred *syscall.Credential
}

// NewInstance initialises and starts a server, or skips the test when the
// PostgreSQL binaries are missing.
func NewInstance(t testing.TB) *Instance {
	t.Helper()
	bin := binDir()
	if bin == "" {
		t.Skip("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin")
	}
	base, err := os.MkdirTemp("", "pgtest-server-")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := unprivileged(base)
	if err != nil {
		os.RemoveAll(base)
		t.Fatal(err)
	}
	port, err := testkit.LoopbackPort()
	if err != nil {
		os.RemoveAll(base)
		t.Fatal(err)
	}
	s := &Instance{t: t, bin: bin, base: base, data: filepath.Join(base, "data"), log: filepath.Join(base, "postgres.log"), port: port, cred: cred}
	t.Cleanup(func() {
		_ = s.pgctl("stop", "-m", "immediate", "-w")
		os.RemoveAll(base)
	})
	if out, err := s.command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.Start()
	return s
}

// DSN is the server's maintenance database.
func (s *Instance) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Stop stops the server with pg_ctl's mode: "fast" (connections are
// terminated, a clean shutdown) or "immediate" (every process quits at
// once; the next start recovers from the WAL, as after a crash).
func (s *Instance) Stop(mode string) {
	s.t.Helper()
	if err := s.pgctl("stop", "-m", mode, "-w", "-t", "60"); err != nil {
		s.t.Fatalf("pg_ctl stop -m %s: %v", mode, err)
	}
}

// Start starts the server again on its port and waits until it accepts
// connections.
func (s *Instance) Start() {
	s.t.Helper()
	opts := "-p " + strconv.Itoa(s.port) + " -k " + s.base +
		" -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 -c log_min_messages=warning"
	if err := s.pgctl("start", "-w", "-t", "60", "-l", s.log, "-o", opts); err != nil {
		log, _ := os.ReadFile(s.log)
		s.t.Fatalf("pg_ctl start: %v\n%s", err, log)
	}
	if err := waitReady(s.DSN(), s.log, 60*time.Second); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Instance) pgctl(args ...string) error {
	args = append(args[:1:1], append([]string{"-D", s.data}, args[1:]...)...)
	out, err := s.command(filepath.Join(s.bin, "pg_ctl"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

func (s *Instance) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}
