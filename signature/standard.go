package signature

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names, and the svix- names that Svix, the
// specification's origin, still sends.
const (
	StandardIDHeader            = "webhook-id"
	StandardTimestampHeader     = "webhook-timestamp"
	StandardSignatureHeader     = "webhook-signature"
	SvixIDHeader                = "svix-id"
	SvixTimestampHeader         = "svix-timestamp"
	SvixSignatureHeader         = "svix-signature"
	standardSymmetricVersionTag = "v1"
)

// ParseStandard returns the v1 (symmetric HMAC-SHA256) signatures of a
// webhook-signature value: space-separated "<version>,<base64>" entries.
// Entries of other versions, such as v1a (asymmetric), and entries that do
// not decode are skipped, as the specification asks of verifiers.
func ParseStandard(value string) [][sha256.Size]byte {
	var sums [][sha256.Size]byte
	for rest := value; rest != "" && len(sums) < maxSignatures; {
		var entry string
		entry, rest, _ = strings.Cut(rest, " ")
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != standardSymmetricVersionTag {
			continue
		}
		if sum, ok := decodeBase64(sig); ok {
			sums = append(sums, sum)
		}
	}
	return sums
}

// VerifyStandard checks a Standard Webhooks request: the id, timestamp and
// signature header values, against the body under each key (see
// StandardKey for turning a secret into a key). The signature is checked
// before the age, so ErrExpired always means a genuine but stale request.
func VerifyStandard(keys [][]byte, id, timestamp, value string, body []byte, now time.Time, tolerance time.Duration) error {
	switch {
	case value == "":
		return ErrMissing
	case id == "":
		return fmt.Errorf("%w: no id", ErrMissing)
	case timestamp == "":
		return fmt.Errorf("%w: no timestamp", ErrMissing)
	}
	if _, err := strconv.ParseInt(timestamp, 10, 64); err != nil {
		return fmt.Errorf("%w: timestamp is not a number of seconds", ErrMalformed)
	}
	sums := ParseStandard(value)
	if len(sums) == 0 {
		return fmt.Errorf("%w: no v1,<base64> entry", ErrMalformed)
	}
	dot := []byte{'.'}
	if !matchAny(keys, sums, []byte(id), dot, []byte(timestamp), dot, body) {
		return ErrMismatch
	}
	return checkTimestamp(timestamp, now, tolerance)
}

// StandardTimestamp is the webhook-timestamp value for ts: Unix seconds.
func StandardTimestamp(ts time.Time) string {
	return strconv.FormatInt(ts.Unix(), 10)
}
