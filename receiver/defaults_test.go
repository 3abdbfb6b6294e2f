package receiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// Without max_body and read_timeout a handler takes bodies of up to 1 MB
// (1,000,000 bytes, declared or chunked) and gives them 10s to arrive.
func TestDefaultLimits(t *testing.T) {
	secret := []byte("s3cret")
	h := &Handler{Secrets: []string{string(secret)}}
	provision(t, h, nil)
	if h.MaxBody != 1_000_000 {
		t.Errorf("max_body defaults to %d bytes, want 1,000,000", h.MaxBody)
	}
	if h.ReadTimeout != caddy.Duration(10*time.Second) {
		t.Errorf("read_timeout defaults to %s, want 10s", time.Duration(h.ReadTimeout))
	}

	// The body's deadline is 10s from when the handler starts reading.
	body := []byte(`{}`)
	r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	r.Header.Set("X-Signature", signature.XSignature(secret, body))
	w := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	before := time.Now()
	if err := h.ServeHTTP(w, r, &backend{}); err != nil || w.Code != http.StatusOK {
		t.Fatalf("a signed body answered %d, %v", w.Code, err)
	}
	after := time.Now()
	if len(w.deadlines) == 0 || w.deadlines[0].Before(before.Add(10*time.Second)) || w.deadlines[0].After(after.Add(10*time.Second)) {
		t.Errorf("read deadlines set %v between %v and %v, want the first 10s after the request", w.deadlines, before, after)
	}

	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{"1 MB", 1_000_000, false, http.StatusOK},
		{"1 MB and a byte", 1_000_001, false, http.StatusRequestEntityTooLarge},
		{"1 MB chunked", 1_000_000, true, http.StatusOK},
		{"1 MB and a byte chunked", 1_000_001, true, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, next, _, _ := postSized(t, h, secret, tc.size, tc.chunked)
			if w.Code != tc.status {
				t.Fatalf("a body of %d bytes answered %d, want %d: %.200s", tc.size, w.Code, tc.status, w.Body)
			}
			if tc.status != http.StatusOK {
				if msg := errorOf(t, w); !strings.Contains(msg, "max_body of 1000000 bytes") || next.count() != 0 {
					t.Fatalf("413 error %q (forwarded %d times), want it naming max_body of 1000000 bytes and nothing forwarded", msg, next.count())
				}
				return
			}
			if next.count() != 1 || len(next.bodies[0]) != tc.size {
				t.Fatalf("backend saw %d requests, want the %d bytes once", next.count(), tc.size)
			}
		})
	}
}

// deadlineRecorder records the read deadlines a handler sets through
// http.ResponseController, as a server's writer would take them.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	deadlines []time.Time
}

func (w *deadlineRecorder) SetReadDeadline(t time.Time) error {
	w.deadlines = append(w.deadlines, t)
	return nil
}
