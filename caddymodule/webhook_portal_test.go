package caddymodule

import (
	"bytes"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddyserver/caddy/v2"
)

func TestPortalValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		p    Portal
		want string // prefix of the error; "" for none
	}{
		{"defaults", Portal{}, ""},
		{"origins", Portal{FrameAncestors: []string{"https://app.example.com", "http://localhost:8080", "https://*.example.org", "'self'"}}, ""},
		{"path", Portal{FrameAncestors: []string{"https://app.example.com/settings"}}, "frame_ancestors: "},
		{"directive injection", Portal{FrameAncestors: []string{"https://a.example; script-src *"}}, "frame_ancestors: "},
		{"bare host", Portal{FrameAncestors: []string{"app.example.com"}}, "frame_ancestors: "},
		{"any", Portal{FrameAncestors: []string{"*"}}, "frame_ancestors: "},
		{"none", Portal{FrameAncestors: []string{"'none'"}}, "frame_ancestors: "},
		{"theme", Portal{Theme: map[string]string{"--accent": "#7c3aed", "--font": `"Inter", system-ui, sans-serif`, "--bg": "rgb(250 250 250 / 100%)"}}, ""},
		{"unknown variable", Portal{Theme: map[string]string{"--primary": "#000"}}, "theme: "},
		{"declaration break", Portal{Theme: map[string]string{"--accent": "red; } body { display: none"}}, "theme: "},
		{"url", Portal{Theme: map[string]string{"--bg": "url(https://evil.example/x.png)"}}, "theme: "},
		{"markup", Portal{Theme: map[string]string{"--fg": "</style>"}}, "theme: "},
		{"negative failures", Portal{MaxTokenFailures: -1}, "max_token_failures: "},
		{"negative window", Portal{TokenFailureWindow: caddy.Duration(-time.Second)}, "token_failure_window: "},
	} {
		err := c.p.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", c.name, err)
		case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)):
			t.Errorf("%s: Validate() = %v, want an error starting %q", c.name, err, c.want)
		}
	}
}

func TestPortalScope(t *testing.T) {
	for _, c := range []struct {
		path string
		want bool
	}{
		{"/webhooks/apps/a1/webhooks", true},
		{"/webhooks/apps/a1/webhooks/h1/deliveries/d1/resend", true},
		{"/webhooks/apps/a1/events", true},
		{"/webhooks/apps/a1/anything/added/later", true},
		{"/webhooks/apps/a%31/webhooks", true}, // the same app, escaped
		{"/webhooks/apps/a1", false},
		{"/webhooks/apps/a1/", false},
		{"/webhooks/apps/a2/webhooks", false},
		{"/webhooks/apps/a10/webhooks", false},
		{"/webhooks/apps/a/webhooks", false},
		{"/webhooks/apps/a1/portal-tokens", false},
		{"/webhooks/apps/a1/portal%2Dtokens", false},
		{"/webhooks/apps/a1/../a2/webhooks", false},
		{"/webhooks/apps/a1/webhooks/%2e%2e/%2e%2e/a2/webhooks", false},
		{"/webhooks/apps/a1//webhooks", false},
		{"/webhooks/apps/a1%2F..%2Fa2/webhooks", false},
		{"/webhooks/apps", false},
		{"/webhooks/events", false},
		{"/webhooks/operational/deliveries", false},
		{"/other/webhooks/apps/a1/webhooks", false},
	} {
		r := httptest.NewRequest("GET", "http://portal.test"+c.path, nil)
		if got := portalScope(r, "a1"); got != c.want {
			t.Errorf("a token of a1 on %s: granted %v, want %v", c.path, got, c.want)
		}
	}
}

// FuzzPortalToken feeds the token parser arbitrary strings: it never
// panics, accepts only the canonical spelling of a token, and no input but
// a token signed with the key passes the MAC check.
func FuzzPortalToken(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	valid := signPortalToken(key, portalToken{AppID: "app-1", Expires: time.Unix(1900000000, 0), Generation: 3})
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid + "A")
	f.Add(strings.Replace(valid, "whp_", "whq_", 1))
	f.Add(tamperToken(valid, 10))
	f.Add(tamperToken(valid, 30))
	f.Add(signPortalToken(key, portalToken{AppID: strings.Repeat("x", 128), Expires: time.Unix(1<<40, 0)}))
	f.Add(signPortalToken(bytes.Repeat([]byte{8}, 32), portalToken{AppID: "app-1", Expires: time.Unix(1900000000, 0)}))
	f.Add("whp_")
	f.Add("whp_AQ")
	f.Add("whp_" + base64.RawURLEncoding.EncodeToString(make([]byte, portalFixedSize)))
	f.Add("whp_" + base64.RawURLEncoding.EncodeToString(append([]byte{1}, make([]byte, portalFixedSize)...)))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, ok := parsePortalToken(s)
		if !ok {
			return
		}
		raw := append(append(append([]byte{}, tok.header...), tok.mac...), tok.AppID...)
		if again := portalTokenPrefix + base64.RawURLEncoding.EncodeToString(raw); again != s {
			t.Fatalf("parsed %q, which encodes back as %q: want one spelling per token", s, again)
		}
		if outbox.CheckAppID(tok.AppID) != nil {
			t.Fatalf("parsed %q with the invalid app id %q", s, tok.AppID)
		}
		if tok.signedWith(key) != (s == signPortalToken(key, tok)) {
			t.Fatalf("%q passes the MAC check but is not the token the key signs for %+v", s, tok)
		}
	})
}

// tamperToken changes the character at i of a token's encoded part.
func tamperToken(token string, i int) string {
	b := []byte(token)
	i += len(portalTokenPrefix)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestPortalTokenRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	in := portalToken{AppID: "org_1:app.prod-2", Expires: time.Unix(1900000000, 0).UTC(), Generation: 12}
	s := signPortalToken(key, in)
	if !strings.HasPrefix(s, "whp_") || len(s) > portalTokenMaxLen || strings.ContainsAny(s, "+/=%") {
		t.Fatalf("token %q: want whp_ and URL-safe base64 within %d characters", s, portalTokenMaxLen)
	}
	out, ok := parsePortalToken(s)
	if !ok || out.AppID != in.AppID || !out.Expires.Equal(in.Expires) || out.Generation != in.Generation || !out.signedWith(key) {
		t.Fatalf("parsed %+v (%v), want %+v signed with the key", out, ok, in)
	}
	if out.signedWith(bytes.Repeat([]byte{2}, 32)) {
		t.Fatal("the token passes the MAC check of another key")
	}
	// The longest token, for a 128-byte app id, fits the parser's bound.
	long := signPortalToken(key, portalToken{AppID: strings.Repeat("a", 128), Expires: in.Expires})
	if _, ok := parsePortalToken(long); !ok || len(long) > portalTokenMaxLen {
		t.Fatalf("a token for a 128-byte app id (%d characters) is refused", len(long))
	}
}
