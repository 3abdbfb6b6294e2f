package storetest

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// suitePortal checks the portal token state: one key for the store, kept
// from the first call on, even when first calls race; generations per app
// that start at 0 and count every revocation, concurrent ones included.
func suitePortal(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	if gen, err := s.PortalGeneration(ctx, "app-a"); err != nil || gen != 0 {
		t.Fatalf("generation of an app never revoked: %d, %v; want 0", gen, err)
	}

	// Racing first calls all get the same key, one of theirs.
	const racers = 8
	keys := make([][]byte, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.PortalKey(ctx, bytes.Repeat([]byte{byte(i + 1)}, outbox.PortalKeySize))
			if err != nil {
				t.Errorf("portal key: %v", err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	first := keys[0]
	if len(first) != outbox.PortalKeySize || first[0] < 1 || first[0] > racers ||
		!bytes.Equal(first, bytes.Repeat(first[:1], outbox.PortalKeySize)) {
		t.Fatalf("portal key %x is none of the fresh keys offered", first)
	}
	for i, k := range keys {
		if !bytes.Equal(k, first) {
			t.Fatalf("racing call %d got key %x, call 0 got %x: want one key", i, k, first)
		}
	}
	later, err := s.PortalKey(ctx, bytes.Repeat([]byte{0xee}, outbox.PortalKeySize))
	if err != nil || !bytes.Equal(later, first) {
		t.Fatalf("a later call with another fresh key got %x, %v; want the stored %x", later, err, first)
	}

	if gen, err := s.RevokePortalTokens(ctx, "app-a"); err != nil || gen != 1 {
		t.Fatalf("first revocation: generation %d, %v; want 1", gen, err)
	}
	const revokers = 10
	for range revokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.RevokePortalTokens(ctx, "app-a"); err != nil {
				t.Errorf("revoke: %v", err)
			}
		}()
	}
	wg.Wait()
	if gen, err := s.PortalGeneration(ctx, "app-a"); err != nil || gen != 1+revokers {
		t.Fatalf("after %d concurrent revocations: generation %d, %v; want %d", revokers, gen, err, 1+revokers)
	}
	// Apps are apart, also when one id is a prefix of another.
	for _, other := range []string{"app-b", "app-", "app-a2"} {
		if gen, err := s.PortalGeneration(ctx, other); err != nil || gen != 0 {
			t.Fatalf("generation of %s after revoking app-a: %d, %v; want 0", other, gen, err)
		}
	}
}
