package signature

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StripeHeader carries Stripe's timestamp and signatures.
const StripeHeader = "Stripe-Signature"

// maxSignatures bounds how many entries of one header are considered, so a
// request cannot make us hold or compare an unbounded list. Senders list one
// signature per live secret, which during a rotation is two.
const maxSignatures = 16

// StripeSignature is the Stripe-Signature value for a request sent at ts:
// "t=<unix seconds>" followed by one "v1=<hex>" per key, each the
// HMAC-SHA256 of "<t>.<body>".
func StripeSignature(keys [][]byte, ts time.Time, body []byte) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(t)
	for _, k := range keys {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(HMACSHA256(k, []byte(t), []byte{'.'}, body)))
	}
	return b.String()
}

// ParseStripe splits a Stripe-Signature value into its timestamp, as sent,
// and its v1 signatures. Other schemes (v0 is Stripe's test-mode scheme)
// and v1 entries that are not 64 hex digits are skipped, as Stripe's own
// libraries do, so a sender can add schemes without breaking receivers.
func ParseStripe(value string) (timestamp string, sums [][sha256.Size]byte, err error) {
	for rest := value; rest != ""; {
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			timestamp = v
		case "v1":
			if len(sums) == maxSignatures {
				continue
			}
			if sum, ok := decodeHex(v); ok {
				sums = append(sums, sum)
			}
		}
	}
	if timestamp == "" {
		return "", nil, fmt.Errorf("%w: no t= element", ErrMalformed)
	}
	if len(sums) == 0 {
		return "", nil, fmt.Errorf("%w: no v1= signature", ErrMalformed)
	}
	return timestamp, sums, nil
}

// VerifyStripe checks a Stripe-Signature value against the body under each
// key. Any v1 entry may match any key, which is how Stripe signals a secret
// roll. The signature is checked before the age, so ErrExpired always means
// a genuine but stale request.
func VerifyStripe(keys [][]byte, body []byte, value string, now time.Time, tolerance time.Duration) error {
	if value == "" {
		return ErrMissing
	}
	ts, sums, err := ParseStripe(value)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return fmt.Errorf("%w: timestamp is not a number of seconds", ErrMalformed)
	}
	if !matchAny(keys, sums, []byte(ts), []byte{'.'}, body) {
		return ErrMismatch
	}
	return checkTimestamp(ts, now, tolerance)
}
