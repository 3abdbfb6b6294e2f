package outbox_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// Through a proxy the sidecar resolves no names, but a URL whose host is a
// literal IP, in any spelling a resolver reads as one, is still checked at
// each attempt: after a reload narrows allow_destinations, deliveries to
// such URLs fail as blocked and the proxy never sees them, while a host
// name still goes through it.
func TestProxyChecksLiteralIPs(t *testing.T) {
	var mu sync.Mutex
	var proxied []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		proxied = append(proxied, r.URL.String())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer proxy.Close()
	proxyURL, _ := url.Parse(proxy.URL)
	loopbackOnly := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	opts := outbox.Options{
		Proxy:         proxyURL,
		RetrySchedule: []time.Duration{10 * time.Millisecond},
		AllowDestinations: append(loopbackOnly, netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("fd00::/8")),
	}
	o := openTest(t, opts)
	ctx := context.Background()
	named, err := o.CreateWebhook(ctx, "a", hookInput("http://hooks.example.test/named", nil))
	if err != nil {
		t.Fatal(err)
	}
	literal := map[string]string{} // webhook id -> URL
	for _, u := range []string{"http://10.0.0.1/v4", "http://10.0.0.1./dot", "http://0x0a000001/hex", "http://10.1/short", "http://[fd00::1]:8080/v6"} {
		w, err := o.CreateWebhook(ctx, "a", hookInput(u, nil))
		if err != nil {
			t.Fatalf("%s while allowed: %v", u, err)
		}
		literal[w.ID] = u
	}

	opts.AllowDestinations = loopbackOnly
	o.Configure(opts)
	var ve *outbox.ValidationError
	if _, err := o.CreateWebhook(ctx, "a", hookInput("http://10.0.0.2/", nil)); !errors.As(err, &ve) || ve.Field != "url" || !strings.Contains(err.Error(), "private") {
		t.Errorf("creating a private literal IP through a proxy: %v, want a url error naming private", err)
	}

	ingestOne(t, o, "a", "job_created")
	onlyDelivery(t, o, "a", named.ID, func(d *outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	for id, u := range literal {
		d := onlyDelivery(t, o, "a", id, func(d *outbox.Delivery) bool { return d.Status != outbox.StatusPending })
		if d.Status != outbox.StatusFailed || len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, "is private and not in allow_destinations") {
			t.Errorf("%s: %s after %d attempts (%+v), want failed once as a private destination", u, d.Status, len(d.Attempts), d.Attempts)
		}
	}
	wait.Until(t, "the proxy's one request", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(proxied) >= 1
	})
	mu.Lock()
	defer mu.Unlock()
	if len(proxied) != 1 || proxied[0] != "http://hooks.example.test/named" {
		t.Fatalf("the proxy saw %v, want only http://hooks.example.test/named", proxied)
	}
}
