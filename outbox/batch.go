package outbox

import "sync"

// GroupCommit takes items from in and hands them to commit in batches:
// each batch is what arrived while earlier ones were committing, at most
// maxBatch items, with at most inFlight batches committing at once.
// Waiting for a free slot before draining lets a batch grow while the
// ones ahead of it finish, so one commit (one fsync, one round trip)
// covers many items. It returns once stop is closed and the commits
// running have finished; an item taken while it waited for a slot is
// given to abandon. Ingest and PostgreSQL's attempt saves both batch
// this way.
func GroupCommit[T any](stop <-chan struct{}, in <-chan T, maxBatch, inFlight int, commit func([]T), abandon func(T)) {
	var running sync.WaitGroup
	defer running.Wait()
	slots := make(chan struct{}, inFlight)
	for {
		var first T
		select {
		case <-stop:
			return
		case first = <-in:
		}
		select {
		case slots <- struct{}{}:
		case <-stop:
			abandon(first)
			return
		}
		batch := []T{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case item := <-in:
				batch = append(batch, item)
			default:
				break fill
			}
		}
		running.Add(1)
		go func() {
			defer running.Done()
			defer func() { <-slots }()
			commit(batch)
		}()
	}
}
