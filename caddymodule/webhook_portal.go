package caddymodule

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Portal{})
}

// portalPrefix is where webhook_portal serves the portal page.
const portalPrefix = "/webhooks/portal/"

// Portal is the tenant portal: it lets the customers of a service manage
// their own app's webhooks, on a site they reach without operator
// credentials. It serves the console, limited to one app, at
// /webhooks/portal/, and the management API under /webhooks/apps/{appId}/
// to requests with "Authorization: Bearer <token>", where the token is one
// the operator minted for that app (POST
// /webhooks/apps/{appId}/portal-tokens on the admin endpoint or through
// webhook_admin):
//
//	handle /webhooks/* {
//	    webhook_portal {
//	        frame_ancestors https://app.example.com
//	    }
//	}
//
// A token grants every route under /webhooks/apps/{its appId}/ but the
// portal-tokens routes; every other route answers 403. A request without
// a valid token answers 401, and an address that presented too many
// invalid tokens 429 for a while. It answers every request itself and
// never calls the next handler.
type Portal struct {
	// FrameAncestors are the origins (https://app.example.com, or 'self')
	// that may show the portal page in a frame: its Content-Security-Policy
	// frame-ancestors. Default: none may.
	FrameAncestors []string `json:"frame_ancestors,omitempty"`

	// Theme sets the page's CSS custom properties (--accent, --font, ...;
	// see the README for the list) to a service's colours and font.
	Theme map[string]string `json:"theme,omitempty"`

	// MaxTokenFailures is how many invalid tokens one client address may
	// present per TokenFailureWindow before its requests answer 429.
	// Default: 10.
	MaxTokenFailures int `json:"max_token_failures,omitempty"`

	// TokenFailureWindow is the window of MaxTokenFailures; an address
	// regains one failure every window/max. Default: 1m.
	TokenFailureWindow caddy.Duration `json:"token_failure_window,omitempty"`

	app      *App
	api      *api
	files    http.Handler
	policy   string
	theme    []byte
	failures *failureLimit
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Portal) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_portal",
		New: func() caddy.Module { return new(Portal) },
	}
}

// Provision finds the webhooks app and builds the page's policy and theme.
func (h *Portal) Provision(ctx caddy.Context) error {
	app, err := ctx.App("webhooks")
	if err != nil {
		return fmt.Errorf("getting webhooks app: %v", err)
	}
	h.app = app.(*App)
	h.logger = ctx.Logger()
	h.api = newAPI(h.app.Outbox, h.logger)

	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		return fmt.Errorf("opening the console files: %v", err)
	}
	h.files = http.StripPrefix(portalPrefix, http.FileServerFS(sub))

	ancestors := "'none'"
	if len(h.FrameAncestors) > 0 {
		ancestors = strings.Join(h.FrameAncestors, " ")
	}
	// The console's policy, but for who may frame the page.
	h.policy = strings.Replace(consolePolicy, "frame-ancestors 'none'", "frame-ancestors "+ancestors, 1)

	var css strings.Builder
	css.WriteString(":root {\n")
	for _, name := range slices.Sorted(maps.Keys(h.Theme)) {
		fmt.Fprintf(&css, "  %s: %s;\n", name, h.Theme[name])
	}
	css.WriteString("}\n")
	h.theme = []byte(css.String())

	max, window := h.MaxTokenFailures, time.Duration(h.TokenFailureWindow)
	if max == 0 {
		max = 10
	}
	if window == 0 {
		window = time.Minute
	}
	h.failures = newFailureLimit(max, window)
	return nil
}

// frameAncestor is an origin a CSP source list accepts, with an optional
// leading wildcard label, and nothing that could end the directive.
var frameAncestor = regexp.MustCompile(`^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?$`)

// themeVariables are the custom properties the page's stylesheet reads.
var themeVariables = []string{"--fg", "--muted", "--line", "--bg", "--soft", "--accent", "--ok", "--bad", "--wait", "--font"}

// themeValue is what a theme value may hold: colours, lengths, font lists,
// functions such as rgb(); never ; { } < > \ or a url(), which could break
// out of the declaration or load from elsewhere.
var themeValue = regexp.MustCompile(`^[A-Za-z0-9 #%.,()'"+/_-]{1,200}$`)

// Validate checks the origins and the theme.
func (h *Portal) Validate() error {
	for _, o := range h.FrameAncestors {
		if o != "'self'" && !frameAncestor.MatchString(o) {
			return fmt.Errorf("frame_ancestors: %q is not an origin such as https://app.example.com or 'self'", o)
		}
	}
	if slices.Contains(h.FrameAncestors, "'none'") {
		return fmt.Errorf("frame_ancestors: 'none' is the default; leave the option out")
	}
	for name, v := range h.Theme {
		if !slices.Contains(themeVariables, name) {
			return fmt.Errorf("theme: unknown variable %q; known: %s", name, strings.Join(themeVariables, " "))
		}
		if !themeValue.MatchString(v) || strings.Contains(strings.ToLower(v), "url(") {
			return fmt.Errorf("theme: the value of %s may hold only letters, digits, spaces and # %% . , ( ) ' \" + / _ -, at most 200", name)
		}
	}
	if h.MaxTokenFailures < 0 {
		return fmt.Errorf("max_token_failures: must not be negative")
	}
	if h.TokenFailureWindow < 0 {
		return fmt.Errorf("token_failure_window: must not be negative")
	}
	return nil
}

// ServeHTTP answers a portal page or portal API request.
func (h *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	p := r.URL.Path
	if p == strings.TrimSuffix(portalPrefix, "/") {
		// Relative, to keep whatever prefix a proxy put in front.
		w.Header().Set("Location", "portal/")
		w.WriteHeader(http.StatusMovedPermanently)
		return nil
	}
	if strings.HasPrefix(p, portalPrefix) {
		h.servePage(w, r, strings.TrimPrefix(p, portalPrefix))
		return nil
	}
	t, ok := h.authenticate(w, r)
	if !ok {
		return nil
	}
	if !portalScope(r, t.AppID) {
		writeError(w, http.StatusForbidden, "authorization: a portal token grants only its app's routes under /webhooks/apps/"+t.AppID+"/")
		return nil
	}
	h.api.ServeHTTP(w, r)
	return nil
}

// servePage serves the page's files, its theme and the session it starts
// from. The files are the console's; the page turns to tenant mode on
// finding itself under /webhooks/portal/.
func (h *Portal) servePage(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "the portal page is read-only; use the API under /webhooks/apps/")
		return
	}
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-cache")
	switch name {
	case "session":
		h.serveSession(w, r)
		return
	case "theme.css":
		hdr.Set("Content-Type", "text/css; charset=utf-8")
		_, _ = w.Write(h.theme)
		return
	}
	hdr.Set("Content-Security-Policy", h.policy)
	if len(h.FrameAncestors) == 0 {
		// For browsers older than frame-ancestors.
		hdr.Set("X-Frame-Options", "DENY")
	}
	h.files.ServeHTTP(w, r)
}

// portalSession is what the page learns from its token: the app it may
// manage, until when, and the event catalog (GET /webhooks/events is not
// among the routes a token grants).
type portalSession struct {
	AppID     string    `json:"appId"`
	ExpiresAt time.Time `json:"expiresAt"`
	Events    []string  `json:"events"`
}

func (h *Portal) serveSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	t, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, portalSession{AppID: t.AppID, ExpiresAt: t.Expires, Events: h.app.Outbox().Events()})
}

// authenticate checks the request's Bearer token. When it is not valid it
// answers the request (401, 429 or 503) and returns false.
func (h *Portal) authenticate(w http.ResponseWriter, r *http.Request) (portalToken, bool) {
	now := time.Now()
	addr := clientPrefix(r)
	if wait, blocked := h.failures.blocked(addr, now); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Round(time.Second)/time.Second))))
		writeError(w, http.StatusTooManyRequests, "authorization: too many invalid portal tokens from this address; retry later")
		return portalToken{}, false
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="webhooks portal"`)
		writeError(w, http.StatusUnauthorized, "authorization: missing; send Authorization: Bearer <portal token>")
		return portalToken{}, false
	}
	ob := h.app.Outbox()
	if ob == nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "webhooks app is not running")
		return portalToken{}, false
	}
	scheme, token, _ := strings.Cut(auth, " ")
	err := errBadToken
	var t portalToken
	if strings.EqualFold(scheme, "Bearer") {
		t, err = verifyPortalToken(r.Context(), ob, strings.TrimSpace(token), now)
	}
	switch {
	case err == nil:
		return t, true
	case errors.Is(err, errBadToken):
		h.failures.fail(addr, now)
		// The token is never logged; the address is what an operator
		// needs to see a guesser.
		h.logger.Debug("portal token refused", zap.String("remote_ip", addr.Addr().String()))
		w.Header().Set("WWW-Authenticate", `Bearer realm="webhooks portal", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, errBadToken.Error())
	default:
		writeOutboxError(w, h.logger, err)
	}
	return portalToken{}, false
}

// portalScope reports whether a token of appID grants the request's path:
// a route under /webhooks/apps/{appID}/, whatever it is (so routes added
// later are covered), but for the portal-tokens routes. A path that is not
// clean is refused whatever it names, since what it names depends on who
// cleans it.
func portalScope(r *http.Request, appID string) bool {
	if path.Clean(r.URL.Path) != r.URL.Path {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/webhooks/apps/")
	if !ok {
		return false
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 2 {
		return false
	}
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" || u == "." || u == ".." {
			return false
		}
		segs[i] = u
	}
	return segs[0] == appID && segs[1] != "portal-tokens"
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	webhook_portal [<matcher>] {
//	    frame_ancestors    <origin>...
//	    theme              <variable> <value>
//	    max_token_failures <n> [<window>]
//	}
//
// frame_ancestors and theme may be repeated. A colour value starting with
// # must be quoted ("#7c3aed"), or the Caddyfile reads a comment.
func (h *Portal) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "frame_ancestors":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("frame_ancestors: want at least one origin")
			}
			h.FrameAncestors = append(h.FrameAncestors, args...)
		case "theme":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("theme: want a variable and a value, such as theme --accent \"#7c3aed\"")
			}
			if h.Theme == nil {
				h.Theme = map[string]string{}
			}
			h.Theme[args[0]] = args[1]
		case "max_token_failures":
			n, err := parsePositiveInt(d)
			if err != nil {
				return err
			}
			h.MaxTokenFailures = n
			if d.NextArg() {
				dur, err := caddy.ParseDuration(d.Val())
				if err != nil || dur <= 0 {
					return d.Errf("max_token_failures: invalid window %q", d.Val())
				}
				h.TokenFailureWindow = caddy.Duration(dur)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized webhook_portal option '%s'", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Portal)(nil)
	_ caddy.Validator             = (*Portal)(nil)
	_ caddyhttp.MiddlewareHandler = (*Portal)(nil)
	_ caddyfile.Unmarshaler       = (*Portal)(nil)
)
