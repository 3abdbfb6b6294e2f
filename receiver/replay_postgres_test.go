package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-webhooks/internal/pgtest"
	"github.com/caddy-webhooks/caddy-webhooks/internal/testkit"
)

// receiverDSN gives each simulated receiver its own connection pool to
// the same database: pools are shared by DSN, and application_name is
// part of it.
func receiverDSN(t testing.TB, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgHandler provisions a standard-scheme handler whose window lives in the
// database at dsn.
func pgHandler(t testing.TB, secret []byte, dsn string, clock *fakeClock) *Handler {
	t.Helper()
	h := &Handler{
		Secrets:       []string{string(secret)},
		Scheme:        "standard",
		ReplayWindow:  caddy.Duration(time.Hour),
		ReplayStorage: dsn,
	}
	provision(t, h, clock)
	return h
}

func TestReplayStorageSharedAcrossReceivers(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	dsn := pgtest.DSN(t)
	secret := []byte("s3cret")
	body := []byte(`{"n":1}`)
	clock := &fakeClock{t: time.Now()}
	one := pgHandler(t, secret, receiverDSN(t, dsn, "receiver-1"), clock)
	two := pgHandler(t, secret, receiverDSN(t, dsn, "receiver-2"), clock)
	if one.replay == two.replay {
		t.Fatal("the two receivers share one pool; the test would not cross the database")
	}
	next := &backend{}
	send := func(h *Handler, host, id string, next caddyhttp.Handler) *httptest.ResponseRecorder {
		r := standardRequest(t, secret, id, clock.Now(), body)
		r.Host = host
		return serve(t, h, next, r)
	}

	t.Run("forwarded by one, a duplicate to the other", func(t *testing.T) {
		if w := send(one, "example.com", "evt_1", next); w.Code != 200 || w.Header().Get(DuplicateHeader) != "" {
			t.Fatalf("first delivery: %d %v", w.Code, w.Header())
		}
		w := send(two, "EXAMPLE.com:443", "evt_1", next)
		if w.Code != 200 || w.Header().Get(DuplicateHeader) != "true" || strings.TrimSpace(w.Body.String()) != `{"duplicate":true}` {
			t.Fatalf("the other receiver answered %d %v %s; want 200, Webhook-Duplicate: true, {\"duplicate\":true}",
				w.Code, w.Header(), w.Body)
		}
		if next.count() != 1 {
			t.Fatalf("the backend saw evt_1 %d times, want once", next.count())
		}
	})

	t.Run("in flight at one, 409 at the other", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		slow := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			close(entered)
			<-release
			return nil
		})
		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- send(one, "example.com", "evt_2", slow) }()
		<-entered
		w := send(two, "example.com", "evt_2", next)
		if w.Code != http.StatusConflict || w.Header().Get("Retry-After") == "" || w.Header().Get(DuplicateHeader) != "true" {
			t.Fatalf("a copy while the first is handled elsewhere: %d %v, want 409 with Retry-After", w.Code, w.Header())
		}
		close(release)
		if first := <-done; first.Code != 200 {
			t.Fatalf("first delivery: %d", first.Code)
		}
		if w := send(two, "example.com", "evt_2", next); w.Header().Get(DuplicateHeader) != "true" || w.Code != 200 {
			t.Fatalf("once the first was answered, a copy got %d %v", w.Code, w.Header())
		}
	})

	t.Run("a failed forward lets the retry through", func(t *testing.T) {
		before := next.count()
		failing := &backend{status: 500}
		if w := send(one, "example.com", "evt_3", failing); w.Code != 500 {
			t.Fatalf("failing backend: %d", w.Code)
		}
		if w := send(two, "example.com", "evt_3", next); w.Code != 200 || w.Header().Get(DuplicateHeader) != "" {
			t.Fatalf("the retry after a 500 answered %d %v; want it forwarded", w.Code, w.Header())
		}
		if next.count() != before+1 {
			t.Fatal("the retry did not reach the backend")
		}
	})

	t.Run("forgotten after the window", func(t *testing.T) {
		before := next.count()
		clock.Advance(time.Hour + time.Second)
		if w := send(two, "example.com", "evt_1", next); w.Code != 200 || w.Header().Get(DuplicateHeader) != "" {
			t.Fatalf("after the window: %d %v", w.Code, w.Header())
		}
		if next.count() != before+1 {
			t.Fatal("the delivery was not forwarded after its window")
		}
	})
}

func TestReplayStorageLease(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	now := time.Now()
	open := func(name string) *postgresReplay {
		s, err := openPostgresReplay(receiverDSN(t, dsn, name), zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Destruct() })
		return s
	}
	dead, alive := open("dies"), open("lives")
	begin := func(s *postgresReplay, key replayKey, at time.Time) (replayState, replayClaim) {
		t.Helper()
		state, claim, err := s.begin(ctx, key, at)
		if err != nil {
			t.Fatal(err)
		}
		return state, claim
	}

	key := newReplayKey("example.com", "/hook", "evt_lease")
	state, orphan := begin(dead, key, now)
	if state != replayNew {
		t.Fatalf("first claim: state %v", state)
	}
	// The receiver that claimed it dies: no renewal, no finish.
	orphan.(*postgresClaim).timer.Stop()
	if state, _ := begin(alive, key, now.Add(replayLease-time.Second)); state != replayInFlight {
		t.Fatalf("within the lease the id was %v, want in flight", state)
	}
	state, claim := begin(alive, key, now.Add(replayLease+time.Second))
	if state != replayNew {
		t.Fatalf("after the lease the id was %v, want it taken over", state)
	}
	if err := orphan.finish(ctx, true, now.Add(2*replayLease), time.Hour); !errors.Is(err, errClaimLost) {
		t.Fatalf("a late finish of a claim taken over gave %v, want errClaimLost", err)
	}
	if err := claim.finish(ctx, true, now.Add(replayLease+2*time.Second), time.Hour); err != nil {
		t.Fatal(err)
	}
	if state, _ := begin(dead, key, now.Add(2*replayLease)); state != replaySeen {
		t.Fatalf("after the takeover delivered it, the id was %v, want seen", state)
	}

	// A claim whose backend is slow renews its lease, and is not taken
	// over while its receiver lives.
	key = newReplayKey("example.com", "/hook", "evt_slow")
	_, slow := begin(alive, key, now)
	c := slow.(*postgresClaim)
	c.started = c.started.Add(-replayLease) // as if a lease had passed
	c.renew()
	if state, _ := begin(dead, key, now.Add(replayLease+time.Second)); state != replayInFlight {
		t.Fatalf("a renewed claim was %v after its first lease, want still in flight", state)
	}
	if err := slow.finish(ctx, false, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if state, claim := begin(dead, key, now); state != replayNew {
		t.Fatalf("a released id was %v, want free", state)
	} else {
		_ = claim.finish(ctx, false, now, time.Hour)
	}
}

func TestReplayStorageCleanup(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	s, err := openPostgresReplay(dsn, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destruct()
	now := time.Now()
	for i := range replayCleanupBatch + 10 {
		_, claim, err := s.begin(ctx, newReplayKey("example.com", "/hook", fmt.Sprint("old", i)), now.Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := claim.finish(ctx, true, now.Add(-2*time.Hour), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	_, claim, err := s.begin(ctx, newReplayKey("example.com", "/hook", "recent"), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.finish(ctx, true, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.deleteExpired(now); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_verify_replay`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Fatalf("%d rows left after cleanup, want the one still in its window", left)
	}
}

func TestReplayStorageSchemaCreatedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	dsn := pgtest.DSN(t)
	// Receivers starting together all find the table missing at once.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		s, err := openPostgresReplay(receiverDSN(t, dsn, fmt.Sprint("starter-", i)), zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Destruct()
		wg.Go(func() { errs <- s.ensureSchema(context.Background()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("creating the table alongside other receivers: %v", err)
		}
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var cols int
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*) FROM information_schema.columns WHERE table_name = 'webhook_verify_replay' AND table_schema = current_schema()`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if cols != 4 {
		t.Fatalf("webhook_verify_replay has %d columns, want 4", cols)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
}

func TestReplayStorageUnavailable(t *testing.T) {
	const password = "pw-that-must-not-show"
	secret := []byte("s3cret")
	dsn := "postgres://receiver:" + password + "@" + closedPort(t) + "/hooks?sslmode=disable"
	h := pgHandler(t, secret, dsn, nil)
	core, logs := observer.New(zap.DebugLevel)
	h.logger = zap.New(core)

	next := &backend{}
	w := serve(t, h, next, standardRequest(t, secret, "evt_down", time.Now(), []byte(`{}`)))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("with the database down: %d %v, want 503 with Retry-After", w.Code, w.Header())
	}
	if msg := errorOf(t, w); msg != "replay store unavailable" {
		t.Errorf("503 error %q", msg)
	}
	if next.count() != 0 {
		t.Fatal("with the database down, a delivery reached the backend")
	}
	if logs.Len() == 0 {
		t.Error("the outage was not logged")
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, password) {
			t.Fatalf("a log line shows the DSN's password: %s", line)
		}
	}
	if strings.Contains(w.Body.String(), password) {
		t.Fatal("the answer shows the DSN's password")
	}

	// Requests the headers or the signature turn away get their usual
	// answers: the database is asked only for genuine deliveries.
	r := standardRequest(t, []byte("wrong"), "evt_down", time.Now(), []byte(`{}`))
	if w := serve(t, h, next, r); w.Code != http.StatusUnauthorized {
		t.Fatalf("a bad signature with the database down answered %d, want 401", w.Code)
	}
}

func TestReplayStorageErrorsHidePassword(t *testing.T) {
	const password = "pw-that-must-not-show"
	for _, dsn := range []string{
		"postgres://u:" + password + "@db/x?pool_max_conns=many",
		"postgres://u:" + password + "@db:port/x",
		"postgresql://u:" + password + "@db/x?connect_timeout=soon",
	} {
		h := &Handler{Secrets: []string{"s"}, Scheme: "standard", ReplayWindow: caddy.Duration(time.Hour), ReplayStorage: dsn}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		_ = h.Cleanup()
		if err == nil {
			t.Errorf("%s: provisioned", strings.ReplaceAll(dsn, password, "***"))
			continue
		}
		if !strings.HasPrefix(err.Error(), "replay_storage: ") {
			t.Errorf("error %q does not start with the field", err)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("the error shows the DSN's password: %v", err)
		}
	}
}

// TestReplayStorageWithPlaceholder checks that the DSN comes from the
// environment when the config names it so.
func TestReplayStorageWithPlaceholder(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Setenv("RECEIVER_TEST_REPLAY_DSN", pgtest.DSN(t))
	secret := []byte("s3cret")
	h := pgHandler(t, secret, "{env.RECEIVER_TEST_REPLAY_DSN}", nil)
	next := &backend{}
	for range 2 {
		serve(t, h, next, standardRequest(t, secret, "evt_env", time.Now(), bytes.Repeat([]byte("x"), 10)))
	}
	if next.count() != 1 {
		t.Fatalf("the backend saw one delivery %d times", next.count())
	}
}
