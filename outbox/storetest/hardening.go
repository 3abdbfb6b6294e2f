package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// suiteAppIDs: a store refuses a webhook under an invalid app id, so none
// is ever keyed by bytes its record does not hold; one under every byte a
// valid app id may have is found, listed and deleted by that id.
func suiteAppIDs(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	for _, id := range []string{"", "bad\xffapp", "a/b", "a\x00b"} {
		w := &outbox.Webhook{ID: newID(), AppID: id, Name: "n", URL: "https://example.test/", Events: []string{"job_created"},
			Enabled: true, CreatedAt: now, UpdatedAt: now}
		err := s.CreateWebhook(ctx, w)
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || ve.Field != "appId" {
			t.Errorf("creating a webhook under app id %q: %v, want a validation error naming appId", id, err)
		}
	}
	if apps, _ := s.ListApps(ctx); len(apps) != 0 {
		t.Fatalf("refused app ids were stored: %q", apps)
	}
	const every = "AZaz09._:-"
	w := CreateWebhook(t, s, every)
	if got, err := s.GetWebhook(ctx, every, w.ID); err != nil || got.AppID != every {
		t.Fatalf("get by app id %q: %+v %v", every, got, err)
	}
	if apps, _ := s.ListApps(ctx); !slices.Equal(apps, []string{every}) {
		t.Fatalf("apps %q, want [%q]", apps, every)
	}
	if err := s.DeleteWebhook(ctx, every, w.ID); err != nil {
		t.Fatal(err)
	}
	if hooks, _ := s.ListWebhooks(ctx, every); len(hooks) != 0 {
		t.Fatalf("after delete the app still has %d webhooks", len(hooks))
	}
}

// suiteIdempotencyBodyHash: the body's hash is kept with its key, so a
// repeat with another body is told apart (KeyReused), in one batch and
// across batches; a key committed without a hash matches any body.
func suiteIdempotencyBodyHash(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	keyed := func(key string, n int) *outbox.Ingest {
		in := NewIngest("a", "job_created", EventBody("a", "job_created", n), key, w)
		sum := sha256.Sum256(in.Event.Body)
		in.BodyHash = sum[:]
		return in
	}
	first := keyed("k", 1)
	if err := s.Commit(ctx, []*outbox.Ingest{first}); err != nil {
		t.Fatal(err)
	}
	same, other := keyed("k", 1), keyed("k", 2)
	inBatch, inBatchOther := keyed("k2", 3), keyed("k2", 4)
	if err := s.Commit(ctx, []*outbox.Ingest{same, other, inBatch, inBatchOther}); err != nil {
		t.Fatal(err)
	}
	if r := same.Result; !r.Duplicate || r.KeyReused || r.ID != first.Event.ID {
		t.Fatalf("same key and body: %+v, want a duplicate of %s", r, first.Event.ID)
	}
	if r := other.Result; !r.Duplicate || !r.KeyReused || r.ID != first.Event.ID {
		t.Fatalf("same key, another body: %+v, want KeyReused", r)
	}
	if r := inBatch.Result; r.Duplicate {
		t.Fatalf("first use of k2: %+v", r)
	}
	if r := inBatchOther.Result; !r.Duplicate || !r.KeyReused {
		t.Fatalf("k2 again in the same batch with another body: %+v, want KeyReused", r)
	}
	unhashed := NewIngest("a", "job_created", EventBody("a", "job_created", 5), "old", w)
	if err := s.Commit(ctx, []*outbox.Ingest{unhashed}); err != nil {
		t.Fatal(err)
	}
	later := keyed("old", 6)
	if err := s.Commit(ctx, []*outbox.Ingest{later}); err != nil {
		t.Fatal(err)
	}
	if r := later.Result; !r.Duplicate || r.KeyReused || r.ID != unhashed.Event.ID {
		t.Fatalf("a key stored without a hash: %+v, want a plain duplicate of %s", r, unhashed.Event.ID)
	}
	if st := Stats(t, s); st.Pending != 3 {
		t.Fatalf("pending %d, want 3: duplicates and reused keys store nothing", st.Pending)
	}
}
