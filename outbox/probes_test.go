package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// Bodies that receivers' parsers disagree on are refused at ingest: invalid
// UTF-8 (delivered raw, shown as U+FFFD in the history) and a member name
// twice in one object, at any depth, however it is escaped.
func TestIngestRefusesBodiesReceiversDisagreeOn(t *testing.T) {
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	hook, err := o.CreateWebhook(ctx, "app1", outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://127.0.0.1:1/"), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ body, field string }{
		{"{\"event\":\"job_created\",\"data\":{\"appId\":\"app1\",\"x\":\"\xff\"}}", "body"},
		{`{"event":"job_created","data":{"appId":"app1","x":"\ud800"}}`, "body"},
		{`{"event":"job_created","event":"job_finished","data":{"appId":"app1"}}`, "event"},
		{`{"event":"job_created","data":{"appId":"app2","appId":"app1"}}`, "data.appId"},
		{`{"event":"job_created","data":{"appId":"app1","n":{"a":1,"a":2}}}`, "data.n.a"},
		{`{"event":"job_created","data":{"appId":"app1","l":[{"b":1,"\u0062":2}]}}`, "data.l.0.b"},
	} {
		_, err := o.Ingest(ctx, []byte(tc.body), "")
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("ingest of %q: %v, want a validation error naming %q", tc.body, err, tc.field)
		}
	}
	if ds, _, _ := o.Deliveries(ctx, "app1", hook.ID, outbox.DeliveryFilter{}); len(ds) != 0 {
		t.Fatalf("refused bodies left %d deliveries", len(ds))
	}
	// Equal names in different objects, and names differing in case, are fine.
	if _, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"app1","a":{"x":1},"b":{"x":1},"X":2,"é":"ü"}}`), ""); err != nil {
		t.Fatalf("a valid body was refused: %v", err)
	}
}

// App ids are 1 to 128 bytes of A-Z a-z 0-9 . _ : -, at ingest and when
// a webhook is created.
func TestAppIDsValidated(t *testing.T) {
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	for _, id := range []string{"", "bad\xffapp", "bad\ufffdapp", "a/b", "a b", "a\x00b", "a%2Fb", "ä", strings.Repeat("a", 129)} {
		if err := outbox.CheckAppID(id); err == nil {
			t.Errorf("CheckAppID(%q) accepted it", id)
		}
		_, err := o.CreateWebhook(ctx, id, outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://127.0.0.1:1/"), Events: &[]string{"job_created"}})
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || ve.Field != "appId" {
			t.Errorf("create under app id %q: %v, want a validation error naming appId", id, err)
		}
		quoted, _ := json.Marshal(id)
		body := `{"event":"job_created","data":{"appId":` + string(quoted) + `}}`
		if _, err := o.Ingest(ctx, []byte(body), ""); !errors.As(err, &ve) || ve.Field != "data.appId" {
			t.Errorf("ingest for app id %q: %v, want a validation error naming data.appId", id, err)
		}
	}
	if apps, _ := o.ListApps(ctx); len(apps) != 0 {
		t.Fatalf("refused app ids were stored: %q", apps)
	}
	for _, id := range []string{"a", "App-1.prod_eu:2", strings.Repeat("Z", 128), "70922e93-0944-48cc-a560-61135ab291ad"} {
		if err := outbox.CheckAppID(id); err != nil {
			t.Errorf("CheckAppID(%q): %v", id, err)
		}
	}
}

// FuzzCheckAppID holds the validator to its definition, byte by byte.
func FuzzCheckAppID(f *testing.F) {
	for _, s := range []string{"app1", "", "bad\xffapp", "a/b", "A.b_c:d-e", strings.Repeat("x", 128), strings.Repeat("x", 129), "\x00", "é", "%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		want := len(id) >= 1 && len(id) <= 128
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:-", c) >= 0) {
				want = false
			}
		}
		err := outbox.CheckAppID(id)
		if (err == nil) != want {
			t.Fatalf("CheckAppID(%q) = %v, want valid=%v", id, err, want)
		}
		// The message is one of a few fixed texts (with a byte offset), so
		// it never echoes the id.
		var ve *outbox.ValidationError
		digitless := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return -1
			}
			return r
		}, fmt.Sprint(err))
		fixed := []string{"appId: missing", "appId: longer than  bytes", "appId: may contain only A-Z a-z - . _ : - (byte  is not one of them)"}
		if err != nil && (!errors.As(err, &ve) || ve.Field != "appId" || !slices.Contains(fixed, digitless)) {
			t.Fatalf("CheckAppID(%q) = %v, want an appId error that does not echo the id", id, err)
		}
	})
}

// A reused Idempotency-Key with another body is refused, names the key and
// stores nothing; the same body is still answered with the first event.
func TestIdempotencyKeyReusedWithAnotherBody(t *testing.T) {
	o := openTest(t, outbox.Options{})
	ctx := context.Background()
	hook, _ := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://127.0.0.1:1/"), Events: &[]string{"job_created"}})
	first, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a","n":1}}`), "k1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a","n":2}}`), "k1")
	var kr *outbox.KeyReusedError
	if !errors.As(err, &kr) || kr.Key != "k1" || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("reused key with another body: %v, want a KeyReusedError naming k1", err)
	}
	again, err := o.Ingest(ctx, []byte(`{"event":"job_created","data":{"appId":"a","n":1}}`), "k1")
	if err != nil || !again.Duplicate || again.ID != first.ID {
		t.Fatalf("same key, same body: %+v %v, want the first event %s", again, err, first.ID)
	}
	if ds, _, _ := o.Deliveries(ctx, "a", hook.ID, outbox.DeliveryFilter{}); len(ds) != 1 {
		t.Fatalf("history has %d deliveries, want only the first event's", len(ds))
	}
}

// URLs: at most 2,048 bytes, a port from 1 to 65535, and a name limit
// counted in characters.
func TestWebhookInputLimits(t *testing.T) {
	o := openTest(t, outbox.Options{AllowDestinations: []netip.Prefix{}})
	ctx := context.Background()
	create := func(name, u string) error {
		_, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr(name), URL: ptr(u), Events: &[]string{"job_created"}})
		return err
	}
	for _, u := range []string{"https://example.com:99999/", "https://example.com:0/", "https://example.com:65536/",
		"https://example.com/" + strings.Repeat("a", 2048-len("https://example.com/")+1)} {
		var ve *outbox.ValidationError
		if err := create("n", u); !errors.As(err, &ve) || ve.Field != "url" {
			t.Errorf("url of %d bytes %.40q: %v, want a url error", len(u), u, err)
		}
	}
	for _, u := range []string{"https://example.com:65535/", "https://example.com:1/", "https://example.com/" + strings.Repeat("a", 2048-len("https://example.com/"))} {
		if err := create("n", u); err != nil {
			t.Errorf("url %.40q (%d bytes) refused: %v", u, len(u), err)
		}
	}
	if err := create(strings.Repeat("é", 200), "https://example.com/"); err != nil {
		t.Errorf("a name of 200 characters (400 bytes) was refused: %v", err)
	}
	var ve *outbox.ValidationError
	if err := create(strings.Repeat("é", 201), "https://example.com/"); !errors.As(err, &ve) || ve.Field != "name" {
		t.Errorf("a name of 201 characters: %v, want a name error", err)
	}
}

// Every spelling of a refused address that some resolver accepts, and the
// IANA special-purpose ranges that are not globally reachable, are refused
// at create.
func TestRefusedDestinationSpellings(t *testing.T) {
	o := openTest(t, outbox.Options{AllowDestinations: []netip.Prefix{}})
	ctx := context.Background()
	for _, host := range []string{
		"127.1", "0177.0.0.1", "0x7f000001", "2130706433", "127.000.000.001", "0", "0x7f.1", "127.0.1", "0X7F.0.0.1",
		"127.0.0.1.", "[::127.0.0.1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "017700000001", "0xa9.0xfe.0xa9.0xfe",
		"198.18.0.1", "198.19.255.255", "240.0.0.1", "255.255.255.255", "192.0.0.1", "192.0.0.170", "192.0.2.1",
		"198.51.100.7", "203.0.113.9", "100.64.0.1", "[2001:db8::1]", "[2001:2::1]", "[3fff::1]", "[64:ff9b:1::1]",
		"[100::1]", "[5f00::1]", "[fec0::1]", "[2001::1]", "[::]", "[fe80::1%25eth0]",
	} {
		u := "http://" + host + "/hook"
		_, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(u), Events: &[]string{"job_created"}})
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || ve.Field != "url" {
			t.Errorf("create with %s: %v, want a url error", u, err)
		}
	}
	for _, host := range []string{"93.184.216.34", "0x5db8d822", "[2606:4700::1111]", "[2001:4860:4860::8888]", "[2001:20::1]", "example.com", "1.2.3.4.5", "0x7g"} {
		u := "http://" + host + "/hook"
		if _, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(u), Events: &[]string{"job_created"}}); err != nil {
			t.Errorf("create with %s refused: %v", u, err)
		}
	}
}

// Caddy's admin endpoint is refused at create and at dial time even when
// allow_destinations covers its address, under any name; the same
// address on another port stays allowed.
func TestAdminEndpointDenied(t *testing.T) {
	var adminHits atomic.Int32
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { adminHits.Add(1) }))
	defer admin.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	_, portStr, _ := net.SplitHostPort(admin.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	o := openTest(t, outbox.Options{
		RetrySchedule: []time.Duration{},
		DenyEndpoints: []outbox.Endpoint{{Addrs: netip.MustParsePrefix("127.0.0.0/8"), Port: uint16(port)}},
	})
	ctx := context.Background()
	for _, u := range []string{"http://127.0.0.1:" + portStr + "/load", "http://127.1:" + portStr + "/load",
		"http://[::ffff:127.0.0.1]:" + portStr + "/stop", "http://0.0.0.0:" + portStr + "/config/"} {
		_, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(u), Events: &[]string{"job_created"}})
		if err == nil || !strings.Contains(err.Error(), "admin endpoint") {
			t.Errorf("create with %s: %v, want it refused as the admin endpoint", u, err)
		}
	}
	byName, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr("http://localhost:" + portStr + "/load"), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := o.CreateWebhook(ctx, "a", outbox.WebhookInput{Name: ptr("n"), URL: ptr(other.URL), Events: &[]string{"job_created"}})
	if err != nil {
		t.Fatalf("another loopback port inside allow_destinations was refused: %v", err)
	}
	ingestOne(t, o, "a", "job_created")
	d := onlyDelivery(t, o, "a", byName.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
	if !strings.Contains(d.Attempts[0].Error, "admin endpoint") {
		t.Fatalf("delivery by name to the admin endpoint failed with %q, want it refused as the admin endpoint", d.Attempts[0].Error)
	}
	onlyDelivery(t, o, "a", allowed.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if n := adminHits.Load(); n != 0 {
		t.Fatalf("the admin endpoint received %d requests", n)
	}
}
