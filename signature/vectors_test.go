package signature

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// vector is a request signed by someone other than us, taken from the
// scheme's public documentation or its official library.
type vector struct {
	scheme string
	source string
	secret string
	body   string
	header http.Header
	now    time.Time
	// sign, when set, reproduces the signature header with our signer.
	sign func(key []byte) string
}

// stripeDotnetBody is the fixture event_test_signature.json of stripe-dotnet,
// trailing newline included: its signature covers the file as it is.
const stripeDotnetBody = `{
  "id": "evt_123",
  "object": "event",
  "account": "acct_123",
  "api_version": "2017-05-25",
  "created": 1533204620,
  "data": {
    "object": {
      "id": "cus_123",
      "object": "customer",
      "created": 123456789,
      "email": "test@stripe.com",
      "livemode": false,
      "metadata": {}
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": "req_123",
    "idempotency_key": "idempotency-key-123"
  },
  "type": "customer.created"
}
`

const slackDocsBody = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

var vectors = []vector{
	{
		// HMAC-SHA256 test case 2 of RFC 4231, section 4.3: X-Signature is
		// the bare hex HMAC of the body, so the RFC's vector is one.
		// https://www.rfc-editor.org/rfc/rfc4231#section-4.3
		scheme: "x-signature",
		source: "RFC 4231 test case 2",
		secret: "Jefe",
		body:   "what do ya want for nothing?",
		header: hdr("X-Signature", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
		sign:   func(k []byte) string { return XSignature(k, []byte("what do ya want for nothing?")) },
	},
	{
		// The same construction as GitHub's, so GitHub's worked example
		// (below) is an X-Signature vector too, here in upper case to pin
		// that hex is read in either case.
		scheme: "x-signature",
		source: "GitHub docs example, upper-case hex",
		secret: "It's a Secret to Everybody",
		body:   "Hello, World!",
		header: hdr("X-Signature", "757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"),
	},
	{
		// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
		scheme: "github",
		source: "GitHub docs, Validating webhook deliveries",
		secret: "It's a Secret to Everybody",
		body:   "Hello, World!",
		header: hdr("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
		sign:   func(k []byte) string { return GitHubSignature(k, []byte("Hello, World!")) },
	},
	{
		// TestWebhookSign in the official Go library of the specification:
		// https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/go/webhook_test.go
		scheme: "standard",
		source: "standard-webhooks libraries/go/webhook_test.go",
		secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		body:   `{"test": 2432232314}`,
		header: hdr(
			"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek",
			"webhook-timestamp", "1614265330",
			"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		),
		now: time.Unix(1614265330, 0),
		sign: func(k []byte) string {
			return StandardSign(k, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
		},
	},
	{
		// The same vector under the svix- header names Svix sends, with a
		// v1a (asymmetric) entry that a verifier must skip.
		scheme: "standard",
		source: "standard-webhooks libraries/go/webhook_test.go, svix- headers",
		secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		body:   `{"test": 2432232314}`,
		header: hdr(
			"svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek",
			"svix-timestamp", "1614265330",
			"svix-signature", "v1a,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		),
		now: time.Unix(1614265330, 0),
	},
	{
		// EventUtilityTest in the official .NET library, with its fixture
		// src/StripeTests/Resources/event_test_signature.json:
		// https://github.com/stripe/stripe-dotnet/blob/master/src/StripeTests/Services/Events/EventUtilityTest.cs
		scheme: "stripe",
		source: "stripe-dotnet EventUtilityTest",
		secret: "webhook_secret",
		body:   stripeDotnetBody,
		header: hdr("Stripe-Signature", "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef"),
		now:    time.Unix(1533204620+100, 0),
	},
	{
		// WebhookVerificationTest in Shopify's official Rails engine: a
		// form post of foo=anything, signed with the secret "secret".
		// https://github.com/Shopify/shopify_app/blob/main/test/shopify_app/controller_concerns/webhook_verification_test.rb
		scheme: "shopify",
		source: "shopify_app webhook_verification_test.rb",
		secret: "secret",
		body:   "foo=anything",
		header: hdr("X-Shopify-Hmac-Sha256", "yCGX/RrK4fcuNtr3ztk5tQGsOBjcAzHpGLdMUrbV8yI="),
		sign:   func(k []byte) string { return ShopifySignature(k, []byte("foo=anything")) },
	},
	{
		// The same test's request signed with the app's previous secret.
		scheme: "shopify",
		source: "shopify_app webhook_verification_test.rb, old secret",
		secret: "old_secret",
		body:   "foo=anything",
		header: hdr("X-Shopify-Hmac-Sha256", "XqRcjrSv57VACn6apEO9znyu/wkN1VC7QxdSPwK3Hzs="),
	},
	{
		// The worked example of "Verifying requests from Slack", also
		// test_signature_verifier.py of the official python-slack-sdk:
		// https://docs.slack.dev/authentication/verifying-requests-from-slack/
		scheme: "slack",
		source: "Slack docs, Verifying requests from Slack",
		secret: "8f742231b10e8888abcd99yyyzzz85a5",
		body:   slackDocsBody,
		header: hdr(
			"X-Slack-Request-Timestamp", "1531420618",
			"X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
		),
		now:  time.Unix(1531420618, 0),
		sign: func(k []byte) string { return SlackSignature(k, time.Unix(1531420618, 0), []byte(slackDocsBody)) },
	},
}

func (v vector) request(body string) Request {
	return Request{Header: v.header, Body: []byte(body), Now: v.now, Tolerance: 5 * time.Minute}
}

func keyOf(t testing.TB, s *Scheme, secret string) [][]byte {
	t.Helper()
	k, err := s.Key(secret)
	if err != nil {
		t.Fatalf("key of %q: %v", secret, err)
	}
	return [][]byte{k}
}

func TestPublishedVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.scheme+"/"+v.source, func(t *testing.T) {
			s := SchemeByName(v.scheme)
			if s == nil {
				t.Fatalf("no scheme %q", v.scheme)
			}
			keys := keyOf(t, s, v.secret)
			if err := s.Verify(v.request(v.body), keys); err != nil {
				t.Fatalf("published vector rejected: %v", err)
			}

			// One byte of the body changed.
			tampered := []byte(v.body)
			tampered[len(tampered)/2] ^= 0x01
			if err := s.Verify(v.request(string(tampered)), keys); !errors.Is(err, ErrMismatch) {
				t.Errorf("body with one byte changed: got %v, want ErrMismatch", err)
			}

			// The wrong secret.
			wrong := keyOf(t, s, "not "+v.secret)
			if err := s.Verify(v.request(v.body), wrong); !errors.Is(err, ErrMismatch) {
				t.Errorf("wrong secret: got %v, want ErrMismatch", err)
			}

			// A rotation: the right secret second in the list still matches.
			if err := s.Verify(v.request(v.body), append(wrong, keys...)); err != nil {
				t.Errorf("right secret second of two: %v", err)
			}

			if v.sign != nil {
				if got, want := v.sign(keys[0]), v.header.Get(s.Header); !strings.Contains(want, got) {
					t.Errorf("our signer wrote %q, the published value is %q", got, want)
				}
			}
		})
	}
}

func TestSignatureByteChanged(t *testing.T) {
	// Changing one character of the signature itself, keeping it well
	// formed, must also fail: this pins that every byte is compared.
	for _, v := range vectors {
		s := SchemeByName(v.scheme)
		keys := keyOf(t, s, v.secret)
		sig := v.header.Get(s.Header)
		if sig == "" {
			continue // svix- names
		}
		i := len(sig) - 5
		if j := strings.Index(sig, ",v0="); j > 0 {
			i = j - 5 // inside Stripe's v1, not its ignored v0
		}
		c := byte('a')
		if sig[i] == 'a' {
			c = 'b'
		}
		h := v.header.Clone()
		h.Set(s.Header, sig[:i]+string(c)+sig[i+1:])
		r := v.request(v.body)
		r.Header = h
		if err := s.Verify(r, keys); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s (%s): signature with one character changed: got %v, want ErrMismatch", v.scheme, v.source, err)
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	tests := []struct {
		name    string
		scheme  string
		secret  string
		header  http.Header
		body    string
		now     time.Time
		sigHdr  string
		want    error
		missing string
	}{
		{name: "x-signature missing", scheme: "x-signature", header: hdr(), want: ErrMissing, missing: "X-Signature"},
		{name: "x-signature short hex", scheme: "x-signature", header: hdr("X-Signature", "abcd"), want: ErrMalformed},
		{name: "x-signature not hex", scheme: "x-signature", header: hdr("X-Signature", strings.Repeat("zz", 32)), want: ErrMalformed},
		{name: "github bare digest", scheme: "github", header: hdr("X-Hub-Signature-256", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"), want: ErrMalformed},
		{name: "github sha1", scheme: "github", header: hdr("X-Hub-Signature-256", "sha1=0123"), want: ErrMalformed},
		{name: "github missing", scheme: "github", header: hdr("X-Hub-Signature", "sha1=0123"), want: ErrMissing, missing: "X-Hub-Signature-256"},
		{name: "github header override", scheme: "github", sigHdr: "X-Gitea-Signature", header: hdr("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"), want: ErrMissing, missing: "X-Gitea-Signature"},
		{
			name: "stripe expired", scheme: "stripe", secret: "webhook_secret", body: stripeDotnetBody, now: at(1533204620 + 301),
			header: hdr("Stripe-Signature", "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"),
			want:   ErrExpired,
		},
		{
			name: "stripe from the future", scheme: "stripe", secret: "webhook_secret", body: stripeDotnetBody, now: at(1533204620 - 301),
			header: hdr("Stripe-Signature", "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"),
			want:   ErrExpired,
		},
		{
			name: "stripe only v0", scheme: "stripe", secret: "webhook_secret", body: stripeDotnetBody, now: at(1533204620),
			header: hdr("Stripe-Signature", "t=1533204620,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef"),
			want:   ErrMalformed,
		},
		{name: "stripe no t", scheme: "stripe", header: hdr("Stripe-Signature", "v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"), want: ErrMalformed},
		{name: "stripe t not a number", scheme: "stripe", header: hdr("Stripe-Signature", "t=now,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"), want: ErrMalformed},
		{
			name: "stripe skips an unreadable v1 entry", scheme: "stripe", secret: "webhook_secret", body: stripeDotnetBody, now: at(1533204620),
			header: hdr("Stripe-Signature", "t=1533204620,v1=bad,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"),
			want:   nil,
		},
		{name: "standard no id", scheme: "standard", header: hdr("webhook-signature", "v1,x", "webhook-timestamp", "1"), want: ErrMissing, missing: "webhook-id"},
		{name: "standard no timestamp", scheme: "standard", header: hdr("webhook-signature", "v1,x", "webhook-id", "1"), want: ErrMissing, missing: "webhook-timestamp"},
		{name: "standard no signature", scheme: "standard", header: hdr("webhook-id", "1", "webhook-timestamp", "1"), want: ErrMissing, missing: "webhook-signature"},
		{name: "standard no v1 entry", scheme: "standard", header: hdr("webhook-id", "1", "webhook-timestamp", "1", "webhook-signature", "v2,abc"), want: ErrMalformed},
		{
			name: "standard expired", scheme: "standard", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: `{"test": 2432232314}`, now: at(1614265330 + 3600),
			header: hdr("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp", "1614265330", "webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
			want:   ErrExpired,
		},
		{
			name: "standard id changed", scheme: "standard", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: `{"test": 2432232314}`, now: at(1614265330),
			header: hdr("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJeK", "webhook-timestamp", "1614265330", "webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
			want:   ErrMismatch,
		},
		{
			name: "standard timestamp changed", scheme: "standard", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: `{"test": 2432232314}`, now: at(1614265330),
			header: hdr("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp", "1614265331", "webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
			want:   ErrMismatch,
		},
		{name: "slack no timestamp", scheme: "slack", header: hdr("X-Slack-Signature", "v0=00"), want: ErrMissing, missing: "X-Slack-Request-Timestamp"},
		{name: "slack no signature", scheme: "slack", header: hdr("X-Slack-Request-Timestamp", "1"), want: ErrMissing, missing: "X-Slack-Signature"},
		{name: "slack v1 prefix", scheme: "slack", header: hdr("X-Slack-Request-Timestamp", "1", "X-Slack-Signature", "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"), want: ErrMalformed},
		{
			name: "slack expired", scheme: "slack", secret: "8f742231b10e8888abcd99yyyzzz85a5", body: slackDocsBody, now: at(1531420618 + 301),
			header: hdr("X-Slack-Request-Timestamp", "1531420618", "X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
			want:   ErrExpired,
		},
		{name: "shopify not base64", scheme: "shopify", header: hdr("X-Shopify-Hmac-Sha256", "not base64!"), want: ErrMalformed},
		{name: "shopify hex instead", scheme: "shopify", header: hdr("X-Shopify-Hmac-Sha256", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"), want: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := SchemeByName(tc.scheme)
			secret := tc.secret
			if secret == "" {
				secret = "s3cret"
			}
			r := Request{Header: tc.header, Body: []byte(tc.body), Now: tc.now, Tolerance: 5 * time.Minute, SignatureHeader: tc.sigHdr}
			err := s.Verify(r, keyOf(t, s, secret))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.missing != "" {
				var m *MissingHeaderError
				if !errors.As(err, &m) || m.Header != tc.missing {
					t.Fatalf("got %v, want it to name header %s", err, tc.missing)
				}
			}
		})
	}
}

func TestErrorsNeverShowSecretOrExpected(t *testing.T) {
	// The receiver puts err.Error() in its 401 body, so no error may carry
	// the key or the signature a valid request would have had.
	secret := "It's a Secret to Everybody"
	body := []byte("Hello, World!")
	expected := XSignature([]byte(secret), body)
	for _, name := range SchemeNames() {
		s := SchemeByName(name)
		h := hdr(
			s.Header, "v1,AAAA", "webhook-id", "1", "webhook-timestamp", "1",
			"X-Slack-Request-Timestamp", "1",
		)
		err := s.Verify(Request{Header: h, Body: body, Now: time.Unix(1, 0)}, keyOf(t, s, secret))
		if err == nil {
			t.Fatalf("%s: a garbage signature verified", name)
		}
		if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, expected) {
			t.Errorf("%s: error %q shows the secret or the expected signature", name, msg)
		}
	}
}

func TestSignersRoundTrip(t *testing.T) {
	keys := [][]byte{[]byte("old"), []byte("new")}
	body := []byte(`{"event":"job_created","data":{"appId":"a"}}`)
	now := time.Unix(1700000000, 0)
	r := func(kv ...string) Request {
		return Request{Header: hdr(kv...), Body: body, Now: now, Tolerance: time.Minute}
	}
	checks := []struct {
		scheme string
		req    Request
		keys   [][]byte
	}{
		{"stripe", r("Stripe-Signature", StripeSignature(keys, now, body)), keys},
		{"standard", r("webhook-id", "evt_1", "webhook-timestamp", "1700000000", "webhook-signature", StandardSignature(keys, "evt_1", now, body)), keys},
		{"slack", r("X-Slack-Request-Timestamp", "1700000000", "X-Slack-Signature", SlackSignature(keys[1], now, body)), keys[1:]},
		{"shopify", r("X-Shopify-Hmac-Sha256", ShopifySignature(keys[0], body)), keys[:1]},
		{"github", r("X-Hub-Signature-256", GitHubSignature(keys[0], body)), keys[:1]},
		{"x-signature", r("X-Signature", XSignature(keys[0], body)), keys[:1]},
	}
	for _, c := range checks {
		name, req := c.scheme, c.req
		s := SchemeByName(name)
		for _, k := range c.keys {
			if err := s.Verify(req, [][]byte{k}); err != nil {
				t.Errorf("%s signed by us, verified with %q: %v", name, k, err)
			}
		}
	}
}

func TestSchemeByNameIsACopy(t *testing.T) {
	s := SchemeByName("github")
	s.Header = "X-Changed"
	if SchemeByName("github").Header != GitHubHeader {
		t.Fatal("changing a looked-up scheme changed the registry")
	}
	if SchemeByName("nope") != nil {
		t.Fatal("unknown scheme found")
	}
	if SchemeNames()[0] != "x-signature" {
		t.Fatalf("default scheme should be listed first, got %v", SchemeNames())
	}
}

func TestSchemeIDs(t *testing.T) {
	h := hdr("webhook-id", "a", "svix-id", "b", "X-GitHub-Delivery", "c")
	for name, want := range map[string]string{"standard": "a", "github": "c", "x-signature": "a", "stripe": "", "slack": "", "shopify": ""} {
		s := SchemeByName(name)
		if got := s.ID(h); got != want {
			t.Errorf("%s: id %q, want %q", name, got, want)
		}
		if s.HasID() != (want != "") {
			t.Errorf("%s: HasID %v", name, s.HasID())
		}
	}
	if got := SchemeByName("standard").ID(hdr("svix-id", "b")); got != "b" {
		t.Errorf("standard with svix-id: %q", got)
	}
}
