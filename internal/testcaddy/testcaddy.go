// Package testcaddy builds the project's Caddy binary from ./caddy and runs
// it as a real process for end-to-end tests: start, reload, SIGKILL, restart.
package testcaddy

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds ./caddy once per test process and returns the binary's path.
// CADDY_BINARY, when set, names a binary to use instead.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CADDY_BINARY"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "caddy-webhooks-test")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		// Test binaries of several packages build at once; each builds
		// to its own file and renames it over the shared one, so one
		// binary is left behind, never a half-written one.
		tmp := filepath.Join(dir, fmt.Sprintf("caddy-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", tmp, "./caddy")
		cmd.Dir = Root()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./caddy: %v\n%s", err, out)
			return
		}
		binPath = filepath.Join(dir, "caddy")
		buildErr = os.Rename(tmp, binPath)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Process is a running Caddy.
type Process struct {
	t       testing.TB
	Dir     string // working directory: Caddyfile, data and logs live here
	Admin   string // admin endpoint, "127.0.0.1:port"
	Env     []string
	cmd     *exec.Cmd
	logs    *syncBuffer
	waitErr chan error
}

// Config is what Start needs.
type Config struct {
	// Caddyfile is the config text. "{ADMIN}" is replaced by the admin
	// address and "{DIR}" by the process directory.
	Caddyfile string
	// Dir reuses a directory (for restarts on the same storage); empty makes one.
	Dir string
	// Admin reuses an admin address; empty picks a free port.
	Admin string
	// Env is added to the process environment.
	Env []string
}

// Start writes the Caddyfile and runs `caddy run` on it, waiting until the
// admin endpoint answers. The process is killed when the test ends.
func Start(t testing.TB, c Config) *Process {
	t.Helper()
	bin := Binary(t)
	dir := c.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	admin := c.Admin
	if admin == "" {
		admin = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	}
	p := &Process{t: t, Dir: dir, Admin: admin, Env: c.Env}
	text := strings.NewReplacer("{ADMIN}", admin, "{DIR}", dir).Replace(c.Caddyfile)
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p.logs = &syncBuffer{}
	cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HOME="+dir,
	)
	cmd.Env = append(cmd.Env, c.Env...)
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	p.waitErr = make(chan error, 1)
	go func() { p.waitErr <- cmd.Wait() }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("caddy output:\n%s", p.Logs())
		}
	})
	if err := p.waitReady(30 * time.Second); err != nil {
		t.Fatalf("caddy did not start: %v\n%s", err, p.Logs())
	}
	return p
}

func (p *Process) waitReady(max time.Duration) error {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.waitErr:
			p.waitErr <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		resp, err := http.Get("http://" + p.Admin + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("admin endpoint %s not ready after %v", p.Admin, max)
}

// Logs returns everything the process printed so far.
func (p *Process) Logs() string { return p.logs.String() }

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait()
}

// Stop asks Caddy to exit gracefully (SIGTERM) and waits.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait()
}

func (p *Process) wait() {
	select {
	case err := <-p.waitErr:
		p.waitErr <- err
	case <-time.After(30 * time.Second):
		p.t.Errorf("caddy did not exit within 30s")
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case err := <-p.waitErr:
		p.waitErr <- err
		return true
	default:
		return false
	}
}

// Run runs the binary with args (for adapt, validate, reload, list-modules)
// in the process's environment and returns its combined output.
func Run(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HOME="+dir,
	)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Reload replaces the running config with a new Caddyfile through `caddy reload`.
func (p *Process) Reload(caddyfile string) error {
	p.t.Helper()
	text := strings.NewReplacer("{ADMIN}", p.Admin, "{DIR}", p.Dir).Replace(caddyfile)
	path := filepath.Join(p.Dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return err
	}
	out, err := Run(p.t, p.Dir, "reload", "--config", path, "--adapter", "caddyfile", "--address", p.Admin, "--force")
	if err != nil {
		return fmt.Errorf("caddy reload: %v: %s", err, out)
	}
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
