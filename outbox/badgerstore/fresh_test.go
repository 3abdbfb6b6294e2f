package badgerstore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// claimAll claims every due delivery.
func claimAll(t *testing.T, s *Store) []*outbox.Job {
	t.Helper()
	jobs, _, err := s.Claim(context.Background(), &outbox.ClaimRequest{Now: time.Now().Add(time.Second), Limit: 1 << 20, MaxInFlight: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestFirstClaimComesFromMemory: the first claim of a just-committed
// delivery needs no read of the delivery or its event back from Badger,
// and a later claim of it reads what Save wrote.
func TestFirstClaimComesFromMemory(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MappedReleaseEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, bodies := commitEvents(t, s, 10)
	// Remove the records behind the store's back: a claim that read them
	// would find the deliveries gone.
	if err := s.db.Update(func(txn *badger.Txn) error {
		for id := range bodies {
			if err := txn.Delete(deliveryKey(w.ID, id)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	jobs := claimAll(t, s)
	if len(jobs) != 10 {
		t.Fatalf("claimed %d jobs, want 10", len(jobs))
	}
	for _, j := range jobs {
		if j.Gone || j.Event == nil {
			t.Fatalf("delivery %s was read back from Badger on its first claim (gone %v, event %v)", j.Delivery.ID, j.Gone, j.Event != nil)
		}
		if !bytes.Equal(j.Event.Body, bodies[j.Delivery.ID]) {
			t.Fatalf("delivery %s claimed with body %q, want the committed one", j.Delivery.ID, j.Event.Body)
		}
		if j.EventExpires.IsZero() || j.EventExpires.After(time.Now().Add(time.Duration(s.events.Load()))) {
			t.Fatalf("delivery %s claimed with event expiry %v, want no later than the event's TTL from now", j.Delivery.ID, j.EventExpires)
		}
	}

	// A retry is claimed with the attempt Save recorded, not the
	// delivery as committed.
	s2, err := Open(t.TempDir(), Options{MappedReleaseEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	commitEvents(t, s2, 1)
	j := claimAll(t, s2)[0]
	now := time.Now()
	j.Delivery.Attempts = append(j.Delivery.Attempts, outbox.Attempt{SentAt: now, ResponseStatusCode: 500})
	j.Delivery.Round, j.Delivery.NextAttemptAt = 1, &now
	if err := s2.Save(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	retry := claimAll(t, s2)
	if len(retry) != 1 || len(retry[0].Delivery.Attempts) != 1 || retry[0].Delivery.Round != 1 {
		t.Fatalf("the retry was claimed as %+v, want the delivery with the one attempt saved", retry)
	}
}

// TestFreshMemoryIsBounded: past maxFreshBytes, deliveries are read back
// from Badger, and none is lost either way.
func TestFreshMemoryIsBounded(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MappedReleaseEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, bodies := commitEvents(t, s, 4000) // 2 KiB each: twice the bound
	s.claimMu.Lock()
	held, n := s.freshBytes, len(s.fresh)
	s.claimMu.Unlock()
	if held > maxFreshBytes || n == 0 || n == len(bodies) {
		t.Fatalf("%d of %d deliveries (%d bytes) kept in memory, want some, within %d bytes", n, len(bodies), held, maxFreshBytes)
	}
	jobs := claimAll(t, s)
	if len(jobs) != len(bodies) {
		t.Fatalf("claimed %d jobs, want %d", len(jobs), len(bodies))
	}
	for _, j := range jobs {
		if !bytes.Equal(j.Event.Body, bodies[j.Delivery.ID]) {
			t.Fatalf("delivery %s claimed with another body", j.Delivery.ID)
		}
	}
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	if s.freshBytes != 0 || len(s.fresh) != 0 {
		t.Fatalf("after every delivery was claimed, %d remain kept in memory (%d bytes)", len(s.fresh), s.freshBytes)
	}
}
