package outbox

import (
	"net/http"
	"sort"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Limits of a webhook's extra headers.
const (
	MaxHeaders        = 20
	MaxHeaderValueLen = 1024
)

// reservedHeaders are the names the wire format or HTTP itself owns; a
// webhook cannot override them. Every webhook-* and svix-* name is
// reserved too (see reservedHeader).
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Type": true, "Content-Length": true, "Transfer-Encoding": true,
	"Connection": true, "User-Agent": true, "X-Signature": true,
}

func reservedHeader(canonical string) bool {
	lower := strings.ToLower(canonical)
	return reservedHeaders[canonical] || strings.HasPrefix(lower, "webhook-") || strings.HasPrefix(lower, "svix-")
}

// SensitiveHeader reports whether a header's value is write-only: the API
// lists such names but never their values.
func SensitiveHeader(name string) bool {
	lower := strings.ToLower(name)
	switch lower {
	case "authorization", "proxy-authorization", "cookie":
		return true
	}
	for _, part := range []string{"key", "token", "secret", "password", "auth"} {
		if strings.Contains(lower, part) {
			return true
		}
	}
	return false
}

// checkHeaders validates an edit of a webhook's headers and returns it
// with canonical names. Errors name the header, never its value.
func checkHeaders(edit map[string]*string) (map[string]*string, error) {
	out := make(map[string]*string, len(edit))
	names := make([]string, 0, len(edit))
	for name := range edit {
		names = append(names, name)
	}
	// Sorted, so the same bad input always gets the same answer.
	sort.Strings(names)
	for _, name := range names {
		v := edit[name]
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, invalid("headers", "%q is not a valid header name", name)
		}
		c := http.CanonicalHeaderKey(name)
		if reservedHeader(c) {
			return nil, invalid("headers", "%s is set by the sender and cannot be overridden", c)
		}
		if _, dup := out[c]; dup {
			return nil, invalid("headers", "%s is given twice", c)
		}
		if v != nil {
			switch {
			case len(*v) > MaxHeaderValueLen:
				return nil, invalid("headers", "the value of %s is longer than %d bytes", c, MaxHeaderValueLen)
			case strings.ContainsAny(*v, "\r\n"):
				return nil, invalid("headers", "the value of %s contains CR or LF", c)
			case !httpguts.ValidHeaderFieldValue(*v):
				return nil, invalid("headers", "the value of %s contains a control character", c)
			}
		}
		out[c] = v
	}
	return out, nil
}

// applyHeaders merges an edit checked by checkHeaders into cur, as RFC 7386
// merges an object: a value sets, nil removes, other names stay.
func applyHeaders(cur map[string]string, clear bool, edit map[string]*string) (map[string]string, error) {
	next := make(map[string]string, len(cur)+len(edit))
	if !clear {
		for k, v := range cur {
			next[k] = v
		}
	}
	for k, v := range edit {
		if v == nil {
			delete(next, k)
		} else {
			next[k] = *v
		}
	}
	if len(next) > MaxHeaders {
		return nil, invalid("headers", "at most %d headers, not %d", MaxHeaders, len(next))
	}
	if len(next) == 0 {
		return nil, nil
	}
	return next, nil
}
