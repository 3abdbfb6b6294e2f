package signature

import "fmt"

// XSignatureHeader carries the x-signature scheme (see XSignature).
const XSignatureHeader = "X-Signature"

// VerifyXSignature checks an X-Signature value, hex digits in either case,
// against the body under each key.
func VerifyXSignature(keys [][]byte, body []byte, value string) error {
	if value == "" {
		return ErrMissing
	}
	sum, ok := decodeHex(value)
	if !ok {
		return fmt.Errorf("%w: want 64 hex digits", ErrMalformed)
	}
	if !matchAny(keys, [][sumSize]byte{sum}, body) {
		return ErrMismatch
	}
	return nil
}
