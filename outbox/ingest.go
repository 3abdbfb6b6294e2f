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

func (o *Outbox) commitLoop(ctx context.Context) {
	defer close(o.stopped)
	batch := make([]*pendingIngest, 0, maxBatch)
	ins := make([]*Ingest, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-o.ingest:
			batch = append(batch[:0], p)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case p := <-o.ingest:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		ins = ins[:0]
		for _, p := range batch {
			ins = append(ins, p.in)
		}
		// The store call is not cancelled by ctx: a batch is either
		// committed whole or reported as failed.
		err := o.store.Commit(context.Background(), ins)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			err = errors.Join(ErrUnavailable, err)
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}
