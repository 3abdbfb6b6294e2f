// Package pgtest gives tests a PostgreSQL database of their own.
//
// With WEBHOOKS_TEST_POSTGRES set to a DSN (whose role may create schemas
// in its database), each test gets a fresh schema there. Without it, the
// first test of the process starts a throwaway server from the installed
// binaries (initdb and postgres, found on PATH or under
// /usr/lib/postgresql/*/bin) in a temporary directory, and each test gets
// a fresh schema on it. The server stops and its directory is removed
// when the test process exits, however it exits. Without binaries, tests
// that need PostgreSQL are skipped.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

// EnvDSN names the variable that points the tests at an existing server.
const EnvDSN = "WEBHOOKS_TEST_POSTGRES"

var (
	serverOnce sync.Once
	serverDSN  string // of the maintenance database "postgres"
	serverErr  error
	skipReason string
	stopServer func()

	dbSeq atomic.Int64
)

// DSN returns the DSN (a postgres:// URL) of a new, empty schema, the
// connection's search_path, that is dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		serverOnce.Do(startServer)
		if skipReason != "" {
			t.Skip(skipReason)
		}
		if serverErr != nil {
			t.Fatalf("starting a throwaway PostgreSQL: %v", serverErr)
		}
		base = serverDSN
	}
	return createDatabase(t, base)
}

// Server returns the DSN of the maintenance database of the server the
// tests use (WEBHOOKS_TEST_POSTGRES, or a throwaway one started once), for
// programs that are not tests, such as the benchmark harness.
func Server() (string, error) {
	if base := os.Getenv(EnvDSN); base != "" {
		return base, nil
	}
	serverOnce.Do(startServer)
	if skipReason != "" {
		return "", errors.New(skipReason)
	}
	return serverDSN, serverErr
}

// Stop stops the throwaway server now, for a TestMain that wants it gone
// before the process exits. Without it the server stops at exit anyway.
func Stop() {
	if stopServer != nil {
		stopServer()
	}
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// createDatabase makes a schema named after the test in the database of
// base and returns base with search_path set to it: as good as a database
// of its own for code that names no schema, and far cheaper to create and
// drop than a database on a slow disk.
func createDatabase(t testing.TB, base string) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = unsafeName.ReplaceAllString(name, "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t_%s_%d_%d", name, os.Getpid(), dbSeq.Add(1))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: connecting to the test server: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating schema %s (the role of %s needs CREATE on its database): %v", name, EnvDSN, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("pgtest: dropping schema %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("pgtest: dropping schema %s: %v", name, err)
		}
	})
	return withSearchPath(base, name)
}

// withSearchPath sets the search_path of a DSN, URL or key=value; pgx
// sends it to the server as a run-time parameter.
func withSearchPath(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

// binDir finds the directory holding initdb and postgres.
func binDir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir
		}
		// Debian's PATH entries are symlinks into the versioned directory.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// The newest version first.
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// startServer runs initdb and postgres in a temporary directory.
func startServer() {
	bin := binDir()
	if bin == "" {
		skipReason = "PostgreSQL binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; " +
			"install them (apt-get install postgresql) or set " + EnvDSN + " to a server's DSN"
		return
	}
	base, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		serverErr = err
		return
	}
	cred, err := unprivileged(base)
	if err != nil {
		os.RemoveAll(base)
		serverErr = err
		return
	}
	data := filepath.Join(base, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C")
	initdb.Dir = base // a directory the server's user can enter
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(base)
		serverErr = fmt.Errorf("initdb: %v\n%s", err, out)
		return
	}
	port, err := testkit.LoopbackPort()
	if err != nil {
		os.RemoveAll(base)
		serverErr = err
		return
	}
	logFile := filepath.Join(base, "postgres.log")
	// The shell keeps the server as long as its stdin, a pipe from this
	// process, stays open: when the test process exits, even killed, the
	// pipe closes and the shell stops the server and removes the directory.
	script := `"$@" >"$LOG" 2>&1 & pid=$!
read -r _
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$BASE"`
	cmd := exec.Command("/bin/sh", "-c", script, "pgtest",
		filepath.Join(bin, "postgres"), "-D", data, "-k", base, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=300",
		"-c", "log_min_messages=warning")
	cmd.Env = append(os.Environ(), "LOG="+logFile, "BASE="+base)
	cmd.Dir = base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(base)
		serverErr = err
		return
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(base)
		serverErr = fmt.Errorf("starting postgres: %w", err)
		return
	}
	var stopOnce sync.Once
	stopServer = func() {
		stopOnce.Do(func() {
			stdin.Close()
			_ = cmd.Wait()
		})
	}
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := waitReady(dsn, logFile, 60*time.Second); err != nil {
		stopServer()
		serverErr = err
		return
	}
	serverDSN = dsn
}

// unprivileged returns the credentials to run PostgreSQL with, which
// refuses to run as root, and hands it the directory. Nil when not root.
func unprivileged(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("handing %s to user %s: %w", dir, name, err)
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and no postgres or nobody user to run PostgreSQL as")
}

// waitReady connects until the server answers, failing early if its log
// shows it could not start.
func waitReady(dsn, logFile string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		log, _ := os.ReadFile(logFile)
		if startFailed(string(log)) || time.Now().After(deadline) {
			return fmt.Errorf("postgres did not become ready: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startFailed reports whether the server's log shows that it gave up,
// rather than refusing connections while it starts.
func startFailed(log string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "FATAL") && !strings.Contains(line, "is starting up") {
			return true
		}
	}
	return false
}
