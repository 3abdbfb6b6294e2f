package signature

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// BenchmarkVerify measures each scheme on a 1 KiB body, the size the
// receiver benchmark sends, through the same entry point the receiver uses.
func BenchmarkVerify(b *testing.B) {
	body := bytes.Repeat([]byte("a"), 1024)
	secret := []byte("bench secret")
	now := time.Unix(1700000000, 0)
	reqs := map[string]http.Header{
		"x-signature": hdr("X-Signature", XSignature(secret, body)),
		"github":      hdr("X-Hub-Signature-256", GitHubSignature(secret, body)),
		"shopify":     hdr("X-Shopify-Hmac-Sha256", ShopifySignature(secret, body)),
		"stripe":      hdr("Stripe-Signature", StripeSignature([][]byte{secret}, now, body)),
		"slack":       hdr("X-Slack-Request-Timestamp", "1700000000", "X-Slack-Signature", SlackSignature(secret, now, body)),
		"standard": hdr("webhook-id", "msg_1", "webhook-timestamp", "1700000000",
			"webhook-signature", StandardSign(secret, "msg_1", now, body)),
	}
	for _, name := range SchemeNames() {
		s := SchemeByName(name)
		r := Request{Header: reqs[name], Body: body, Now: now, Tolerance: 5 * time.Minute}
		keys := [][]byte{secret}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Verify(r, keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
