package outbox

import (
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/internal/fixture"
)

// FuzzScanEvent holds the one-pass scan to the reference parser: what the
// scan accepts, parseEvent accepts with the same type and app, and what
// parseEvent accepts the scan does not leave to the slow path.
func FuzzScanEvent(f *testing.F) {
	for _, s := range []string{
		string(fixture.Event1K()),
		`{"event":"x","data":{"appId":"a"}}`,
		` {"data":{"n":[1,{"a":null}],"appId":"a"},"event":"x","extra":true} `,
		`{"event":"x","data":{"appId":"a","appId":"b"}}`,
		`{"event":"x","event":"y","data":{"appId":"a"}}`,
		`{"ev\u0065nt":"x","data":{"appId":"a"}}`,
		`{"event":"x","data":{"appId":"a"}} {}`,
		`{"event":"\ud800","data":{"appId":"a"}}`,
		"{\"event\":\"x\xff\",\"data\":{\"appId\":\"a\"}}",
		`{"event":"","data":{"appId":"a"}}`,
		`{"event":"x","data":{"appId":"a b"}}`,
		`{"EVENT":"x","event":"y","data":{"AppId":"q","appId":"a"}}`,
		`{"event":"x","data":{"appId":"a"}`,
		`[{"event":"x","data":{"appId":"a"}}]`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, app, ok := scanEvent(body)
		wantEv, wantApp, err := parseEvent(body)
		if ok && (err != nil || ev != wantEv || app != wantApp) {
			t.Fatalf("scan accepted %q as (%q, %q); reference: (%q, %q, %v)", body, ev, app, wantEv, wantApp, err)
		}
		if !ok && err == nil {
			t.Fatalf("scan refused %q, which the reference accepts as (%q, %q)", body, wantEv, wantApp)
		}
	})
}
