package receiver

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/bodysize"
	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

func init() {
	caddy.RegisterModule(Handler{})
}

const (
	defaultScheme    = "x-signature"
	defaultMaxBody   = bodysize.Default
	defaultTolerance = 5 * time.Minute
	// defaultReadTimeout is long enough for a megabyte over a slow mobile
	// link, and short enough that connections trickling bodies cannot pile
	// up for long.
	defaultReadTimeout = 10 * time.Second

	// DuplicateHeader is set to "true" on the 200 that answers a delivery
	// already forwarded within the replay window.
	DuplicateHeader = "Webhook-Duplicate"
)

// Handler verifies the signature of each inbound webhook and lets only
// genuine requests continue to the next handler, usually reverse_proxy.
// The body is read once, up to MaxBody, verified, and handed on intact.
//
// A request that fails verification is answered 401 with a JSON body
// {"error": "..."} naming the failed check (missing header, malformed or
// non-matching signature, timestamp outside tolerance); a body over
// MaxBody is answered 413, one that does not arrive within ReadTimeout
// 408. None reaches the next handler. The headers are checked before the
// body is read: a request whose signature header is missing or malformed
// is answered 401 at once, without reading the body it declared, and its
// connection is closed. Memory for a body is taken as its bytes arrive,
// never reserved from its Content-Length.
type Handler struct {
	// Secrets are the signing secrets. A request signed with any one of
	// them passes, so a secret is rotated by listing the old and the new
	// one until senders have switched. {env.*} and {file.*} placeholders
	// are expanded when the config is loaded. For the standard scheme, a
	// secret of the form whsec_<base64> is base64-decoded as the Standard
	// Webhooks specification says; any other secret, for every scheme, is
	// used as its bytes.
	Secrets []string `json:"secrets,omitempty"`

	// Scheme is the signature convention of the sender: x-signature
	// (default: X-Signature, hex HMAC-SHA256 of the body, as this
	// project's sender and Capawesome Cloud send), standard (Standard
	// Webhooks and Svix), github, stripe, shopify or slack.
	Scheme string `json:"scheme,omitempty"`

	// Header overrides the name of the header that carries the signature,
	// for a sender that uses a scheme under another name. Timestamp and id
	// headers keep the scheme's names.
	Header string `json:"header,omitempty"`

	// MaxBody is the largest body, in bytes, that is read and verified;
	// a larger one is answered 413. Default: 1MB (1,000,000 bytes).
	MaxBody int64 `json:"max_body,omitempty"`

	// ReadTimeout is how long the body may take to arrive, counted from
	// when this handler starts reading it. A body that is not whole by then
	// is answered 408 and not forwarded, and its connection is closed, so
	// a client cannot hold a connection open by sending a byte at a time.
	// Default: 10s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`

	// Tolerance is how far the signed timestamp of the standard, stripe and
	// slack schemes may be from this server's clock, in either direction,
	// before the request is refused as expired. Default: 5m.
	Tolerance caddy.Duration `json:"tolerance,omitempty"`

	// ReplayWindow, when set, makes a delivery that was already forwarded
	// and answered 2xx within this window be answered 200 with the header
	// Webhook-Duplicate: true instead of reaching the backend again, so a
	// sender that retries after a lost response is satisfied and the
	// backend sees each delivery once. A second copy that arrives while the
	// first is still being handled is answered 409 with Retry-After, so the
	// sender tries again later. Deliveries are recognised by the id the
	// scheme carries: webhook-id or svix-id for standard, X-GitHub-Delivery
	// for github, and webhook-id for x-signature (this project's sender
	// sends it beside X-Signature); a request without one is forwarded
	// as usual. The stripe, shopify and slack schemes carry no id header,
	// so the window cannot be used with them.
	//
	// A delivery is known by its id together with the request's host
	// (lower case, without port) and path (without ; parameters, cleaned
	// of ., .. and empty segments, lower case), so that spelling the host
	// or path another way does not get a second copy through. An id
	// longer than 256 bytes is answered 400.
	//
	// Without ReplayStorage the memory of ids is per Caddy process, kept in
	// RAM (at most 100,000 ids per set of secrets, a fixed size each), and
	// survives config reloads but not restarts.
	ReplayWindow caddy.Duration `json:"replay_window,omitempty"`

	// ReplayStorage, a postgres:// or postgresql:// URL, keeps the memory
	// of the replay window in that PostgreSQL database instead, shared by
	// every receiver that names it: a delivery forwarded by one Caddy is a
	// duplicate to all the others. The table is created on first use. While
	// the database cannot be reached, verified deliveries are answered 503
	// with Retry-After rather than risk a second forward. {env.*}
	// placeholders are expanded when the config is loaded; the password is
	// never logged.
	ReplayStorage string `json:"replay_storage,omitempty"`

	scheme         *signature.Scheme
	keys           [][]byte
	replay         replayStore
	replayPool     *caddy.UsagePool
	replayPoolName string
	logger         *zap.Logger
	now            func() time.Time
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_verify",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision expands the secrets, derives the keys and sets defaults.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	if h.Scheme == "" {
		h.Scheme = defaultScheme
	}
	h.scheme = signature.SchemeByName(h.Scheme)
	if h.scheme == nil {
		return fmt.Errorf("scheme: unknown %q; want one of %s", h.Scheme, strings.Join(signature.SchemeNames(), ", "))
	}

	// A fresh replacer knows only global placeholders ({env.*}, {file.*},
	// {system.*}); request placeholders make no sense for a secret.
	repl := caddy.NewReplacer()
	h.keys = make([][]byte, 0, len(h.Secrets))
	for i, s := range h.Secrets {
		secret, err := repl.ReplaceOrErr(s, true, false)
		if err != nil {
			return fmt.Errorf("secret %d: %w", i+1, err)
		}
		if secret == "" {
			return fmt.Errorf("secret %d: empty", i+1)
		}
		key, err := h.scheme.Key(secret)
		if err != nil {
			return fmt.Errorf("secret %d: decoding whsec_ secret: %w", i+1, err)
		}
		h.keys = append(h.keys, key)
	}

	if h.MaxBody == 0 {
		h.MaxBody = defaultMaxBody
	}
	if h.Tolerance == 0 {
		h.Tolerance = caddy.Duration(defaultTolerance)
	}
	if h.ReadTimeout == 0 {
		h.ReadTimeout = caddy.Duration(defaultReadTimeout)
	}

	if h.ReplayWindow <= 0 || !h.scheme.HasID() {
		// Validate says why, if replay options were given.
		return nil
	}
	if h.ReplayStorage != "" {
		return h.provisionReplayStorage(repl)
	}
	h.replayPool, h.replayPoolName = replayPool, replayPoolKey(h.scheme.Name, h.keys)
	c, _, err := replayPool.LoadOrNew(h.replayPoolName, func() (caddy.Destructor, error) {
		return newReplayCache(replayCapacity), nil
	})
	if err != nil {
		return fmt.Errorf("replay_window: %w", err)
	}
	h.replay = c.(*replayCache)
	return nil
}

// provisionReplayStorage joins, or opens, the PostgreSQL memory that
// ReplayStorage names.
func (h *Handler) provisionReplayStorage(repl *caddy.Replacer) error {
	dsn, err := repl.ReplaceOrErr(h.ReplayStorage, true, true)
	if err != nil {
		return fmt.Errorf("replay_storage: %w", err)
	}
	if !isPostgresURL(dsn) {
		return errors.New("replay_storage: must be a postgres:// or postgresql:// URL")
	}
	h.replayPool, h.replayPoolName = replayStoragePool, replayStorageKey(dsn)
	store, loaded, err := replayStoragePool.LoadOrNew(h.replayPoolName, func() (caddy.Destructor, error) {
		// Its background work outlives this config, and so must its logger.
		return openPostgresReplay(dsn, caddy.Log().Named("http.handlers.webhook_verify"))
	})
	if err != nil {
		h.replayPool = nil
		return fmt.Errorf("replay_storage: %w", err)
	}
	h.replay = store.(*postgresReplay)
	if !loaded {
		h.logger.Info("replay window shared through PostgreSQL", zap.String("database", describeDSN(dsn)))
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if len(h.Secrets) == 0 {
		return errors.New("secret: at least one is required")
	}
	if h.MaxBody < 0 {
		return fmt.Errorf("max_body: must not be negative, got %d", h.MaxBody)
	}
	if h.Tolerance < 0 {
		return fmt.Errorf("tolerance: must not be negative, got %s", time.Duration(h.Tolerance))
	}
	if h.ReadTimeout < 0 {
		return fmt.Errorf("read_timeout: must not be negative, got %s", time.Duration(h.ReadTimeout))
	}
	if h.ReplayWindow < 0 {
		return fmt.Errorf("replay_window: must not be negative, got %s", time.Duration(h.ReplayWindow))
	}
	if h.ReplayWindow > 0 && h.scheme != nil && !h.scheme.HasID() {
		return fmt.Errorf("replay_window: needs a delivery id, and scheme %s carries none", h.Scheme)
	}
	if h.ReplayStorage != "" && h.ReplayWindow == 0 {
		return errors.New("replay_storage: needs replay_window")
	}
	return nil
}

// ServeHTTP verifies the request and, if it is genuine and not a
// duplicate, passes it to next with its body intact.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The headers decide first. A request whose signature header is absent
	// or unreadable fails whatever its body, so it is turned away before a
	// byte of the body is read or memory is taken for it. Without keys the
	// scheme computes no HMAC and fails only on what the headers show.
	err := h.scheme.Verify(signature.Request{Header: r.Header, SignatureHeader: h.Header}, nil)
	if errors.Is(err, signature.ErrMissing) || errors.Is(err, signature.ErrMalformed) {
		h.decided(resultOf(err), err)
		return refuseUnread(w, r, http.StatusUnauthorized, err.Error())
	}
	if r.ContentLength > h.MaxBody {
		h.decided(resultTooLarge, nil)
		return refuseUnread(w, r, http.StatusRequestEntityTooLarge, h.tooLarge())
	}
	var id string
	if h.replay != nil {
		id = h.scheme.ID(r.Header)
		if len(id) > maxDeliveryID {
			h.logResult(resultIDTooLong, nil)
			return refuseUnread(w, r, http.StatusBadRequest,
				fmt.Sprintf("%s: delivery id longer than %d bytes", idHeader(r.Header, id), maxDeliveryID))
		}
	}

	body, err := h.readBody(w, r)
	switch {
	case errors.Is(err, errBodyTooLarge):
		h.decided(resultTooLarge, nil)
		return refuseUnread(w, r, http.StatusRequestEntityTooLarge, h.tooLarge())
	case errors.Is(err, os.ErrDeadlineExceeded):
		h.logResult(resultReadTimeout, nil)
		return refuseUnread(w, r, http.StatusRequestTimeout,
			fmt.Sprintf("body not received within read_timeout of %s", time.Duration(h.ReadTimeout)))
	case err != nil:
		h.logResult(resultUnreadable, err)
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading webhook body: %w", err))
	}

	err = h.scheme.Verify(signature.Request{
		Header:          r.Header,
		Body:            body,
		SignatureHeader: h.Header,
		Now:             h.now(),
		Tolerance:       time.Duration(h.Tolerance),
	}, h.keys)
	if err != nil {
		h.decided(resultOf(err), err)
		return writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
	}

	setBody(r, body)
	if id == "" {
		h.decided(resultValid, nil)
		return next.ServeHTTP(w, r)
	}
	return h.serveOnce(w, r, next, id)
}

// tooLarge is the error of a body over MaxBody.
func (h *Handler) tooLarge() string {
	return fmt.Sprintf("body exceeds max_body of %d bytes", h.MaxBody)
}

// readBody reads the body within ReadTimeout. The deadline bounds the
// body only: net/http lifts it once the body has been read to its end,
// before the backend is asked.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	// The deadline is real time, whatever clock verifies timestamps.
	// HTTP/1, HTTP/2 and HTTP/3 all take one; a writer that hides it (a
	// wrapper without Unwrap) leaves the server's own timeouts in charge.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Duration(h.ReadTimeout)))
	return readBody(r, h.MaxBody)
}

// idHeader names the header that carried a delivery id, for an error.
func idHeader(header http.Header, id string) string {
	for _, name := range []string{signature.StandardIDHeader, signature.SvixIDHeader, signature.GitHubDeliveryHeader} {
		if header.Get(name) == id {
			return name
		}
	}
	return "delivery id"
}

// requestPath is the path the sender asked for, before any rewrite or
// handle_path strip: two endpoints rewritten to one path are still two.
func requestPath(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.Path
	}
	return r.URL.Path
}

// serveOnce forwards a verified delivery unless its id was already answered
// 2xx within the replay window, or is being handled now.
func (h *Handler) serveOnce(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, id string) error {
	key := newReplayKey(r.Host, requestPath(r), id)
	state, claim, err := h.replay.begin(r.Context(), key, h.now())
	if err != nil {
		// Fail closed: forwarding without the shared memory could hand the
		// backend a delivery another receiver already forwarded. A sender
		// that hung up is no outage.
		if r.Context().Err() == nil {
			h.logger.Error("replay storage unavailable; delivery refused", zap.Error(err))
		}
		h.logResult(resultUnavailable, nil)
		w.Header().Set("Retry-After", "5")
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "replay store unavailable"})
	}
	switch state {
	case replaySeen:
		h.decided(resultDuplicate, nil)
		w.Header().Set(DuplicateHeader, "true")
		return writeJSON(w, http.StatusOK, map[string]bool{"duplicate": true})
	case replayInFlight:
		h.decided(resultDuplicate, nil)
		w.Header().Set(DuplicateHeader, "true")
		w.Header().Set("Retry-After", "5")
		return writeJSON(w, http.StatusConflict, map[string]string{"error": "a delivery with this id is being handled"})
	}
	h.decided(resultValid, nil)

	rec := &statusRecorder{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	delivered := false
	// Deferred so that a panic further down cannot leave the id claimed,
	// which would turn every retry into a 409.
	defer func() {
		if err := claim.finish(r.Context(), delivered, h.now(), time.Duration(h.ReplayWindow)); err != nil {
			h.logger.Error("replay storage: finishing a delivery", zap.Bool("delivered", delivered), zap.Error(err))
		}
	}()
	err = next.ServeHTTP(rec, r)
	delivered = err == nil && (rec.status == 0 || rec.status/100 == 2)
	return err
}

// decided counts and logs one verification outcome.
func (h *Handler) decided(result string, err error) {
	verifications.WithLabelValues(result).Inc()
	h.logResult(result, err)
}

// The results of requests turned away without a verification result,
// shown in the debug log only.
const (
	resultIDTooLong   = "id_too_long"
	resultReadTimeout = "read_timeout"
	resultUnreadable  = "unreadable"
	resultUnavailable = "replay_store_unavailable"
)

// logResult writes the one debug line of a request. A request turned away
// before its verification was decided, or after it for want of the replay
// store, is logged with its own result but not counted: the metric counts
// verifications.
func (h *Handler) logResult(result string, err error) {
	if ce := h.logger.Check(zap.DebugLevel, "webhook verification"); ce != nil {
		fields := []zap.Field{zap.String("scheme", h.Scheme), zap.String("result", result)}
		if err != nil {
			// Verification errors never carry a secret or an expected
			// signature, nor read errors a byte of the body, so the
			// reason is safe to log.
			fields = append(fields, zap.String("reason", err.Error()))
		}
		ce.Write(fields...)
	}
}

// Cleanup releases this config's hold on the shared replay memory.
func (h *Handler) Cleanup() error {
	if h.replayPool != nil {
		_, err := h.replayPool.Delete(h.replayPoolName)
		return err
	}
	return nil
}

// resultOf maps a verification error to its metric label.
func resultOf(err error) string {
	switch {
	case errors.Is(err, signature.ErrMissing):
		return resultMissing
	case errors.Is(err, signature.ErrExpired):
		return resultExpired
	default:
		return resultInvalid
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
