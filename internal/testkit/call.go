package testkit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// client talks to loopback only: no proxy from the environment, and
// enough idle connections for the tests that ingest from many goroutines.
var client = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	},
}

// Client is the client Call uses, for a test that must see a transport
// error itself (a request a SIGKILL cuts short) rather than fail on it.
func Client() *http.Client { return client }

// Answer is a response, read whole.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Call sends a request and returns the answer, failing the test on a
// transport error. body is sent as JSON with Content-Type
// application/json: a string or []byte as is, nil as no body, anything
// else marshaled. An io.Reader is sent raw, with no Content-Type of its
// own (and chunked, unless it is a *bytes.Reader, *bytes.Buffer or
// *strings.Reader). header is added last, so it can override the
// Content-Type.
func Call(t testing.TB, method, url string, body any, header http.Header) Answer {
	t.Helper()
	var rd io.Reader
	isJSON := true
	switch b := body.(type) {
	case nil:
		isJSON = false
	case io.Reader:
		rd, isJSON = b, false
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		rd = bytes.NewReader(marshal(t, b))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	for name, values := range header {
		req.Header.Del(name)
		req.Header[name] = values
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading answer: %v", method, url, err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: out}
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding a request body: %v", err)
	}
	return raw
}

// BasicAuth is the Authorization header value of HTTP Basic credentials.
func BasicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}
