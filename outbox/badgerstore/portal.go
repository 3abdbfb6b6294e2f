package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Portal keys: the token signing key, and one generation counter per app
// whose tokens were ever revoked (8 bytes, big endian).
//
//	portal/key
//	portal/gen/<appId>
var (
	portalKeyKey    = []byte("portal/key")
	prefixPortalGen = []byte("portal/gen/")
)

func portalGenKey(appID string) []byte { return slices.Concat(prefixPortalGen, []byte(appID)) }

// PortalKey returns the stored portal key, storing fresh if there is none.
func (s *Store) PortalKey(ctx context.Context, fresh []byte) ([]byte, error) {
	// s.mu serializes writers, so two first calls cannot store two keys.
	s.mu.Lock()
	defer s.mu.Unlock()
	var key []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(portalKeyKey)
		if err != nil {
			return err
		}
		key, err = item.ValueCopy(nil)
		return err
	})
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("reading portal key: %w", unavailable(err))
	}
	if err := s.checkSpace(); err != nil {
		return nil, err
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(portalKeyKey, fresh) }); err != nil {
		return nil, fmt.Errorf("writing portal key: %w", unavailable(err))
	}
	if err := s.db.Sync(); err != nil {
		return nil, fmt.Errorf("syncing portal key: %w", unavailable(err))
	}
	return slices.Clone(fresh), nil
}

// PortalGeneration returns an app's portal token generation.
func (s *Store) PortalGeneration(ctx context.Context, appID string) (uint64, error) {
	var gen uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		gen, err = readGeneration(txn, appID)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading portal generation: %w", unavailable(err))
	}
	return gen, nil
}

// RevokePortalTokens increments an app's generation and syncs it, so a
// revocation survives a crash.
func (s *Store) RevokePortalTokens(ctx context.Context, appID string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSpace(); err != nil {
		return 0, err
	}
	var gen uint64
	err := s.update(func(txn *badger.Txn) error {
		cur, err := readGeneration(txn, appID)
		if err != nil {
			return err
		}
		gen = cur + 1
		return txn.Set(portalGenKey(appID), binary.BigEndian.AppendUint64(nil, gen))
	})
	if err != nil {
		return 0, fmt.Errorf("writing portal generation: %w", unavailable(err))
	}
	if err := s.db.Sync(); err != nil {
		return 0, fmt.Errorf("syncing portal generation: %w", unavailable(err))
	}
	return gen, nil
}

func readGeneration(txn *badger.Txn, appID string) (uint64, error) {
	item, err := txn.Get(portalGenKey(appID))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var gen uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("portal generation of %q has %d bytes, want 8", appID, len(v))
		}
		gen = binary.BigEndian.Uint64(v)
		return nil
	})
	return gen, err
}
