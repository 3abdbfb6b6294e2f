// Package signature holds the webhook signature schemes shared by the sender,
// which signs, and the receiver, which verifies. Each scheme is implemented
// once here so both sides agree byte for byte.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// HMACSHA256 returns the HMAC-SHA256 of the concatenated parts, keyed by key.
func HMACSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// XSignature is the value of the X-Signature header: the lowercase hex
// HMAC-SHA256 of the raw body, keyed by the secret's bytes.
func XSignature(secret, body []byte) string {
	return hex.EncodeToString(HMACSHA256(secret, body))
}

// StandardSign returns one Standard Webhooks signature entry, "v1,<base64>",
// of "{id}.{timestamp}.{body}" keyed by key.
func StandardSign(key []byte, id string, ts time.Time, body []byte) string {
	sum := HMACSHA256(key, []byte(id), []byte{'.'}, []byte(strconv.FormatInt(ts.Unix(), 10)), []byte{'.'}, body)
	return "v1," + base64.StdEncoding.EncodeToString(sum)
}

// StandardSignature returns the webhook-signature header value for a request
// signed with each of the keys (more than one during a secret rotation),
// entries separated by spaces as the specification requires.
func StandardSignature(keys [][]byte, id string, ts time.Time, body []byte) string {
	entries := make([]string, len(keys))
	for i, k := range keys {
		entries[i] = StandardSign(k, id, ts, body)
	}
	return strings.Join(entries, " ")
}

// StandardKey returns the HMAC key of a Standard Webhooks secret: a secret
// of the form "whsec_<base64>" is decoded as the specification says; any
// other secret is used as its bytes, which is what this project's sender
// does, so that "whsec_" + base64(secret) verifies with the official libraries.
func StandardKey(secret string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		return base64.StdEncoding.DecodeString(rest)
	}
	return []byte(secret), nil
}
