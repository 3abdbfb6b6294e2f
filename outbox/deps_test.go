package outbox_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The engine stays a plain library: no storage driver and no Caddy among
// its dependencies, so each store is found whole in its own package.
func TestEngineImportsNoDriver(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v %s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"dgraph-io/badger", "jackc/pgx", "caddyserver/caddy"} {
			if strings.Contains(dep, banned) {
				t.Errorf("outbox depends on %s", dep)
			}
		}
	}
}
