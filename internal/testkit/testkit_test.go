package testkit

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("FreePort gave %d, which cannot be listened on: %v", port, err)
	}
	l.Close()
}

// Concurrent requests are all recorded, counted per path in order, and
// answered by the Respond in force.
func TestRecorder(t *testing.T) {
	rc := NewRecorder(t)
	if rc.URL("/a") != "http://"+rc.Addr()+"/a" {
		t.Errorf("URL(/a) = %s with Addr %s", rc.URL("/a"), rc.Addr())
	}
	if a := Call(t, http.MethodPost, rc.URL("/a"), `{"n":0}`, http.Header{"X-Test": {"first"}}); a.Status != 200 || string(a.Body) != "ok" {
		t.Fatalf("without a Respond the Recorder answered %d %q, want 200 ok", a.Status, a.Body)
	}
	got := rc.Requests("/a")
	if len(got) != 1 || got[0].Method != http.MethodPost || got[0].Path != "/a" ||
		got[0].Header.Get("X-Test") != "first" || string(got[0].Body) != `{"n":0}` || got[0].At.IsZero() {
		t.Fatalf("recorded %+v, want the POST to /a with its header and body", got)
	}

	var mu sync.Mutex
	nths := map[int]bool{}
	rc.SetRespond(func(r Request, nth int) (int, string) {
		if r.Path == "/b" {
			mu.Lock()
			nths[nth] = true
			mu.Unlock()
		}
		return http.StatusAccepted, "later"
	})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/b"
			if i%4 == 0 {
				path = "/c"
			}
			if a := Call(t, http.MethodPut, rc.URL(path), nil, nil); a.Status != http.StatusAccepted || string(a.Body) != "later" {
				t.Errorf("with a Respond the Recorder answered %d %q, want 202 later", a.Status, a.Body)
			}
		}()
	}
	wg.Wait()
	if n := rc.Count("/b"); n != 30 {
		t.Errorf("Count(/b) = %d, want 30", n)
	}
	if n := rc.Count(""); n != 41 {
		t.Errorf("Count of every path = %d, want 41", n)
	}
	for i := 1; i <= 30; i++ {
		if !nths[i] {
			t.Errorf("no request on /b was the %dth there: %v", i, nths)
		}
	}
	if got := rc.WaitFor(t, "/c", 10); len(got) != 10 || got[0].Method != http.MethodPut {
		t.Errorf("WaitFor(/c, 10) returned %d requests", len(got))
	}

	rc.SetRespond(Always(http.StatusGone))
	if a := Call(t, http.MethodPost, rc.URL("/d"), nil, nil); a.Status != http.StatusGone || string(a.Body) != "Gone" {
		t.Errorf("Always(410) answered %d %q", a.Status, a.Body)
	}
}

// Call sends JSON bodies with their Content-Type, readers raw, and lets
// the header override.
func TestCall(t *testing.T) {
	rc := NewRecorder(t)
	for _, tc := range []struct {
		name        string
		body        any
		header      http.Header
		wantBody    string
		contentType string
		chunked     bool
	}{
		{"nil", nil, nil, "", "", false},
		{"string", `{"a":1}`, nil, `{"a":1}`, "application/json", false},
		{"bytes", []byte(`[1]`), nil, `[1]`, "application/json", false},
		{"value", map[string]int{"a": 1}, nil, `{"a":1}`, "application/json", false},
		{"reader", strings.NewReader("raw"), nil, "raw", "", false},
		{"chunked reader", struct{ *strings.Reader }{strings.NewReader("raw")}, nil, "raw", "", true},
		{"header", "x", http.Header{"content-type": {"text/plain"}}, "x", "text/plain", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rc.Count("")
			a := Call(t, http.MethodPost, rc.URL("/"+tc.name), tc.body, tc.header)
			if a.Status != 200 || a.Header.Get("Content-Type") != "text/plain" {
				t.Fatalf("answered %d %v", a.Status, a.Header)
			}
			got := rc.Requests("")[before]
			if string(got.Body) != tc.wantBody || got.Header.Get("Content-Type") != tc.contentType {
				t.Errorf("sent body %q with Content-Type %q, want %q and %q", got.Body, got.Header.Get("Content-Type"), tc.wantBody, tc.contentType)
			}
			if cl := got.Header.Get("Content-Length"); tc.chunked == (cl != "") && tc.wantBody != "" {
				t.Errorf("Content-Length %q, chunked %v", cl, tc.chunked)
			}
		})
	}
	if got := BasicAuth("user", "pass"); got != "Basic dXNlcjpwYXNz" {
		t.Errorf("BasicAuth = %q", got)
	}
}

const scrape = `# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{event="a",outcome="success"} 3
requests_total{event="a",outcome="failure"} 2
requests_total{event="b",outcome="success"} 5
requests_total{event="c",outcome="success"} 0
# TYPE pending gauge
pending 7
# TYPE pending_seconds gauge
pending_seconds 1.5
# TYPE duration_seconds histogram
duration_seconds_bucket{outcome="success",le="0.1"} 1
duration_seconds_bucket{outcome="success",le="+Inf"} 4
duration_seconds_sum{outcome="success"} 0.9
duration_seconds_count{outcome="success"} 4
duration_seconds_bucket{outcome="failure",le="0.1"} 0
duration_seconds_bucket{outcome="failure",le="+Inf"} 2
duration_seconds_sum{outcome="failure"} 3
duration_seconds_count{outcome="failure"} 2
# TYPE latency summary
latency{quantile="0.5"} 0.2
latency_sum 1
latency_count 5
`

// Values are looked up by name and the labels given, summed over the
// others; a histogram's and a summary's lines have their own names.
func TestParseMetrics(t *testing.T) {
	m := ParseMetrics(t, scrape)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
		ok     bool
	}{
		{"requests_total", nil, 10, true},
		{"requests_total", []string{"event", "a"}, 5, true},
		{"requests_total", []string{"outcome", "success"}, 8, true},
		{"requests_total", []string{"event", "a", "outcome", "failure"}, 2, true},
		{"requests_total", []string{"event", "c"}, 0, true},
		{"requests_total", []string{"event", "d"}, 0, false},
		{"requests_total", []string{"other", "a"}, 0, false},
		{"requests", nil, 0, false},
		{"pending", nil, 7, true},
		{"pending_seconds", nil, 1.5, true},
		{"duration_seconds", nil, 0, false},
		{"duration_seconds_count", nil, 6, true},
		{"duration_seconds_count", []string{"outcome", "failure"}, 2, true},
		{"duration_seconds_sum", nil, 3.9, true},
		{"duration_seconds_bucket", []string{"le", "+Inf"}, 6, true},
		{"duration_seconds_bucket", []string{"le", "0.1", "outcome", "success"}, 1, true},
		{"latency", []string{"quantile", "0.5"}, 0.2, true},
		{"latency_count", nil, 5, true},
	} {
		if got, ok := m.Value(tc.name, tc.labels...); got != tc.want || ok != tc.ok {
			t.Errorf("Value(%s, %v) = %v, %v; want %v, %v", tc.name, tc.labels, got, ok, tc.want, tc.ok)
		}
	}
}

func TestScrape(t *testing.T) {
	rc := NewRecorder(t)
	rc.SetRespond(func(Request, int) (int, string) { return 200, scrape })
	if v, ok := Scrape(t, rc.URL("/metrics")).Value("pending"); !ok || v != 7 {
		t.Errorf("Scrape read pending = %v, %v; want 7", v, ok)
	}
}

// RFC 4231, test case 2.
func TestHexHMAC(t *testing.T) {
	const want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got := HexHMAC("Jefe", []byte("what do ya want for nothing?")); got != want {
		t.Errorf("HexHMAC = %s, want %s", got, want)
	}
}
