package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// channelSQL names the NOTIFY channel of the schema the store works in, so
// fleets sharing a database in different schemas do not hear each other.
// The webhooks trigger of migration 0002 names it the same way.
const channelSQL = `SELECT 'caddy_webhooks_' || left(md5(current_schema()), 16)`

// listeningPoll bounds an idle sidecar's wait while notifications work: a
// safety net, not the way work is found.
const listeningPoll = time.Minute

// Notifications receives a value when another sidecar (or this one) has
// queued work, and after the notification connection comes back, when
// news may have been missed.
func (s *Store) Notifications() <-chan struct{} { return s.wake }

func (s *Store) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// listenLoop keeps a connection of its own (a pooled one cannot wait for
// notifications) listening on the store's channel, and reconnects it by
// itself when it is lost. While it is down, the webhook cache is not used
// and idle sidecars poll.
func (s *Store) listenLoop(cfg *pgx.ConnConfig) {
	defer close(s.listenDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	wait := 100 * time.Millisecond
	for {
		err := s.listen(ctx, cfg.Copy(), func() { wait = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		s.opts.Logger.Warn("notification connection lost; polling until it is back", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		// Resuming within seconds of the database's return matters more
		// than sparing it a connection attempt a second.
		wait = min(2*wait, time.Second)
	}
}

// listen connects, listens, and handles notifications until the
// connection fails; connected is called once it listens.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	defer func() {
		s.listening.Store(false)
		s.invalidate()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	// What changed while no one listened is unknown: drop the cache and
	// look for work.
	s.invalidate()
	s.listening.Store(true)
	s.wakeUp()
	connected()
	s.opts.Logger.Debug("listening for fleet notifications", zap.String("channel", s.channel))
	for {
		// A database host that vanishes without closing the connection
		// would leave the wait blocked forever: ping it now and then.
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		switch n.Payload {
		case "webhooks":
			s.invalidate()
		case "work":
			s.wakeUp()
		}
	}
}
