-- The fleet-mode schema: what BadgerStore keeps under its key prefixes,
-- as tables several sidecars share. Ids are UUIDv7 strings compared in
-- byte order (COLLATE "C"), so ORDER BY id is creation order whatever the
-- database's locale, exactly like Badger's key order.
-- Expiring rows carry expires_at and are deleted by a sidecar's cleanup
-- loop; reads ignore rows already past it, as Badger ignores expired keys.

CREATE TABLE webhooks (
    id                    text COLLATE "C" PRIMARY KEY,
    app_id                text COLLATE "C" NOT NULL,
    name                  text NOT NULL,
    url                   text NOT NULL,
    events                text[] NOT NULL,
    enabled               boolean NOT NULL,
    secret                text NOT NULL DEFAULT '',
    previous_secret       text NOT NULL DEFAULT '',
    previous_secret_until timestamptz,
    failing_since         timestamptz,
    disabled_reason       text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX webhooks_app ON webhooks (app_id, id);

CREATE TABLE events (
    id          text COLLATE "C" PRIMARY KEY,
    app_id      text COLLATE "C" NOT NULL,
    type        text NOT NULL,
    received_at timestamptz NOT NULL,
    -- The body exactly as the service posted it (not jsonb, which would
    -- reorder keys and drop whitespace).
    body        bytea NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX events_expiry ON events (expires_at);

CREATE TABLE deliveries (
    id              text COLLATE "C" PRIMARY KEY,
    app_id          text COLLATE "C" NOT NULL,
    -- Deleting a webhook deletes its history, in flight or not; an attempt
    -- in flight then finds nothing to save and is dropped.
    webhook_id      text COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        text COLLATE "C" NOT NULL,
    event           text NOT NULL,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz,
    round           integer NOT NULL DEFAULT 0,
    resend          boolean NOT NULL DEFAULT false,
    -- When the delivery became pending (creation or resend); NULL once
    -- finished. Stats reports the oldest.
    pending_since   timestamptz,
    attempts        jsonb NOT NULL DEFAULT '[]',
    -- The sidecar attempting the delivery and until when its claim holds
    -- (database clock); NULL when no one is.
    lease_owner     text,
    lease_until     timestamptz,
    -- Finished deliveries expire after the history retention.
    expires_at      timestamptz
);
-- Claiming: the due pending deliveries, oldest due first.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
-- The oldest pending delivery, for Stats.
CREATE INDEX deliveries_pending_since ON deliveries (pending_since) WHERE status = 'pending';
-- Leases held, for the next time one runs out.
CREATE INDEX deliveries_leases ON deliveries (lease_until) WHERE lease_until IS NOT NULL;
-- A webhook's history, newest first.
CREATE INDEX deliveries_history ON deliveries (webhook_id, id DESC);
CREATE INDEX deliveries_expiry ON deliveries (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE idempotency (
    app_id     text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    event_id   text NOT NULL,
    deliveries integer NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (app_id, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
