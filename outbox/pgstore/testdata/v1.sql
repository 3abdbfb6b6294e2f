-- A database written by the first schema (0001_init.sql) and the release
-- that shipped it: one webhook, three deliveries (succeeded, failed with
-- two attempts, pending) and their events. Made with pg_dump, COPY
-- turned into INSERT, schema-qualified names removed.

CREATE TABLE deliveries (
    id text NOT NULL COLLATE pg_catalog."C",
    app_id text NOT NULL COLLATE pg_catalog."C",
    webhook_id text NOT NULL COLLATE pg_catalog."C",
    event_id text NOT NULL COLLATE pg_catalog."C",
    event text NOT NULL,
    status text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    next_attempt_at timestamp with time zone,
    round integer DEFAULT 0 NOT NULL,
    resend boolean DEFAULT false NOT NULL,
    pending_since timestamp with time zone,
    attempts jsonb DEFAULT '[]'::jsonb NOT NULL,
    lease_owner text,
    lease_until timestamp with time zone,
    expires_at timestamp with time zone
);
CREATE TABLE events (
    id text NOT NULL COLLATE pg_catalog."C",
    app_id text NOT NULL COLLATE pg_catalog."C",
    type text NOT NULL,
    received_at timestamp with time zone NOT NULL,
    body bytea NOT NULL,
    expires_at timestamp with time zone NOT NULL
);
CREATE TABLE idempotency (
    app_id text NOT NULL COLLATE pg_catalog."C",
    key text NOT NULL COLLATE pg_catalog."C",
    event_id text NOT NULL,
    deliveries integer NOT NULL,
    expires_at timestamp with time zone NOT NULL
);
CREATE TABLE schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE webhooks (
    id text NOT NULL COLLATE pg_catalog."C",
    app_id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    enabled boolean NOT NULL,
    secret text DEFAULT ''::text NOT NULL,
    previous_secret text DEFAULT ''::text NOT NULL,
    previous_secret_until timestamp with time zone,
    failing_since timestamp with time zone,
    disabled_reason text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);
INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at, next_attempt_at, round, resend, pending_since, attempts, lease_owner, lease_until, expires_at) VALUES ('019ad4a0-0000-7000-8000-000000000200', 'app1', '019ad4a0-0000-7000-8000-000000000001', '019ad4a0-0000-7000-8000-000000000100', 'job_finished', 'succeeded', '2026-11-30 12:00:00+00', NULL, '1', 'f', NULL, '[{"sentAt": "2026-11-30T12:00:01Z", "durationMs": 12, "responseBody": "ok", "responseStatusCode": 200}]', NULL, NULL, '2126-11-07 09:01:33.27747+00');
INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at, next_attempt_at, round, resend, pending_since, attempts, lease_owner, lease_until, expires_at) VALUES ('019ad4a0-0000-7000-8000-000000000201', 'app1', '019ad4a0-0000-7000-8000-000000000001', '019ad4a0-0000-7000-8000-000000000101', 'job_finished', 'failed', '2026-11-30 12:01:00+00', NULL, '2', 'f', NULL, '[{"sentAt": "2026-11-30T12:00:02Z", "durationMs": 7, "responseBody": "oops", "responseStatusCode": 500}, {"error": "connection refused", "sentAt": "2026-11-30T12:00:03Z", "durationMs": 1}]', NULL, NULL, '2126-11-07 09:01:33.278383+00');
INSERT INTO deliveries (id, app_id, webhook_id, event_id, event, status, created_at, next_attempt_at, round, resend, pending_since, attempts, lease_owner, lease_until, expires_at) VALUES ('019ad4a0-0000-7000-8000-000000000202', 'app1', '019ad4a0-0000-7000-8000-000000000001', '019ad4a0-0000-7000-8000-000000000102', 'job_finished', 'pending', '2026-11-30 12:02:00+00', '2027-01-12 01:01:33.278838+00', '1', 'f', '2026-11-30 12:02:00+00', '[{"sentAt": "2026-11-30T12:00:04Z", "durationMs": 3, "responseStatusCode": 503}]', NULL, NULL, NULL);
INSERT INTO events (id, app_id, type, received_at, body, expires_at) VALUES ('019ad4a0-0000-7000-8000-000000000100', 'app1', 'job_finished', '2026-11-30 12:00:00+00', '\x7b226576656e74223a226a6f625f66696e6973686564222c2264617461223a7b226170704964223a2261707031222c226e223a307d7d', '2126-11-07 09:01:33.278009+00');
INSERT INTO events (id, app_id, type, received_at, body, expires_at) VALUES ('019ad4a0-0000-7000-8000-000000000101', 'app1', 'job_finished', '2026-11-30 12:01:00+00', '\x7b226576656e74223a226a6f625f66696e6973686564222c2264617461223a7b226170704964223a2261707031222c226e223a317d7d', '2126-11-07 09:01:33.278631+00');
INSERT INTO events (id, app_id, type, received_at, body, expires_at) VALUES ('019ad4a0-0000-7000-8000-000000000102', 'app1', 'job_finished', '2026-11-30 12:02:00+00', '\x7b226576656e74223a226a6f625f66696e6973686564222c2264617461223a7b226170704964223a2261707031222c226e223a327d7d', '2126-12-19 01:01:33.278838+00');
INSERT INTO idempotency (app_id, key, event_id, deliveries, expires_at) VALUES ('app1', 'fixture-key', '019ad4a0-0000-7000-8000-000000000100', '1', '2026-12-02 09:01:33.272375+00');
INSERT INTO schema_migrations (version, name, applied_at) VALUES ('1', '0001_init.sql', '2026-12-01 09:01:33.252951+00');
INSERT INTO webhooks (id, app_id, name, url, events, enabled, secret, previous_secret, previous_secret_until, failing_since, disabled_reason, created_at, updated_at) VALUES ('019ad4a0-0000-7000-8000-000000000001', 'app1', 'ci', 'https://example.com/hook', '{job_created,job_finished}', 't', 'fixture-secret', '', NULL, NULL, '', '2026-11-30 12:00:00+00', '2026-11-30 12:00:00+00');
ALTER TABLE ONLY deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id);
ALTER TABLE ONLY events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY idempotency
    ADD CONSTRAINT idempotency_pkey PRIMARY KEY (app_id, key);
ALTER TABLE ONLY schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY webhooks
    ADD CONSTRAINT webhooks_pkey PRIMARY KEY (id);
CREATE INDEX deliveries_due ON deliveries USING btree (next_attempt_at) WHERE (status = 'pending'::text);
CREATE INDEX deliveries_expiry ON deliveries USING btree (expires_at) WHERE (expires_at IS NOT NULL);
CREATE INDEX deliveries_history ON deliveries USING btree (webhook_id, id DESC);
CREATE INDEX deliveries_leases ON deliveries USING btree (lease_until) WHERE (lease_until IS NOT NULL);
CREATE INDEX deliveries_pending_since ON deliveries USING btree (pending_since) WHERE (status = 'pending'::text);
CREATE INDEX events_expiry ON events USING btree (expires_at);
CREATE INDEX idempotency_expiry ON idempotency USING btree (expires_at);
CREATE INDEX webhooks_app ON webhooks USING btree (app_id, id);
ALTER TABLE ONLY deliveries
    ADD CONSTRAINT deliveries_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES webhooks(id) ON DELETE CASCADE;
