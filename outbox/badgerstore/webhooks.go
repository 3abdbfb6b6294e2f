package badgerstore

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"

	"github.com/dgraph-io/badger/v4"
)

func (s *Store) cachePut(w *outbox.Webhook) {
	s.webhooks[w.ID] = w
	list := s.byApp[w.AppID]
	i := slices.IndexFunc(list, func(x *outbox.Webhook) bool { return x.ID == w.ID })
	if i >= 0 {
		list = slices.Clone(list)
		list[i] = w
	} else {
		list = append(slices.Clone(list), w)
	}
	s.byApp[w.AppID] = list
}

func (s *Store) cacheDelete(w *outbox.Webhook) {
	delete(s.webhooks, w.ID)
	list := slices.DeleteFunc(slices.Clone(s.byApp[w.AppID]), func(x *outbox.Webhook) bool { return x.ID == w.ID })
	if len(list) == 0 {
		delete(s.byApp, w.AppID)
	} else {
		s.byApp[w.AppID] = list
	}
}

func (s *Store) writeWebhook(w *outbox.Webhook) error {
	if err := s.checkSpace(); err != nil {
		return err
	}
	v, err := encodeWebhook(w)
	if err != nil {
		return err
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(webhookKey(w.AppID, w.ID), v) }); err != nil {
		return fmt.Errorf("writing webhook: %w", unavailable(err))
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("syncing webhook: %w", unavailable(err))
	}
	return nil
}

// CreateWebhook stores a new webhook.
func (s *Store) CreateWebhook(ctx context.Context, w *outbox.Webhook) error {
	// A valid app id is ASCII, so the key built from it and the JSON
	// record that names it hold the same bytes.
	if err := outbox.CheckStoredAppID(w.AppID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeWebhook(w); err != nil {
		return err
	}
	c := *w
	s.cachePut(&c)
	return nil
}

// UpdateWebhook applies fn to a copy of the webhook and stores it.
func (s *Store) UpdateWebhook(ctx context.Context, appID, id string, fn func(*outbox.Webhook) error) (*outbox.Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.webhooks[id]
	if !ok || cur.AppID != appID {
		return nil, outbox.ErrNotFound
	}
	w := *cur.Clone()
	if err := fn(&w); err != nil {
		return nil, err
	}
	if err := s.writeWebhook(&w); err != nil {
		return nil, err
	}
	s.cachePut(&w)
	c := w
	return &c, nil
}

// DeleteWebhook removes the webhook now and its history in the background.
// Its pending deliveries are dropped as the queue reaches them.
func (s *Store) DeleteWebhook(ctx context.Context, appID, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.webhooks[id]
	if !ok || w.AppID != appID {
		return outbox.ErrNotFound
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete(webhookKey(appID, id)) }); err != nil {
		return fmt.Errorf("deleting webhook: %w", unavailable(err))
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("syncing webhook: %w", unavailable(err))
	}
	s.cacheDelete(w)
	s.background(func() {
		s.dropQueue(id)
		s.dropHistory(id)
	})
	return nil
}

// dropHistory deletes a deleted webhook's finished deliveries; pending ones
// in flight are dropped by Save when their attempt ends.
func (s *Store) dropHistory(webhookID string) {
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	_ = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: deliveryPrefix(webhookID), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid() && !s.closing(); it.Next() {
			var pending bool
			_ = it.Item().Value(func(v []byte) error {
				d, _, err := decodeDelivery(v)
				pending = err == nil && d.Status == outbox.StatusPending
				return nil
			})
			if !pending {
				_ = wb.Delete(it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	_ = wb.Flush()
}

// GetWebhook returns a webhook of the app.
func (s *Store) GetWebhook(ctx context.Context, appID, id string) (*outbox.Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.webhooks[id]
	if !ok || w.AppID != appID {
		return nil, outbox.ErrNotFound
	}
	return w.Clone(), nil
}

// ListWebhooks returns an app's webhooks, oldest first.
func (s *Store) ListWebhooks(ctx context.Context, appID string) ([]*outbox.Webhook, error) {
	s.mu.Lock()
	list := s.byApp[appID]
	s.mu.Unlock()
	out := make([]*outbox.Webhook, len(list))
	for i, w := range list {
		out[i] = w.Clone()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ListApps returns the ids of apps with webhooks, sorted.
func (s *Store) ListApps(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	apps := make([]string, 0, len(s.byApp))
	for a := range s.byApp {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	return apps, nil
}

// CachedWebhook is GetWebhook: Badger's webhooks are all in memory. A
// deleted webhook is reported as nil.
func (s *Store) CachedWebhook(appID, id string) (*outbox.Webhook, bool) {
	w := s.cachedWebhook(id)
	if w != nil && w.AppID != appID {
		w = nil
	}
	return w, true
}

func (s *Store) cachedWebhook(id string) *outbox.Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.webhooks[id]; ok {
		return w.Clone()
	}
	return nil
}
