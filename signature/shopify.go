package signature

import (
	"encoding/base64"
	"fmt"
)

// ShopifyHeader carries Shopify's webhook signature.
const ShopifyHeader = "X-Shopify-Hmac-Sha256"

// ShopifySignature is the X-Shopify-Hmac-Sha256 value: the standard base64
// of the HMAC-SHA256 of the body.
func ShopifySignature(secret, body []byte) string {
	return base64.StdEncoding.EncodeToString(HMACSHA256(secret, body))
}

// VerifyShopify checks an X-Shopify-Hmac-Sha256 value against the body
// under each key.
func VerifyShopify(keys [][]byte, body []byte, value string) error {
	if value == "" {
		return ErrMissing
	}
	sum, ok := decodeBase64(value)
	if !ok {
		return fmt.Errorf("%w: want base64 of 32 bytes", ErrMalformed)
	}
	if !matchAny(keys, [][sumSize]byte{sum}, body) {
		return ErrMismatch
	}
	return nil
}
