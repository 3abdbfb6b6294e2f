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
