package testkit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// HexHMAC is hex(HMAC-SHA256(key, msg)), the X-Signature of a body keyed
// by the webhook's secret, computed apart from the sender's own code so a
// test checks one against the other.
func HexHMAC(key string, msg []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(msg)
	return hex.EncodeToString(m.Sum(nil))
}
