package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// Portal tokens grant one app's management API to a browser, through
// webhook_portal. A token is
//
//	"whp_" base64url(version:1 expiry:8 generation:8 mac:32 appId)
//
// where mac is HMAC-SHA256, keyed by the store's portal key, over a label,
// the version, the expiry (Unix seconds), the generation and the app id.
// Every sidecar on the store holds the key, so each accepts the tokens of
// the others; revoking an app's tokens bumps its generation in the store.
const (
	portalTokenPrefix  = "whp_"
	portalTokenVersion = 1
	portalMACSize      = sha256.Size
	portalFixedSize    = 1 + 8 + 8 + portalMACSize
	// portalTokenMaxLen bounds what is decoded: the longest token, for a
	// 128-byte app id, is 240 characters.
	portalTokenMaxLen = 256

	portalTTLDefault = time.Hour
	portalTTLMin     = 10 * time.Second
	portalTTLMax     = 24 * time.Hour
)

// portalMACLabel separates these MACs from any other use of the key.
var portalMACLabel = []byte("caddy-webhooks portal token\x00")

// portalToken is a token's content.
type portalToken struct {
	AppID      string
	Expires    time.Time // whole seconds
	Generation uint64
	header     []byte // version, expiry and generation as encoded
	mac        []byte
}

// errBadToken is every token that does not grant access: malformed,
// tampered, expired or revoked. Its message says nothing of which, nor of
// the token.
var errBadToken = errors.New("authorization: the portal token is invalid, expired or revoked; ask for a new link")

// signPortalToken returns the token for t signed with key.
func signPortalToken(key []byte, t portalToken) string {
	raw := make([]byte, 0, portalFixedSize+len(t.AppID))
	raw = append(raw, portalTokenVersion)
	raw = binary.BigEndian.AppendUint64(raw, uint64(t.Expires.Unix()))
	raw = binary.BigEndian.AppendUint64(raw, t.Generation)
	raw = append(raw, portalMAC(key, raw[:17], t.AppID)...)
	raw = append(raw, t.AppID...)
	return portalTokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
}

func portalMAC(key, header []byte, appID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(portalMACLabel)
	m.Write(header)
	m.Write([]byte(appID))
	return m.Sum(nil)
}

// parsePortalToken decodes a token without checking its MAC. It accepts
// only the canonical encoding, so one token has one spelling.
func parsePortalToken(s string) (portalToken, bool) {
	if len(s) > portalTokenMaxLen || !strings.HasPrefix(s, portalTokenPrefix) {
		return portalToken{}, false
	}
	body := s[len(portalTokenPrefix):]
	// Go's base64 decoders skip CR and LF even in strict mode; a token
	// has one spelling, so anything outside the alphabet is refused.
	if strings.ContainsFunc(body, func(r rune) bool {
		return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	}) {
		return portalToken{}, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) <= portalFixedSize || raw[0] != portalTokenVersion {
		return portalToken{}, false
	}
	exp := binary.BigEndian.Uint64(raw[1:9])
	if exp > 1<<40 { // far beyond any TTL; keeps time arithmetic sane
		return portalToken{}, false
	}
	t := portalToken{
		Expires:    time.Unix(int64(exp), 0).UTC(),
		Generation: binary.BigEndian.Uint64(raw[9:17]),
		header:     raw[:17],
		mac:        raw[17:portalFixedSize],
		AppID:      string(raw[portalFixedSize:]),
	}
	if outbox.CheckAppID(t.AppID) != nil {
		return portalToken{}, false
	}
	return t, true
}

// signedWith reports, in constant time, whether a parsed token's MAC is
// the one key makes.
func (t portalToken) signedWith(key []byte) bool {
	return hmac.Equal(t.mac, portalMAC(key, t.header, t.AppID))
}

// verifyPortalToken checks a token's MAC (in constant time), its expiry
// at now and its generation, and returns what it grants.
func verifyPortalToken(ctx context.Context, ob *outbox.Outbox, s string, now time.Time) (portalToken, error) {
	t, ok := parsePortalToken(s)
	if !ok {
		return portalToken{}, errBadToken
	}
	key, err := ob.PortalKey(ctx)
	if err != nil {
		return portalToken{}, err
	}
	if !t.signedWith(key) {
		return portalToken{}, errBadToken
	}
	if !now.Before(t.Expires) {
		return portalToken{}, errBadToken
	}
	gen, err := ob.PortalGeneration(ctx, t.AppID)
	if err != nil {
		return portalToken{}, err
	}
	if t.Generation != gen {
		return portalToken{}, errBadToken
	}
	return t, nil
}

// portalTokenView is what minting answers.
type portalTokenView struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	// URL opens the portal page with the token in the fragment, which
	// browsers never send to a server.
	URL string `json:"url"`
}

// mintPortalToken is POST /webhooks/apps/{appId}/portal-tokens.
func (a *api) mintPortalToken(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	appID := r.PathValue("appId")
	if err := outbox.CheckAppID(appID); err != nil {
		return err
	}
	// Decoded by hand: encoding/json matches field names without regard
	// to case, and "TTL" is not "ttl".
	var in map[string]json.RawMessage
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &in); err != nil {
			return err
		}
	}
	ttl := portalTTLDefault
	for name, raw := range in {
		if name != "ttl" {
			return &outbox.ValidationError{Field: name, Message: "unknown field"}
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return &outbox.ValidationError{Field: "ttl", Message: "must be a string such as \"1h\""}
		}
		d, err := caddy.ParseDuration(s)
		if err != nil || d < portalTTLMin || d > portalTTLMax {
			return &outbox.ValidationError{Field: "ttl", Message: fmt.Sprintf("must be a duration from %v to %v, such as \"1h\"", portalTTLMin, portalTTLMax)}
		}
		ttl = d
	}
	key, err := ob.PortalKey(r.Context())
	if err != nil {
		return err
	}
	gen, err := ob.PortalGeneration(r.Context(), appID)
	if err != nil {
		return err
	}
	// Whole seconds, rounded down: never longer than asked.
	t := portalToken{AppID: appID, Expires: time.Now().Add(ttl).Truncate(time.Second).UTC(), Generation: gen}
	token := signPortalToken(key, t)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, portalTokenView{
		Token:     token,
		ExpiresAt: t.Expires,
		URL:       portalPrefix + "#token=" + url.QueryEscape(token),
	})
	return nil
}

// revokePortalTokens is DELETE /webhooks/apps/{appId}/portal-tokens.
func (a *api) revokePortalTokens(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	appID := r.PathValue("appId")
	if err := outbox.CheckAppID(appID); err != nil {
		return err
	}
	if err := ob.RevokePortalTokens(r.Context(), appID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
