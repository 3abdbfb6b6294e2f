-- Per-webhook delivery options (headers, filter, retry schedule, timeout,
-- max in flight, rate limit) as one document, the way the API shows them:
-- they are read with the webhook and never queried apart from it.
ALTER TABLE webhooks ADD COLUMN options jsonb NOT NULL DEFAULT '{}';

-- The W3C trace context of the ingest request, continued by every attempt.
ALTER TABLE events
    ADD COLUMN trace_parent text NOT NULL DEFAULT '',
    ADD COLUMN trace_state  text NOT NULL DEFAULT '';

-- The next free attempt slot of each rate-limited webhook, shared by every
-- sidecar so the limit holds for the fleet (database clock).
CREATE TABLE webhook_rate_slots (
    webhook_id text COLLATE "C" PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
    next_slot  timestamptz NOT NULL
);
