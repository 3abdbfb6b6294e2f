-- Every change to webhooks, by any sidecar or by hand, is announced on the
-- schema's channel (named as pgstore's channelSQL names it), so every
-- sidecar drops its cached webhook lists at once instead of after a TTL.
-- Once per statement: a sidecar reloads an app's list on its next ingest,
-- whatever changed.
CREATE FUNCTION webhooks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('caddy_webhooks_' || left(md5(TG_TABLE_SCHEMA), 16), 'webhooks');
    RETURN NULL;
END
$$;
CREATE TRIGGER webhooks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_changed();

-- A lease (lease_owner, lease_until) is written twice per attempt; with no
-- index on either column it is a HOT update that adds no index entry, and
-- the free space fillfactor leaves on each page lets it stay on its page.
-- Idle sidecars find the next lease to run out among the few due
-- deliveries instead.
DROP INDEX deliveries_leases;
-- A queue table turns over fast: vacuum and analyze it after 2% of its
-- rows changed rather than 20%, so dead index entries of delivered rows do
-- not pile up at the head of deliveries_due, which every claim walks.
ALTER TABLE deliveries SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02);
-- Claims of the webhooks that have room when the due order is a backlog of
-- one without: a probe per webhook instead of a walk past that backlog.
CREATE INDEX deliveries_due_by_webhook ON deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
