package testkit

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
)

// Request is one request a Recorder got.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// Respond says how a Recorder answers a request, the nth on its path.
type Respond func(r Request, nth int) (status int, body string)

// Always answers every request with status.
func Always(status int) Respond {
	return func(Request, int) (int, string) { return status, http.StatusText(status) }
}

// Recorder is a webhook endpoint on 127.0.0.1: it records every request
// and answers what its Respond says, 200 "ok" without one. It is safe for
// concurrent use, and a Respond may block (to hold a request in flight):
// it runs outside the Recorder's lock.
type Recorder struct {
	srv *httptest.Server

	mu      sync.Mutex
	got     []Request
	perPath map[string]int
	respond Respond
}

// NewRecorder starts a Recorder that closes when the test ends.
func NewRecorder(t testing.TB) *Recorder {
	rc := &Recorder{perPath: map[string]int{}}
	rc.srv = httptest.NewServer(rc)
	t.Cleanup(rc.srv.Close)
	return rc
}

// ServeHTTP records r and answers it; a Recorder can serve behind another
// listener too (a TLS one, say).
func (rc *Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	got := Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()}
	rc.mu.Lock()
	rc.got = append(rc.got, got)
	rc.perPath[r.URL.Path]++
	nth, respond := rc.perPath[r.URL.Path], rc.respond
	rc.mu.Unlock()
	status, answer := http.StatusOK, "ok"
	if respond != nil {
		status, answer = respond(got, nth)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

// URL is the address of a path on the Recorder.
func (rc *Recorder) URL(path string) string { return rc.srv.URL + path }

// Addr is the Recorder's host:port, for a proxy to forward to.
func (rc *Recorder) Addr() string { return rc.srv.Listener.Addr().String() }

// SetRespond changes how the Recorder answers from the next request on.
func (rc *Recorder) SetRespond(f Respond) {
	rc.mu.Lock()
	rc.respond = f
	rc.mu.Unlock()
}

// Requests returns what the Recorder got so far on path ("" for all), in
// the order it got them.
func (rc *Recorder) Requests(path string) []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []Request
	for _, r := range rc.got {
		if path == "" || r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// Count is how many requests the Recorder got on path ("" for all).
func (rc *Recorder) Count(path string) int { return len(rc.Requests(path)) }

// WaitFor waits until the Recorder got at least n requests on path ("" for
// all), failing the test after wait.Default, and returns them.
func (rc *Recorder) WaitFor(t testing.TB, path string, n int) []Request {
	t.Helper()
	var got []Request
	wait.Until(t, fmt.Sprintf("%d requests on %q", n, path), func() bool {
		got = rc.Requests(path)
		return len(got) >= n
	})
	return got
}
