-- The SHA-256 of the body first posted with an idempotency key, so that the
-- key reused with another body is refused instead of answered as a retry.
-- Keys stored before this column are NULL and match any body.
ALTER TABLE idempotency ADD COLUMN body_hash bytea;
