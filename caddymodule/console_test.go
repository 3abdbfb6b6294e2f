package caddymodule

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestConsoleServesPage(t *testing.T) {
	h := newConsole()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/webhooks/console/", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /webhooks/console/ answered %d %q, want 200 text/html", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !strings.Contains(rec.Body.String(), `<script type="module" src="app.js">`) {
		t.Errorf("the console page does not load app.js as a module:\n%s", rec.Body)
	}
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}

	for _, tc := range []struct {
		method, path string
		status       int
		location     string
	}{
		{"GET", "/webhooks/console", http.StatusMovedPermanently, "console/"},
		{"GET", "/webhooks/console/app.js", http.StatusOK, ""},
		{"HEAD", "/webhooks/console/style.css", http.StatusOK, ""},
		{"GET", "/webhooks/console/nope.js", http.StatusNotFound, ""},
		{"POST", "/webhooks/console/", http.StatusMethodNotAllowed, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || rec.Header().Get("Location") != tc.location {
			t.Errorf("%s %s answered %d Location %q, want %d %q", tc.method, tc.path, rec.Code, rec.Header().Get("Location"), tc.status, tc.location)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/webhooks/console/app.js", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js is served as %q; browsers refuse modules that are not JavaScript", ct)
	}
}

// TestConsoleSelfContained checks what the page needs offline: every file
// it references is embedded, nothing comes from another host, and the API
// is reached by relative URLs.
func TestConsoleSelfContained(t *testing.T) {
	files, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"|from '([^']+)'`)
	// Loads a browser would make that refs does not see: CSS imports and
	// url(), absolute fetches.
	external := regexp.MustCompile("(?i)@import|url\\(\\s*['\"]?(?:https?:|//)|fetch\\(\\s*['\"`](?:https?:|/)")
	err = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		text := string(raw)
		if m := external.FindString(text); m != "" {
			t.Errorf("%s refers to %q: the console must work with no network", name, m)
		}
		for _, m := range refs.FindAllStringSubmatch(text, -1) {
			ref := m[1] + m[2]
			if strings.HasPrefix(ref, "data:") || strings.HasPrefix(ref, "../") {
				continue // inline, or the API beside the console
			}
			if strings.HasPrefix(ref, "/") || strings.Contains(ref, ":") {
				t.Errorf("%s refers to %q; want a relative URL so the console works under any prefix", name, ref)
				continue
			}
			if _, err := fs.Stat(files, strings.TrimPrefix(ref, "./")); err != nil {
				t.Errorf("%s refers to %q, which is not embedded", name, ref)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAdminRoutesConsole(t *testing.T) {
	h := &Admin{api: newAPI(nil, nil), console: newConsole()}
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/webhooks/console/", nil), nil); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Webhooks console") {
		t.Errorf("webhook_admin answered GET /webhooks/console/ with %d, want the console page", rec.Code)
	}
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/webhooks/openapi.json", nil), nil); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rec.Body.String() != string(openAPIDocument) {
		t.Errorf("webhook_admin answered GET /webhooks/openapi.json with %d, want the document", rec.Code)
	}
}
