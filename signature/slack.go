package signature

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Slack's header names.
const (
	SlackHeader          = "X-Slack-Signature"
	SlackTimestampHeader = "X-Slack-Request-Timestamp"
)

const slackVersion = "v0"

// SlackSignature is the X-Slack-Signature value for a request sent at ts:
// "v0=" and the lowercase hex HMAC-SHA256 of "v0:<ts>:<body>". The
// X-Slack-Request-Timestamp header must carry the same ts in Unix seconds.
func SlackSignature(secret []byte, ts time.Time, body []byte) string {
	sum := HMACSHA256(secret, slackBase(strconv.FormatInt(ts.Unix(), 10)), body)
	return slackVersion + "=" + hex.EncodeToString(sum)
}

// slackBase is what Slack signs before the body.
func slackBase(ts string) []byte {
	return []byte(slackVersion + ":" + ts + ":")
}

// VerifySlack checks an X-Slack-Signature value and its
// X-Slack-Request-Timestamp against the body under each key. The signature
// is checked before the age, so ErrExpired always means a genuine but stale
// request.
func VerifySlack(keys [][]byte, body []byte, timestamp, value string, now time.Time, tolerance time.Duration) error {
	if value == "" {
		return ErrMissing
	}
	if timestamp == "" {
		return fmt.Errorf("%w: no timestamp", ErrMissing)
	}
	digits, ok := strings.CutPrefix(value, slackVersion+"=")
	if !ok {
		return fmt.Errorf("%w: want v0=<hex>", ErrMalformed)
	}
	sum, ok := decodeHex(digits)
	if !ok {
		return fmt.Errorf("%w: want v0= and 64 hex digits", ErrMalformed)
	}
	if _, err := strconv.ParseInt(timestamp, 10, 64); err != nil {
		return fmt.Errorf("%w: timestamp is not a number of seconds", ErrMalformed)
	}
	if !matchAny(keys, [][sumSize]byte{sum}, slackBase(timestamp), body) {
		return ErrMismatch
	}
	return checkTimestamp(timestamp, now, tolerance)
}
