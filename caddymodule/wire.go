package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/httpjson"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// webhookView is a webhook as the API shows it: whether a secret is set,
// never what it is, and likewise the names of sensitive headers, never
// their values. Delivery settings left to the app's defaults are absent.
type webhookView struct {
	ID               string            `json:"id"`
	AppID            string            `json:"appId"`
	Name             string            `json:"name"`
	URL              string            `json:"url"`
	Events           []string          `json:"events"`
	HasSecret        bool              `json:"hasSecret"`
	Enabled          bool              `json:"enabled"`
	DisabledReason   string            `json:"disabledReason,omitempty"`
	Headers          map[string]string `json:"headers,omitempty"`
	SensitiveHeaders []string          `json:"sensitiveHeaders,omitempty"`
	Filter           string            `json:"filter,omitempty"`
	RetrySchedule    *[]string         `json:"retrySchedule,omitempty"`
	Timeout          string            `json:"timeout,omitempty"`
	MaxInFlight      int               `json:"maxInFlight,omitempty"`
	RateLimit        int               `json:"rateLimit,omitempty"`
	CreatedAt        time.Time         `json:"createdAt"`
	UpdatedAt        time.Time         `json:"updatedAt"`
}

func newWebhookView(w *outbox.Webhook) webhookView {
	v := webhookView{
		ID: w.ID, AppID: w.AppID, Name: w.Name, URL: w.URL, Events: w.Events,
		HasSecret: w.Secret != "", Enabled: w.Enabled, DisabledReason: w.DisabledReason,
		Filter: w.Filter, MaxInFlight: w.MaxInFlight, RateLimit: w.RateLimit,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt,
	}
	for name, value := range w.Headers {
		if outbox.SensitiveHeader(name) {
			v.SensitiveHeaders = append(v.SensitiveHeaders, name)
			continue
		}
		if v.Headers == nil {
			v.Headers = map[string]string{}
		}
		v.Headers[name] = value
	}
	slices.Sort(v.SensitiveHeaders)
	if w.RetrySchedule != nil {
		rs := make([]string, len(w.RetrySchedule))
		for i, d := range w.RetrySchedule {
			rs[i] = d.String()
		}
		v.RetrySchedule = &rs
	}
	if w.Timeout > 0 {
		v.Timeout = w.Timeout.String()
	}
	return v
}

// webhookInput is a create or edit request body. On edit, absent fields
// stay as they are; an empty secret removes the secret. The per-webhook
// options are a JSON merge patch (RFC 7386): null returns one to the app's
// default, and headers merge name by name.
type webhookInput struct {
	Name    *string   `json:"name,omitempty"`
	URL     *string   `json:"url,omitempty"`
	Events  *[]string `json:"events,omitempty"`
	Secret  *string   `json:"secret,omitempty"`
	Enabled *bool     `json:"enabled,omitempty"`

	Headers       json.RawMessage `json:"headers,omitempty"`
	Filter        json.RawMessage `json:"filter,omitempty"`
	RetrySchedule json.RawMessage `json:"retrySchedule,omitempty"`
	Timeout       json.RawMessage `json:"timeout,omitempty"`
	MaxInFlight   json.RawMessage `json:"maxInFlight,omitempty"`
	RateLimit     json.RawMessage `json:"rateLimit,omitempty"`
}

// outbox decodes the input. Its errors name the field (and a header by
// its name), never a value.
func (in webhookInput) outbox() (outbox.WebhookInput, error) {
	out := outbox.WebhookInput{Name: in.Name, URL: in.URL, Events: in.Events, Secret: in.Secret, Enabled: in.Enabled}
	isNull := func(raw json.RawMessage) bool { return string(raw) == "null" }
	if raw := in.Headers; raw != nil {
		if isNull(raw) {
			out.ReplaceHeaders = true
		} else {
			var fields map[string]json.RawMessage
			if raw[0] != '{' || json.Unmarshal(raw, &fields) != nil {
				return out, &outbox.ValidationError{Field: "headers", Message: "must be an object of header names to strings (or null to remove one)"}
			}
			out.Headers = make(map[string]*string, len(fields))
			for name, v := range fields {
				if isNull(v) {
					out.Headers[name] = nil
					continue
				}
				var s string
				if v[0] != '"' || json.Unmarshal(v, &s) != nil {
					return out, &outbox.ValidationError{Field: "headers", Message: fmt.Sprintf("the value of %q must be a string, or null to remove it", name)}
				}
				out.Headers[name] = &s
			}
		}
	}
	if raw := in.Filter; raw != nil {
		var s string
		if !isNull(raw) && (raw[0] != '"' || json.Unmarshal(raw, &s) != nil) {
			return out, &outbox.ValidationError{Field: "filter", Message: "must be a string (a CEL expression), or \"\" or null to remove it"}
		}
		out.Filter = &s
	}
	if raw := in.RetrySchedule; raw != nil {
		if isNull(raw) {
			out.Unset = append(out.Unset, "retrySchedule")
		} else {
			var list []string
			if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
				return out, &outbox.ValidationError{Field: "retrySchedule", Message: `must be an array of durations such as ["10s","5m"]`}
			}
			rs := make([]time.Duration, len(list))
			for i, s := range list {
				d, err := caddy.ParseDuration(s)
				if err != nil {
					return out, &outbox.ValidationError{Field: "retrySchedule", Message: fmt.Sprintf("%q is not a duration such as \"10s\"", s)}
				}
				rs[i] = d
			}
			out.RetrySchedule = &rs
		}
	}
	if raw := in.Timeout; raw != nil {
		if isNull(raw) {
			out.Unset = append(out.Unset, "timeout")
		} else {
			var s string
			var d time.Duration
			err := json.Unmarshal(raw, &s)
			if err == nil {
				d, err = caddy.ParseDuration(s)
			}
			if raw[0] != '"' || err != nil {
				return out, &outbox.ValidationError{Field: "timeout", Message: `must be a duration such as "10s"`}
			}
			out.Timeout = &d
		}
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  **int
	}{{"maxInFlight", in.MaxInFlight, &out.MaxInFlight}, {"rateLimit", in.RateLimit, &out.RateLimit}} {
		if f.raw == nil {
			continue
		}
		if isNull(f.raw) {
			out.Unset = append(out.Unset, f.name)
			continue
		}
		var n int
		if err := json.Unmarshal(f.raw, &n); err != nil {
			return out, &outbox.ValidationError{Field: f.name, Message: "must be an integer"}
		}
		*f.dst = &n
	}
	return out, nil
}

// ingestView is what webhook_events answers.
type ingestView struct {
	ID         string `json:"id"`
	Deliveries int    `json:"deliveries"`
}

// listEnvelope is the shape of every list: data, and for paged lists the
// cursor of the next page (null on the last page).
type listEnvelope struct {
	Data       any     `json:"data"`
	NextCursor *string `json:"nextCursor,omitempty"`
}

// deliveryView is a delivery as the API shows it: the delivery, a summary
// of its last attempt, the event body it sends, and on a single delivery
// every attempt.
type deliveryView struct {
	ID            string        `json:"id"`
	AppID         string        `json:"appId"`
	WebhookID     string        `json:"webhookId"`
	EventID       string        `json:"eventId"`
	Event         string        `json:"event"`
	Status        outbox.Status `json:"status"`
	CreatedAt     time.Time     `json:"createdAt"`
	NextAttemptAt *time.Time    `json:"nextAttemptAt,omitempty"`
	Attempts      int           `json:"attempts"`
	// RequestBody is the body exactly as sent, as a string: re-encoding
	// it as JSON would change its bytes, and receivers check signatures
	// over the bytes. Null once the event has expired.
	RequestBody *string `json:"requestBody"`

	// The last attempt; absent before the first.
	SentAt             *time.Time `json:"sentAt,omitempty"`
	ResponseStatusCode int        `json:"responseStatusCode,omitempty"`
	ResponseBody       string     `json:"responseBody,omitempty"`
	LastError          string     `json:"lastError,omitempty"`
	DurationMs         *int64     `json:"durationMs,omitempty"`

	AttemptLog []attemptView `json:"attemptLog,omitempty"`
}

// attemptView is one attempt of a delivery.
type attemptView struct {
	SentAt             time.Time `json:"sentAt"`
	ResponseStatusCode int       `json:"responseStatusCode,omitempty"`
	ResponseBody       string    `json:"responseBody,omitempty"`
	Error              string    `json:"error,omitempty"`
	DurationMs         int64     `json:"durationMs"`
}

// newDeliveryView renders d with its request body: d.RequestBody, or the
// body of ev when it is given.
func newDeliveryView(d *outbox.Delivery, ev *outbox.Event, withAttempts bool) deliveryView {
	v := deliveryView{
		ID: d.ID, AppID: d.AppID, WebhookID: d.WebhookID, EventID: d.EventID, Event: d.Event,
		Status: d.Status, CreatedAt: d.CreatedAt, NextAttemptAt: d.NextAttemptAt,
		Attempts: len(d.Attempts),
	}
	body := d.RequestBody
	if ev != nil {
		body = ev.Body
	}
	if body != nil {
		s := string(body)
		v.RequestBody = &s
	}
	if last := d.LastAttempt(); last != nil {
		sentAt, ms := last.SentAt, last.DurationMs
		v.SentAt, v.DurationMs = &sentAt, &ms
		v.ResponseStatusCode = last.ResponseStatusCode
		v.ResponseBody = last.ResponseBody
		v.LastError = last.Error
	}
	if withAttempts {
		v.AttemptLog = make([]attemptView, len(d.Attempts))
		for i, a := range d.Attempts {
			v.AttemptLog[i] = attemptView(a)
		}
	}
	return v
}

// httpError is an error with the status and message a client should see.
type httpError struct {
	status  int
	message string
}

func (e *httpError) Error() string { return e.message }

// notFound names what was not found, so a 404 says more than "not found".
func notFound(err error, what string) error {
	if errors.Is(err, outbox.ErrNotFound) {
		return &httpError{status: http.StatusNotFound, message: what + " not found"}
	}
	return err
}

// decodeBody decodes a JSON request body of at most maxAPIBody bytes into
// v, strictly: Content-Type must say JSON, member names match the fields'
// exactly (encoding/json would take "URL" for url), unknown and repeated
// members are refused, the body must be valid UTF-8 and one value. Its
// errors name the field and never echo a value (which could be a secret).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if !isJSON(r.Header.Get("Content-Type")) {
		return &httpError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)}
		}
		return &httpError{http.StatusBadRequest, "reading the request body failed"}
	}
	return decodeStrict(data, v)
}

// decodeStrict is decodeBody's decoding, on bytes already read.
func decodeStrict(data []byte, v any) error {
	if len(bytes.TrimLeft(data, " \t\r\n")) == 0 {
		return &httpError{http.StatusBadRequest, "request body is empty; want a JSON object"}
	}
	err := jsonv2.Unmarshal(data, v, jsonv2.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	var (
		syntax   *jsontext.SyntacticError
		semantic *jsonv2.SemanticError
	)
	switch {
	case errors.As(err, &syntax) && errors.Is(err, jsontext.ErrDuplicateName):
		return &outbox.ValidationError{Field: pointerField(syntax.JSONPointer), Message: "duplicate member name"}
	case errors.As(err, &syntax):
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return &httpError{http.StatusBadRequest, "malformed JSON: unexpected end of body"}
		}
		return &httpError{http.StatusBadRequest, fmt.Sprintf("malformed JSON at byte %d: %s", syntax.ByteOffset, syntaxReason(syntax))}
	case errors.As(err, &semantic) && errors.Is(err, jsonv2.ErrUnknownName):
		return &outbox.ValidationError{Field: pointerField(semantic.JSONPointer), Message: "unknown field"}
	case errors.As(err, &semantic):
		kind := jsonKind(semantic.JSONKind)
		if semantic.JSONPointer == "" {
			return &httpError{http.StatusBadRequest, "body must be a JSON object, not " + kind}
		}
		want := "of another type"
		if semantic.GoType != nil {
			want = jsonType(semantic.GoType.String())
		}
		return &outbox.ValidationError{Field: pointerField(semantic.JSONPointer), Message: fmt.Sprintf("must be %s, not %s", want, kind)}
	}
	return &httpError{http.StatusBadRequest, "malformed JSON"}
}

// syntaxReason is what is wrong at a syntax error, without the value
// around it.
func syntaxReason(e *jsontext.SyntacticError) string {
	if e.Err == nil {
		return "syntax error"
	}
	msg := e.Err.Error()
	if i := strings.IndexAny(msg, "'\"`"); i >= 0 {
		msg = strings.TrimSpace(msg[:i]) // the quoted input may be part of a secret
	}
	return msg
}

// pointerField spells a JSON pointer the way errors name fields:
// /events/0 is events.0.
func pointerField(p jsontext.Pointer) string {
	var parts []string
	for tok := range p.Tokens() {
		parts = append(parts, tok)
	}
	return strings.Join(parts, ".")
}

// jsonKind names a JSON kind as a user would.
func jsonKind(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "another value"
}

// jsonType names a Go type of WebhookInput the way a JSON user would.
func jsonType(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch t {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "[]string":
		return "an array of strings"
	case "int", "int64", "float64":
		return "a number"
	}
	return "of another type (" + t + ")"
}

// isJSON reports whether a Content-Type is application/json or a +json type.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// writeOutboxError answers err with the status it calls for.
func writeOutboxError(w http.ResponseWriter, logger *zap.Logger, err error) {
	var (
		he  *httpError
		ve  *outbox.ValidationError
		uee *outbox.UnknownEventError
		kre *outbox.KeyReusedError
	)
	switch {
	case errors.As(err, &he):
		writeError(w, he.status, he.message)
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, ve.Error())
	case errors.As(err, &uee):
		writeError(w, http.StatusUnprocessableEntity, uee.Error())
	case errors.As(err, &kre):
		writeError(w, http.StatusUnprocessableEntity, kre.Error())
	case errors.Is(err, outbox.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, outbox.ErrConflict):
		writeError(w, http.StatusConflict, strings.TrimSuffix(err.Error(), ": "+outbox.ErrConflict.Error()))
	case errors.Is(err, outbox.ErrUnavailable), errors.Is(err, outbox.ErrClosed):
		logger.Warn("webhooks store unavailable", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "webhooks store is unavailable; retry later")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "request canceled")
	default:
		logger.Error("webhooks request failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

func writeError(w http.ResponseWriter, status int, message string) {
	httpjson.Error(w, status, message)
}
