package caddymodule

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// consoleFiles is the console: plain HTML, CSS and JavaScript modules, no
// build step, embedded so it works with no network and no CDN.
//
//go:embed console
var consoleFiles embed.FS

// consolePolicy keeps the page to its own origin: it loads only its own
// files, talks only to the management API beside it, and cannot be framed
// (a framed console could be clicked by another site).
const consolePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// newConsole returns the handler of the console under /webhooks/console/.
// The page finds the API by relative URLs, so it works behind any route
// that keeps the /webhooks/ prefix.
func newConsole() http.Handler {
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(consolePrefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "the console is read-only; use the API under /webhooks/")
			return
		}
		if !strings.HasPrefix(r.URL.Path, consolePrefix) {
			// Set by hand: http.Redirect would make it absolute, and a
			// relative one keeps whatever prefix a proxy put in front.
			w.Header().Set("Location", "console/")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", consolePolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Embedded files have no modification time to revalidate with;
		// they are small, and this way an upgraded Caddy's console is
		// the one loaded, never a cached older one.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
