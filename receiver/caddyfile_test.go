package receiver

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
		err   string
	}{
		{
			name:  "defaults",
			input: `webhook_verify { secret abc }`,
			want:  Handler{Secrets: []string{"abc"}},
		},
		{
			name: "every option",
			input: `webhook_verify {
				secret {env.WEBHOOK_SECRET}
				secret {file./run/secrets/old} whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
				scheme standard
				header X-Custom-Signature
				max_body 2MiB
				read_timeout 30s
				tolerance 90s
				replay_window 24h
				replay_storage {env.REPLAY_DSN}
			}`,
			want: Handler{
				Secrets:       []string{"{env.WEBHOOK_SECRET}", "{file./run/secrets/old}", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
				Scheme:        "standard",
				Header:        "X-Custom-Signature",
				MaxBody:       2 << 20,
				ReadTimeout:   caddy.Duration(30 * time.Second),
				Tolerance:     caddy.Duration(90 * time.Second),
				ReplayWindow:  caddy.Duration(24 * time.Hour),
				ReplayStorage: "{env.REPLAY_DSN}",
			},
		},
		{
			name:  "replay_storage as a literal URL",
			input: "webhook_verify {\n secret a\n replay_window 1h\n replay_storage postgresql://recv@db:5432/hooks?sslmode=require\n}",
			want: Handler{Secrets: []string{"a"}, ReplayWindow: caddy.Duration(time.Hour),
				ReplayStorage: "postgresql://recv@db:5432/hooks?sslmode=require"},
		},
		{
			name:  "max_body in decimal units, as request_body reads it",
			input: `webhook_verify { secret a; max_body 1MB }`,
			want:  Handler{Secrets: []string{"a"}, MaxBody: 1000 * 1000},
		},
		{
			name:  "days are a Caddy duration",
			input: "webhook_verify {\n secret a\n scheme github\n replay_window 1d\n}",
			want:  Handler{Secrets: []string{"a"}, Scheme: "github", ReplayWindow: caddy.Duration(24 * time.Hour)},
		},
		{name: "inline argument", input: `webhook_verify abc`, err: "wrong argument count"},
		{name: "secret without value", input: "webhook_verify {\n secret\n}", err: "wrong argument count"},
		{name: "unknown scheme", input: "webhook_verify {\n scheme gitlab\n}", err: "scheme: unknown 'gitlab'"},
		{name: "scheme with two values", input: "webhook_verify {\n scheme github stripe\n}", err: "wrong argument count"},
		{name: "header without value", input: "webhook_verify {\n header\n}", err: "wrong argument count"},
		{name: "bad size", input: "webhook_verify {\n max_body lots\n}", err: "max_body: "},
		{name: "zero size", input: "webhook_verify {\n max_body 0\n}", err: "max_body: size \"0\" out of range"},
		{name: "bad tolerance", input: "webhook_verify {\n tolerance soon\n}", err: "tolerance: "},
		{name: "zero tolerance", input: "webhook_verify {\n tolerance 0s\n}", err: "tolerance: must be positive"},
		{name: "negative window", input: "webhook_verify {\n replay_window -1m\n}", err: "replay_window: must be positive"},
		{name: "window without value", input: "webhook_verify {\n replay_window\n}", err: "wrong argument count"},
		{name: "bad read timeout", input: "webhook_verify {\n read_timeout later\n}", err: "read_timeout: "},
		{name: "zero read timeout", input: "webhook_verify {\n read_timeout 0\n}", err: "read_timeout: must be positive"},
		{name: "read timeout without value", input: "webhook_verify {\n read_timeout\n}", err: "wrong argument count"},
		{name: "storage without value", input: "webhook_verify {\n replay_storage\n}", err: "wrong argument count"},
		{name: "storage with two values", input: "webhook_verify {\n replay_storage postgres://a/b postgres://c/d\n}", err: "wrong argument count"},
		{name: "storage as key=value", input: "webhook_verify {\n replay_storage host=db\n}",
			err: "replay_storage: must be a postgres:// or postgresql:// URL"},
		{name: "storage of another database", input: "webhook_verify {\n replay_storage redis://u:pw@cache:6379\n}",
			err: "replay_storage: must be a postgres:// or postgresql:// URL"},
		{name: "unknown option", input: "webhook_verify {\n secrets a\n}", err: "unrecognized webhook_verify option 'secrets'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Semicolons stand for newlines to keep the simple cases on one line.
			input := strings.ReplaceAll(tc.input, "; ", "\n")
			input = strings.Replace(input, "{ ", "{\n", 1)
			input = strings.Replace(input, " }", "\n}", 1)
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), ":pw@") {
					t.Fatalf("the error shows a DSN's password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parsed\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestAdaptOrder pins that webhook_verify runs before reverse_proxy with no
// order line, and what JSON the directive adapts to.
func TestAdaptOrder(t *testing.T) {
	input := `:8080 {
	reverse_proxy 127.0.0.1:9000
	webhook_verify /hooks/* {
		secret {env.WEBHOOK_SECRET}
		scheme github
		max_body 64KB
		read_timeout 3s
		replay_window 1h
		replay_storage {env.REPLAY_DSN}
	}
}
`
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	out, warnings, err := adapter.Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if len(warnings) > 0 {
		t.Fatalf("adapt warned: %v", warnings)
	}
	text := string(out)
	v := strings.Index(text, `"handler":"webhook_verify"`)
	p := strings.Index(text, `"handler":"reverse_proxy"`)
	if v < 0 || p < 0 || v > p {
		t.Fatalf("webhook_verify is not before reverse_proxy:\n%s", text)
	}

	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Match  []map[string]any  `json:"match"`
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	routes := cfg.Apps.HTTP.Servers["srv0"].Routes
	if len(routes) != 2 || len(routes[0].Handle) != 1 {
		t.Fatalf("want two routes, webhook_verify then reverse_proxy:\n%s", text)
	}
	if len(routes[0].Match) == 0 || routes[0].Match[0]["path"] == nil {
		t.Errorf("the path matcher was lost: %v", routes[0].Match)
	}
	handler := routes[0].Handle[0]
	want := `{"handler":"webhook_verify","max_body":64000,"read_timeout":3000000000,"replay_storage":"{env.REPLAY_DSN}",` +
		`"replay_window":3600000000000,"scheme":"github","secrets":["{env.WEBHOOK_SECRET}"]}`
	if string(handler) != want {
		t.Fatalf("adapted to\n%s\nwant\n%s", handler, want)
	}
}
