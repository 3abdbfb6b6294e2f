package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/jackc/pgx/v5"
)

// invalidate drops the ListWebhooks cache after a webhook write, here or
// announced by another sidecar.
func (s *Store) invalidate() {
	s.cacheMu.Lock()
	s.cacheGen++
	clear(s.cache)
	s.cacheMu.Unlock()
}

// CreateWebhook stores a new webhook.
func (s *Store) CreateWebhook(ctx context.Context, w *outbox.Webhook) error {
	if err := outbox.CheckStoredAppID(w.AppID); err != nil {
		return err
	}
	defer s.invalidate()
	options, err := optionsJSON(w)
	if err != nil {
		return fmt.Errorf("encoding webhook options: %w", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO webhooks (`+pgWebhookCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb)`,
		w.ID, w.AppID, w.Name, w.URL, w.Events, w.Enabled, w.Secret, w.PreviousSecret,
		nullTime(w.PreviousSecretUntil), nullTime(w.FailingSince), w.DisabledReason, w.CreatedAt, w.UpdatedAt, options)
	if err != nil {
		return pgErr("creating webhook", err)
	}
	return nil
}

// UpdateWebhook locks the row, applies fn to it and writes it back, so
// concurrent updates from several sidecars apply one after the other.
func (s *Store) UpdateWebhook(ctx context.Context, appID, id string, fn func(*outbox.Webhook) error) (*outbox.Webhook, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, pgErr("updating webhook", err)
	}
	defer tx.Rollback(context.Background())
	w, err := scanWebhook(tx.QueryRow(ctx, `SELECT `+pgWebhookCols+` FROM webhooks
		WHERE id = $1 AND app_id = $2 FOR UPDATE`, id, appID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, outbox.ErrNotFound
	}
	if err != nil {
		return nil, pgErr("reading webhook", err)
	}
	if err := fn(w); err != nil {
		return nil, err
	}
	options, err := optionsJSON(w)
	if err != nil {
		return nil, fmt.Errorf("encoding webhook options: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE webhooks SET name = $3, url = $4, events = $5, enabled = $6,
			secret = $7, previous_secret = $8, previous_secret_until = $9, failing_since = $10,
			disabled_reason = $11, created_at = $12, updated_at = $13, options = $14::jsonb
		WHERE id = $1 AND app_id = $2`,
		id, appID, w.Name, w.URL, w.Events, w.Enabled, w.Secret, w.PreviousSecret,
		nullTime(w.PreviousSecretUntil), nullTime(w.FailingSince), w.DisabledReason, w.CreatedAt, w.UpdatedAt, options); err != nil {
		return nil, pgErr("writing webhook", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, pgErr("committing webhook", err)
	}
	s.invalidate()
	return w.Clone(), nil
}

// DeleteWebhook removes the webhook and, by cascade in the same
// transaction, its history; attempts in flight find nothing to save.
func (s *Store) DeleteWebhook(ctx context.Context, appID, id string) error {
	defer s.invalidate()
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhooks WHERE id = $1 AND app_id = $2`, id, appID)
	if err != nil {
		return pgErr("deleting webhook", err)
	}
	if tag.RowsAffected() == 0 {
		return outbox.ErrNotFound
	}
	return nil
}

// GetWebhook reads a webhook of the app from the database.
func (s *Store) GetWebhook(ctx context.Context, appID, id string) (*outbox.Webhook, error) {
	w, err := scanWebhook(s.pool.QueryRow(ctx, `SELECT `+pgWebhookCols+` FROM webhooks
		WHERE id = $1 AND app_id = $2`, id, appID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, outbox.ErrNotFound
	}
	if err != nil {
		return nil, pgErr("reading webhook", err)
	}
	return w, nil
}

// ListWebhooks returns an app's webhooks, oldest first, from a cache that
// every webhook write clears through a notification (see Options).
func (s *Store) ListWebhooks(ctx context.Context, appID string) ([]*outbox.Webhook, error) {
	ttl := s.opts.WebhookCacheTTL
	s.cacheMu.Lock()
	c, ok := s.cache[appID]
	gen := s.cacheGen
	s.cacheMu.Unlock()
	// Without the notification connection, another sidecar's change
	// would go unseen: read the database.
	if !s.listening.Load() {
		ttl = -1
	}
	if ttl > 0 && ok && time.Since(c.at) < ttl {
		return copyWebhooks(c.list), nil
	}
	at := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT `+pgWebhookCols+` FROM webhooks WHERE app_id = $1 ORDER BY id`, appID)
	if err != nil {
		return nil, pgErr("listing webhooks", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*outbox.Webhook, error) { return scanWebhook(r) })
	if err != nil {
		return nil, pgErr("listing webhooks", err)
	}
	if ttl > 0 {
		s.cacheMu.Lock()
		// A local write since the query started may have changed the list.
		if s.cacheGen == gen {
			if len(s.cache) >= 10000 {
				// Bound the memory a stream of distinct app ids can take.
				clear(s.cache)
			}
			s.cache[appID] = cachedHooks{list: list, at: at}
		}
		s.cacheMu.Unlock()
	}
	return copyWebhooks(list), nil
}

// CachedWebhook finds a webhook in the app's cached list while the
// notification connection keeps that list current; a deleted webhook is
// reported as nil. Without a current list it cannot say.
func (s *Store) CachedWebhook(appID, id string) (*outbox.Webhook, bool) {
	if !s.listening.Load() || s.opts.WebhookCacheTTL <= 0 {
		return nil, false
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	c, ok := s.cache[appID]
	if !ok || time.Since(c.at) >= s.opts.WebhookCacheTTL {
		return nil, false
	}
	for _, w := range c.list {
		if w.ID == id {
			return w.Clone(), true
		}
	}
	return nil, true
}

func copyWebhooks(list []*outbox.Webhook) []*outbox.Webhook {
	out := make([]*outbox.Webhook, len(list))
	for i, w := range list {
		out[i] = w.Clone()
	}
	return out
}

// ListApps returns the ids of apps with webhooks, sorted.
func (s *Store) ListApps(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT app_id FROM webhooks ORDER BY app_id`)
	if err != nil {
		return nil, pgErr("listing apps", err)
	}
	apps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgErr("listing apps", err)
	}
	return apps, nil
}
