-- The event log: an app's events newest first, all of them or of one
-- type, and the deliveries of one event.
CREATE INDEX events_app ON events (app_id, id);
CREATE INDEX events_app_type ON events (app_id, type, id);
CREATE INDEX deliveries_event ON deliveries (event_id, webhook_id);

-- Failing periods reported to the operational webhook: the row is the
-- fleet-wide record that one sidecar reported it, so no other does.
CREATE TABLE webhook_reports (
    webhook_id    text COLLATE "C" PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
    failing_since timestamptz NOT NULL
);
