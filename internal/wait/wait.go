// Package wait polls a condition in tests, so they wait on what they
// assert rather than on the clock: a slow machine takes longer, it does
// not fail.
package wait

import (
	"testing"
	"time"
)

// Default bounds a wait when the test names none: generous, since it is
// only reached when the condition never holds.
const Default = 30 * time.Second

// Until polls cond until it holds, failing the test after Default.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, Default, what, cond)
}

// Within polls cond until it holds, failing the test after max.
func Within(t testing.TB, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still waiting for %s", max, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
