package signature

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// GitHub's header names.
const (
	GitHubHeader         = "X-Hub-Signature-256"
	GitHubDeliveryHeader = "X-GitHub-Delivery"
)

const gitHubPrefix = "sha256="

// GitHubSignature is the X-Hub-Signature-256 value GitHub sends:
// "sha256=" and the lowercase hex HMAC-SHA256 of the body.
func GitHubSignature(secret, body []byte) string {
	return gitHubPrefix + hex.EncodeToString(HMACSHA256(secret, body))
}

// VerifyGitHub checks an X-Hub-Signature-256 value against the body under
// each key. The "sha256=" prefix is required: GitHub's older SHA-1 header
// uses "sha1=", and accepting a bare digest would blur the two.
func VerifyGitHub(keys [][]byte, body []byte, value string) error {
	if value == "" {
		return ErrMissing
	}
	digits, ok := strings.CutPrefix(value, gitHubPrefix)
	if !ok {
		return fmt.Errorf("%w: want sha256=<hex>", ErrMalformed)
	}
	sum, ok := decodeHex(digits)
	if !ok {
		return fmt.Errorf("%w: want sha256= and 64 hex digits", ErrMalformed)
	}
	if !matchAny(keys, [][sumSize]byte{sum}, body) {
		return ErrMismatch
	}
	return nil
}
