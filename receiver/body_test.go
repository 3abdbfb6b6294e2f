package receiver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// watchedBody is a request body that records how it is read: how many
// reads, and the largest buffer a read offered to fill.
type watchedBody struct {
	mu      sync.Mutex
	data    []byte
	then    error // returned once data is exhausted
	reads   int
	largest int
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads++
	b.largest = max(b.largest, len(p))
	if len(b.data) == 0 {
		return 0, b.then
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *watchedBody) Close() error { return nil }

func TestHeadersCheckedBeforeBody(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Now()
	for _, tc := range []struct {
		name    string
		scheme  string
		header  http.Header
		result  string
		message string
	}{
		{"x-signature missing", "x-signature", http.Header{}, resultMissing, "missing header X-Signature"},
		{"x-signature not hex", "x-signature", http.Header{"X-Signature": {"zz"}}, resultInvalid, "malformed signature"},
		{"github missing", "github", http.Header{"X-Signature": {strings.Repeat("a", 64)}}, resultMissing, "missing header X-Hub-Signature-256"},
		{"standard without timestamp", "standard", http.Header{
			"Webhook-Id": {"msg_1"}, "Webhook-Signature": {"v1," + strings.Repeat("A", 43) + "="},
		}, resultMissing, "missing header webhook-timestamp"},
		{"stripe without v1", "stripe", http.Header{"Stripe-Signature": {"t=" + signature.StandardTimestamp(now)}}, resultInvalid, "malformed signature"},
		{"shopify missing", "shopify", http.Header{}, resultMissing, "missing header X-Shopify-Hmac-Sha256"},
		{"slack without timestamp", "slack", http.Header{"X-Slack-Signature": {"v0=" + strings.Repeat("a", 64)}}, resultMissing, "missing header X-Slack-Request-Timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Secrets: []string{string(secret)}, Scheme: tc.scheme}
			provision(t, h, nil)
			before := counterValue(t, tc.result)
			body := &watchedBody{data: []byte("x"), then: errors.New("the body was read to its end")}
			r := httptest.NewRequest(http.MethodPost, "/hook", nil)
			r.Body, r.ContentLength = body, 1_000_000
			r.Header = tc.header
			next := &backend{}
			w := serve(t, h, next, r)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("answered %d, want 401: %s", w.Code, w.Body)
			}
			if body.reads != 0 {
				t.Fatalf("the body was read %d times before a verdict its headers already gave", body.reads)
			}
			if msg := errorOf(t, w); !strings.Contains(msg, tc.message) {
				t.Errorf("error %q, want it to say %q", msg, tc.message)
			}
			if c := w.Header().Get("Connection"); c != "close" {
				t.Errorf("Connection %q, want close: the unread body must not be parsed as the next request", c)
			}
			if got := counterValue(t, tc.result) - before; got != 1 {
				t.Errorf("%s counter rose by %v, want 1", tc.result, got)
			}
			if next.count() != 0 {
				t.Error("the request reached the backend")
			}
		})
	}
}

func TestBodyMemoryFollowsArrival(t *testing.T) {
	secret := []byte("s3cret")
	h := &Handler{Secrets: []string{string(secret)}}
	provision(t, h, nil)

	// A client that declares a megabyte, sends one byte and stalls: the
	// handler may take memory for what came, not for what was declared.
	stalled := &watchedBody{data: []byte("{"), then: io.ErrUnexpectedEOF}
	r := httptest.NewRequest(http.MethodPost, "/hook", nil)
	r.Body, r.ContentLength = stalled, 1_000_000
	r.Header.Set("X-Signature", strings.Repeat("a", 64))
	if w := serve(t, h, &backend{}, r); w.Code != http.StatusBadRequest {
		t.Fatalf("a body cut short answered %d, want 400", w.Code)
	}
	if stalled.largest > firstBodyBuffer {
		t.Fatalf("for one byte received, a read was offered a %d-byte buffer; at most %d may be taken before bytes arrive",
			stalled.largest, firstBodyBuffer)
	}

	// One that does send its megabyte, in small pieces, gets it verified
	// and forwarded whole.
	for _, size := range []int{0, 1, firstBodyBuffer - 1, firstBodyBuffer, firstBodyBuffer + 1, 1_000_000} {
		payload := bytes.Repeat([]byte{'a'}, size)
		for _, declared := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d bytes, length declared %v", size, declared), func(t *testing.T) {
				r := httptest.NewRequest(http.MethodPost, "/hook", nil)
				r.Body = io.NopCloser(&trickle{data: payload, step: 1000})
				r.ContentLength = -1
				if declared {
					r.ContentLength = int64(size)
				}
				r.Header.Set("X-Signature", signature.XSignature(secret, payload))
				next := &backend{}
				if w := serve(t, h, next, r); w.Code != 200 {
					t.Fatalf("answered %d: %s", w.Code, w.Body)
				}
				if !bytes.Equal(next.bodies[0], payload) {
					t.Fatalf("backend got %d bytes, want %d", len(next.bodies[0]), size)
				}
			})
		}
	}
}

// trickle hands out data at most step bytes a read, as a slow network does.
type trickle struct {
	data []byte
	step int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), t.step)], t.data)
	t.data = t.data[n:]
	return n, nil
}

// rawRequest writes a request head and the first part of its body on a
// new connection, and returns the connection to read the answer from.
func rawRequest(t *testing.T, addr, head, body string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Generous: the deadline only stops a broken handler from hanging the test.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head+body); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

func TestReadTimeout(t *testing.T) {
	secret := []byte("s3cret")
	h := &Handler{Secrets: []string{string(secret)}, ReadTimeout: caddy.Duration(200 * time.Millisecond)}
	provision(t, h, nil)

	var mu sync.Mutex
	var reached []error // the request context's state when the backend answered
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		// Slower than read_timeout, which bounds the body, not the backend:
		// a deadline left on the connection would end the server's
		// background read and cancel the request.
		time.Sleep(3 * time.Duration(h.ReadTimeout))
		mu.Lock()
		reached = append(reached, r.Context().Err())
		mu.Unlock()
		_, err := io.WriteString(w, "ok")
		return err
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r, next); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	body := `{"event":"job_created"}`
	head := func(length int, sig string) string {
		return fmt.Sprintf("POST /hook HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\nX-Signature: %s\r\n\r\n", addr, length, sig)
	}

	t.Run("a stalled body is answered 408 and not forwarded", func(t *testing.T) {
		_, rd := rawRequest(t, addr, head(len(body), signature.XSignature(secret, []byte(body))), body[:1])
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("no answer to a stalled body: %v", err)
		}
		msg, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !bytes.Contains(msg, []byte(`"error":"body not received within read_timeout of 200ms"`)) {
			t.Fatalf("answered %d %s, want 408 with a JSON error naming read_timeout", resp.StatusCode, msg)
		}
		if !resp.Close {
			t.Error("the connection of a timed-out body was left open")
		}
		if _, err := rd.ReadByte(); err != io.EOF {
			t.Errorf("after the 408, reading the connection gave %v, want EOF", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(reached) != 0 {
			t.Fatal("a timed-out body reached the backend")
		}
	})

	t.Run("a backend slower than read_timeout keeps its request", func(t *testing.T) {
		_, rd := rawRequest(t, addr, head(len(body), signature.XSignature(secret, []byte(body))), body)
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("answered %d", resp.StatusCode)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(reached) != 1 || reached[0] != nil {
			t.Fatalf("the backend saw the request context as %v: read_timeout outlived the body", reached)
		}
	})
}
