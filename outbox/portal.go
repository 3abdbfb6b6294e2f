package outbox

import (
	"context"
	"crypto/rand"
	"fmt"
)

// PortalKeySize is the length of the key that signs portal tokens.
const PortalKeySize = 32

// PortalKey returns the key that signs portal tokens, shared by every
// process on the store and created at its first use. It never changes, so
// it is read from the store once.
func (o *Outbox) PortalKey(ctx context.Context) ([]byte, error) {
	if k := o.portalKey.Load(); k != nil {
		return *k, nil
	}
	fresh := make([]byte, PortalKeySize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("generating the portal key: %w", err)
	}
	key, err := o.store.PortalKey(ctx, fresh)
	if err != nil {
		return nil, fmt.Errorf("reading the portal key: %w", err)
	}
	if len(key) != PortalKeySize {
		return nil, fmt.Errorf("reading the portal key: the store holds %d bytes, want %d", len(key), PortalKeySize)
	}
	o.portalKey.Store(&key)
	return key, nil
}

// PortalGeneration returns the current generation of an app's portal
// tokens. It is read from the store every time, so a revocation through
// any sidecar applies at once on all of them.
func (o *Outbox) PortalGeneration(ctx context.Context, appID string) (uint64, error) {
	gen, err := o.store.PortalGeneration(ctx, appID)
	if err != nil {
		return 0, fmt.Errorf("reading the portal generation: %w", err)
	}
	return gen, nil
}

// RevokePortalTokens invalidates every portal token of an app.
func (o *Outbox) RevokePortalTokens(ctx context.Context, appID string) error {
	if _, err := o.store.RevokePortalTokens(ctx, appID); err != nil {
		return fmt.Errorf("revoking portal tokens: %w", err)
	}
	return nil
}
