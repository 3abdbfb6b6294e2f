package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// failingBody is a body whose read fails with err, as a connection past
// its read deadline or one cut short does.
type failingBody struct{ err error }

func (b failingBody) Read([]byte) (int, error) { return 0, b.err }

// fixedReplay is a replay memory that answers every delivery the same way.
type fixedReplay struct {
	state replayState
	err   error
}

func (f fixedReplay) begin(context.Context, replayKey, time.Time) (replayState, replayClaim, error) {
	return f.state, nil, f.err
}

// Every request gets one debug line, "webhook verification", with the
// scheme and the result, whatever the answer; no line of any level shows
// a secret, the signature it should have carried, or a byte of the body.
func TestDebugLogLine(t *testing.T) {
	const secret = "log-test-secret-value"
	body := []byte(`{"card":"4111-body-marker"}`)
	good := signature.XSignature([]byte(secret), body)
	now := time.Unix(1700000000, 0)
	clock := &fakeClock{t: now}

	core, logs := observer.New(zapcore.DebugLevel)
	handler := func(h *Handler) *Handler {
		provision(t, h, clock)
		h.logger = zap.New(core)
		return h
	}
	xsig := handler(&Handler{Secrets: []string{secret}, MaxBody: 64, ReplayWindow: caddy.Duration(time.Hour)})
	standard := handler(&Handler{Secrets: []string{secret}, Scheme: "standard"})
	inFlight := handler(&Handler{Secrets: []string{secret}, ReplayWindow: caddy.Duration(time.Hour)})
	inFlight.replay = fixedReplay{state: replayInFlight}
	storeDown := handler(&Handler{Secrets: []string{secret}, ReplayWindow: caddy.Duration(time.Hour)})
	storeDown.replay = fixedReplay{err: errors.New("dial tcp: connection refused")}

	signed := func(b io.Reader, header ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hook", b)
		r.Header.Set("X-Signature", good)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		h      *Handler
		r      func() *http.Request
		status int
		result string
	}{
		{"valid", xsig, func() *http.Request { return signed(bytes.NewReader(body)) }, 200, "valid"},
		{"valid with an id", xsig, func() *http.Request { return signed(bytes.NewReader(body), "webhook-id", "evt_1") }, 200, "valid"},
		{"duplicate", xsig, func() *http.Request { return signed(bytes.NewReader(body), "webhook-id", "evt_1") }, 200, "duplicate"},
		{"in flight", inFlight, func() *http.Request { return signed(bytes.NewReader(body), "webhook-id", "evt_2") }, 409, "duplicate"},
		{"replay store down", storeDown, func() *http.Request { return signed(bytes.NewReader(body), "webhook-id", "evt_3") }, 503, "replay_store_unavailable"},
		{"wrong signature", xsig, func() *http.Request {
			return signed(bytes.NewReader(body), "X-Signature", signature.XSignature([]byte("another secret"), body))
		}, 401, "invalid"},
		{"malformed signature", xsig, func() *http.Request { return signed(bytes.NewReader(body), "X-Signature", "not hex") }, 401, "invalid"},
		{"missing signature", xsig, func() *http.Request { return httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body)) }, 401, "missing"},
		{"expired", standard, func() *http.Request {
			return standardRequest(t, []byte(secret), "msg_1", now.Add(-time.Hour), body)
		}, 401, "expired"},
		{"too large", xsig, func() *http.Request { return signed(strings.NewReader(strings.Repeat("x", 65))) }, 413, "too_large"},
		{"too large chunked", xsig, func() *http.Request {
			r := signed(chunked{strings.NewReader(strings.Repeat("x", 65))})
			r.ContentLength = -1
			return r
		}, 413, "too_large"},
		{"id too long", xsig, func() *http.Request { return signed(bytes.NewReader(body), "webhook-id", strings.Repeat("i", 257)) }, 400, "id_too_long"},
		{"body late", xsig, func() *http.Request { return signed(failingBody{os.ErrDeadlineExceeded}) }, 408, "read_timeout"},
		{"body cut short", xsig, func() *http.Request { return signed(failingBody{io.ErrUnexpectedEOF}) }, 400, "unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, tc.h, &backend{}, tc.r())
			if w.Code != tc.status {
				t.Fatalf("answered %d %s, want %d", w.Code, w.Body, tc.status)
			}
			entries := logs.TakeAll()
			var lines []observer.LoggedEntry
			for _, e := range entries {
				if e.Message == "webhook verification" {
					lines = append(lines, e)
				}
				shown := e.Message + fmt.Sprint(e.ContextMap())
				for _, hidden := range []string{secret, good, "4111-body-marker"} {
					if strings.Contains(shown, hidden) {
						t.Errorf("log line %q shows %q", shown, hidden)
					}
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d webhook verification lines, want 1: %v", len(lines), entries)
			}
			fields := lines[0].ContextMap()
			if lines[0].Level != zapcore.DebugLevel || fields["scheme"] != tc.h.Scheme || fields["result"] != tc.result {
				t.Errorf("logged %s %v, want debug with scheme %s and result %s", lines[0].Level, fields, tc.h.Scheme, tc.result)
			}
		})
	}
}
