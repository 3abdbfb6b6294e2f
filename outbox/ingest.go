package outbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// ParseEvent checks an ingest body: valid JSON with "event" and an object
// "data" carrying a valid "appId". Member names match exactly:
// encoding/json's struct decoding folds case, which would route
// {"EVENT": ...} by a member that receivers never see. The body must be
// I-JSON (RFC 7493): valid UTF-8 and no member name twice in an object,
// since receivers' parsers disagree on which of two names wins and on what
// invalid UTF-8 becomes, and the body is forwarded byte for byte.
func ParseEvent(body []byte) (eventType, appID string, err error) {
	if eventType, appID, ok := scanEvent(body); ok {
		return eventType, appID, nil
	}
	return parseEvent(body)
}

// scanEvent accepts, in one pass over the body, exactly the events
// parseEvent accepts (jsontext's defaults refuse invalid UTF-8, duplicate
// names and lone surrogates, as checkIJSON does); on anything else it
// reports !ok, and parseEvent finds the error to answer with.
func scanEvent(body []byte) (eventType, appID string, ok bool) {
	// A bytes.Buffer is read in place, not copied into the decoder's own.
	dec := jsontext.NewDecoder(bytes.NewBuffer(body))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return "", "", false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return "", "", false
		}
		switch name.String() {
		case "event":
			tok, err := dec.ReadToken()
			if err != nil || tok.Kind() != '"' {
				return "", "", false
			}
			eventType = tok.String()
		case "data":
			if dec.PeekKind() != '{' {
				return "", "", false
			}
			if appID, ok = scanData(dec); !ok {
				return "", "", false
			}
		default:
			if _, err := dec.ReadValue(); err != nil {
				return "", "", false
			}
		}
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '}' {
		return "", "", false
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return "", "", false
	}
	if eventType == "" || CheckAppID(appID) != nil {
		return "", "", false
	}
	return eventType, appID, true
}

// scanData reads the data object, keeping its appId.
func scanData(dec *jsontext.Decoder) (appID string, ok bool) {
	if _, err := dec.ReadToken(); err != nil {
		return "", false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return "", false
		}
		if name.String() == "appId" {
			tok, err := dec.ReadToken()
			if err != nil || tok.Kind() != '"' {
				return "", false
			}
			appID = tok.String()
			continue
		}
		if _, err := dec.ReadValue(); err != nil {
			return "", false
		}
	}
	tok, err := dec.ReadToken()
	return appID, err == nil && tok.Kind() == '}'
}

// parseEvent is ParseEvent's reference: slower, and the one that names
// what is wrong with a body.
func parseEvent(body []byte) (eventType, appID string, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) || (len(body) > 0 && json.Valid(body)) {
			return "", "", invalid("", "body must be a JSON object")
		}
		return "", "", invalid("", "malformed JSON: %v", err)
	}
	if top == nil {
		return "", "", invalid("", "body must be a JSON object")
	}
	eventType, err = jsonString(top["event"], "event")
	if err != nil {
		return "", "", err
	}
	data := top["data"]
	if len(data) == 0 || string(data) == "null" {
		return "", "", invalid("data", "missing")
	}
	var fields map[string]json.RawMessage
	if data[0] != '{' || json.Unmarshal(data, &fields) != nil {
		return "", "", invalid("data", "must be an object")
	}
	appID, err = jsonString(fields["appId"], "data.appId")
	if err != nil {
		return "", "", err
	}
	if err := CheckAppID(appID); err != nil {
		err.(*ValidationError).Field = "data.appId"
		return "", "", err
	}
	if err := checkIJSON(body); err != nil {
		return "", "", err
	}
	return eventType, appID, nil
}

// checkIJSON refuses a body, already known to be JSON, that is not valid
// UTF-8 or repeats a member name in an object at any depth.
func checkIJSON(body []byte) error {
	if !utf8.Valid(body) {
		return invalid("body", "not valid UTF-8")
	}
	if jsontext.Value(body).IsValid() {
		return nil
	}
	_, err := jsontext.NewDecoder(bytes.NewReader(body)).ReadValue()
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && errors.Is(err, jsontext.ErrDuplicateName) {
		return invalid(pointerField(se.JSONPointer), "duplicate member name")
	}
	// What encoding/json accepts and I-JSON does not, beside the above:
	// an escaped lone surrogate ("\ud800"), which is no character.
	return invalid("body", "not valid I-JSON (a string escapes an invalid character)")
}

// pointerField spells a JSON pointer the way errors name fields:
// /data/appId is data.appId.
func pointerField(p jsontext.Pointer) string {
	var parts []string
	for tok := range p.Tokens() {
		parts = append(parts, tok)
	}
	return strings.Join(parts, ".")
}

// jsonString reads a required, non-empty JSON string member.
func jsonString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", invalid(field, "missing")
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", invalid(field, "must be a string")
	}
	if s == "" {
		return "", invalid(field, "missing")
	}
	return s, nil
}

// Ingest stores an event posted by the service with one delivery per
// subscribed webhook, and returns once all of it is durable. A repeated
// idempotencyKey (per app, within 24h) returns the first event instead.
func (o *Outbox) Ingest(ctx context.Context, body []byte, idempotencyKey string) (IngestResult, error) {
	evType, appID, err := ParseEvent(body)
	if err != nil {
		return IngestResult{}, err
	}
	if !slices.Contains(o.options().Events, evType) {
		return IngestResult{}, &UnknownEventError{Type: evType}
	}
	hooks, err := o.store.ListWebhooks(ctx, appID)
	if err != nil {
		return IngestResult{}, fmt.Errorf("finding webhooks of app: %w", err)
	}
	now := time.Now()
	ev := &Event{ID: newID(), AppID: appID, Type: evType, ReceivedAt: now, Body: slices.Clone(body)}
	ev.TraceParent, ev.TraceState = traceOf(ctx)
	in := &Ingest{Event: ev, IdempotencyKey: idempotencyKey}
	if idempotencyKey != "" {
		sum := sha256.Sum256(body)
		in.BodyHash = sum[:]
	}
	var (
		input    *FilterInput
		inputErr error
		filtered int
	)
	for _, w := range hooks {
		if !w.Subscribes(evType) {
			continue
		}
		if w.Filter != "" {
			if input == nil && inputErr == nil {
				input, inputErr = NewFilterInput(evType, body)
			}
			if !o.matches(w, input) {
				filtered++
				continue
			}
		}
		in.Deliveries = append(in.Deliveries, newDelivery(w, ev, now))
	}
	if err := o.commit(ctx, in); err != nil {
		return IngestResult{}, err
	}
	if in.Result.KeyReused {
		return IngestResult{}, &KeyReusedError{Key: idempotencyKey}
	}
	if !in.Result.Duplicate {
		obs := o.options().Observer
		obs.EventReceived(evType)
		for range filtered {
			obs.EventFiltered(evType)
		}
		if len(in.Deliveries) > 0 {
			o.notify()
		}
	}
	return in.Result, nil
}

// matches reports whether the webhook's filter is true for the event. A
// filter that fails to compile or to evaluate matches nothing.
func (o *Outbox) matches(w *Webhook, input *FilterInput) bool {
	if input == nil {
		return false
	}
	f, err := o.filterOf(w)
	if err != nil {
		return false
	}
	ok, _ := f.Match(input)
	return ok
}

func newDelivery(w *Webhook, ev *Event, now time.Time) *Delivery {
	d := &Delivery{
		ID: newID(), AppID: w.AppID, WebhookID: w.ID, EventID: ev.ID, Event: ev.Type,
		Status: StatusPending, CreatedAt: now, NextAttemptAt: &now,
	}
	if !w.Enabled {
		d.Status = StatusSkipped
		d.NextAttemptAt = nil
	}
	return d
}
