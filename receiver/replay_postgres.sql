-- The replay window of webhook_verify, shared by the receivers whose
-- replay_storage names this database. Applied by each receiver on first
-- use, under an advisory lock; every statement may run again.
CREATE TABLE IF NOT EXISTS webhook_verify_replay (
    -- SHA-256 of the normalised host, path and delivery id.
    key        bytea PRIMARY KEY,
    -- false while a receiver forwards the delivery, true once the backend
    -- answered 2xx.
    done       boolean NOT NULL,
    -- Random per forward, so only the receiver that claimed a row
    -- finishes it, even after another took over its lease.
    claim      bytea NOT NULL,
    -- The end of the lease while in flight, of the window once done.
    -- Past it, the row is as good as absent.
    expires_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS webhook_verify_replay_expires_at
    ON webhook_verify_replay (expires_at);
