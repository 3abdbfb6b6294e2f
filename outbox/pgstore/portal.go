package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// PortalKey stores fresh unless a key is stored, and returns the stored
// one: of several sidecars starting at once, the first insert wins and all
// read it. The read is a statement of its own, so it sees a key another
// sidecar committed while the insert waited for it.
func (s *Store) PortalKey(ctx context.Context, fresh []byte) ([]byte, error) {
	if _, err := s.pool.Exec(ctx, `INSERT INTO portal_key (key) VALUES ($1) ON CONFLICT (singleton) DO NOTHING`, fresh); err != nil {
		return nil, pgErr("writing portal key", err)
	}
	var key []byte
	if err := s.pool.QueryRow(ctx, `SELECT key FROM portal_key`).Scan(&key); err != nil {
		return nil, pgErr("reading portal key", err)
	}
	return key, nil
}

// PortalGeneration returns an app's portal token generation.
func (s *Store) PortalGeneration(ctx context.Context, appID string) (uint64, error) {
	var gen int64
	err := s.pool.QueryRow(ctx, `SELECT generation FROM portal_generations WHERE app_id = $1`, appID).Scan(&gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, pgErr("reading portal generation", err)
	}
	return uint64(gen), nil
}

// RevokePortalTokens increments an app's generation in one statement, so
// concurrent revocations from several sidecars each count.
func (s *Store) RevokePortalTokens(ctx context.Context, appID string) (uint64, error) {
	var gen int64
	err := s.pool.QueryRow(ctx, `INSERT INTO portal_generations (app_id, generation) VALUES ($1, 1)
		ON CONFLICT (app_id) DO UPDATE SET generation = portal_generations.generation + 1
		RETURNING generation`, appID).Scan(&gen)
	if err != nil {
		return 0, pgErr("revoking portal tokens", err)
	}
	return uint64(gen), nil
}
