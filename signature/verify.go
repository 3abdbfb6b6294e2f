package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The errors a verification returns wrap one of these, so a caller can tell
// an absent signature from a wrong one from a stale one with errors.Is.
var (
	// ErrMissing means the request carries no signature (or lacks a header
	// the scheme signs, such as its timestamp or id).
	ErrMissing = errors.New("missing signature")
	// ErrMalformed means a signature header is present but cannot be read.
	ErrMalformed = errors.New("malformed signature")
	// ErrMismatch means no signature matches any of the keys.
	ErrMismatch = errors.New("signature does not match")
	// ErrExpired means the signature is genuine but its timestamp lies
	// outside the tolerance, so it may be a replay.
	ErrExpired = errors.New("timestamp outside tolerance")
)

// MissingHeaderError names the header a request lacks. It matches ErrMissing.
type MissingHeaderError struct {
	Header string
}

func (e *MissingHeaderError) Error() string { return "missing header " + e.Header }

// Unwrap lets errors.Is(err, ErrMissing) hold.
func (e *MissingHeaderError) Unwrap() error { return ErrMissing }

// sumSize is the length of an HMAC-SHA256.
const sumSize = sha256.Size

// decodeHex reads a 64-digit hex signature in either case. It returns false
// for anything else, so a caller can treat the header as malformed.
func decodeHex(s string) ([sumSize]byte, bool) {
	var sum [sumSize]byte
	if len(s) != 2*sumSize {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(s)); err != nil {
		return sum, false
	}
	return sum, true
}

// decodeBase64 reads a padded standard base64 signature of an HMAC-SHA256.
func decodeBase64(s string) ([sumSize]byte, bool) {
	var sum [sumSize]byte
	if len(s) != base64.StdEncoding.EncodedLen(sumSize) {
		return sum, false
	}
	var buf [sumSize + 1]byte // DecodedLen of 44 characters is 33
	n, err := base64.StdEncoding.Decode(buf[:], []byte(s))
	if err != nil || n != sumSize {
		return sum, false
	}
	copy(sum[:], buf[:n])
	return sum, true
}

// matchAny reports whether the HMAC of parts under any key equals any of
// the candidate sums. Every comparison is constant-time; the loop runs over
// all keys so that which key matched does not show in the timing.
func matchAny(keys [][]byte, candidates [][sumSize]byte, parts ...[]byte) bool {
	ok := false
	for _, k := range keys {
		sum := HMACSHA256(k, parts...)
		for i := range candidates {
			if hmac.Equal(sum, candidates[i][:]) {
				ok = true
			}
		}
	}
	return ok
}

// checkTimestamp parses a Unix-seconds timestamp and checks it against now.
// Both directions count: a timestamp far in the future is as suspect as an
// old one. A tolerance of zero or less skips the age check.
func checkTimestamp(ts string, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp is not a number of seconds", ErrMalformed)
	}
	if tolerance <= 0 {
		return nil
	}
	if now.Sub(time.Unix(sec, 0)).Abs() > tolerance {
		return ErrExpired
	}
	return nil
}
