package outbox

import (
	"context"
	"errors"
)

// maxBatch bounds how many ingests share one transaction and one fsync.
const maxBatch = 512

type pendingIngest struct {
	in   *Ingest
	done chan error
}

// commit hands an ingest to the group committer and waits until it is
// durable. Badger does not share an fsync between transactions, so one
// writer batches whatever ingests arrived while the last fsync ran.
func (o *Outbox) commit(ctx context.Context, in *Ingest) error {
	if o.closed.Load() {
		return ErrClosed
	}
	p := &pendingIngest{in: in, done: make(chan error, 1)}
	select {
	case o.ingest <- p:
	case <-o.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-o.stopped:
		// The committer may have answered just before it stopped.
		select {
		case err := <-p.done:
			return err
		default:
			return ErrClosed
		}
	}
}

// maxCommits is how many batches may be between write and fsync at once:
// while one waits for its fsync, the next is written. More slots do not
// help: writes take turns anyway, and a free slot starts a batch of
// whatever one ingest is waiting, so under load four slots committed
// mostly batches of one (median 1, mean 23 events with 128 writers in
// BenchmarkIngestConcurrent) where two commit a median of 7 and a mean
// of 39.
const maxCommits = 2

func (o *Outbox) commitLoop(ctx context.Context) {
	defer close(o.stopped)
	GroupCommit(ctx.Done(), o.ingest, maxBatch, maxCommits, o.commitBatch,
		func(p *pendingIngest) { p.done <- ErrClosed })
}

// commitBatch commits a batch of ingests and answers each.
func (o *Outbox) commitBatch(batch []*pendingIngest) {
	ins := make([]*Ingest, len(batch))
	for i, p := range batch {
		ins[i] = p.in
	}
	// Not cancelled with the loop: a batch is committed whole or
	// reported as failed.
	err := o.store.Commit(context.Background(), ins)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		err = errors.Join(ErrUnavailable, err)
	}
	for _, p := range batch {
		p.done <- err
	}
}
