package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-webhooks/caddy-webhooks/receiver"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the adapt golden files")

const goldenSeparator = "----------"

// TestAdaptGolden adapts each testdata/adapt/*.caddyfile (a Caddyfile, a
// separator line, then the expected JSON) and compares the JSON
// semantically. In files named error_*, what follows the separator is text
// the adapt error must contain. go test -run TestAdaptGolden -update
// rewrites the expected JSON.
func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(raw), "\n"+goldenSeparator+"\n")
			if !ok {
				t.Fatalf("%s has no %q line", file, goldenSeparator)
			}
			got, adaptErr := adapt(t, file, input+"\n")

			if strings.HasPrefix(filepath.Base(file), "error_") {
				want := strings.TrimSpace(expected)
				if adaptErr == nil {
					t.Fatalf("adapt succeeded, want an error containing %q; got:\n%s", want, got)
				}
				if !strings.Contains(adaptErr.Error(), want) {
					t.Fatalf("adapt error %q does not contain %q", adaptErr, want)
				}
				return
			}
			if adaptErr != nil {
				t.Fatalf("adapt: %v", adaptErr)
			}
			if *update {
				writeGolden(t, file, input+"\n"+goldenSeparator+"\n"+got)
				return
			}
			compareJSON(t, got, expected)
		})
	}
}

// TestAdaptExample pins what Caddyfile.example at the repository root
// adapts to; testdata/adapt/example.json is its golden file.
func TestAdaptExample(t *testing.T) {
	// The example reads {$WEBHOOK_SECRET:default} at adapt time.
	t.Setenv("WEBHOOK_SECRET", "")
	os.Unsetenv("WEBHOOK_SECRET")

	input, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := adapt(t, "Caddyfile.example", string(input))
	if err != nil {
		t.Fatalf("Caddyfile.example does not adapt: %v", err)
	}
	golden := filepath.Join("testdata", "adapt", "example.json")
	if *update {
		writeGolden(t, golden, got)
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	compareJSON(t, got, string(want))
}

// adapt runs the Caddyfile adapter in process, as `caddy adapt` does, and
// returns indented JSON. Warnings fail the test.
func adapt(t *testing.T, filename, input string) (string, error) {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": filename})
	if err != nil {
		return "", err
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n", nil
}

func compareJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("adapted JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("expected JSON: %v (run go test -run TestAdapt -update to write it)", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("adapted JSON differs from the golden file (go test -run TestAdapt -update rewrites it)\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func writeGolden(t *testing.T, file, content string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("updated %s", file)
}
