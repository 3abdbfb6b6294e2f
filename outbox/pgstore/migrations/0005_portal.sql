-- Tenant portal tokens: the key that signs them, one for the whole fleet
-- (a single row), and per app the generation tokens must carry, which a
-- revocation increments. Apps never revoked have no row (generation 0).

CREATE TABLE portal_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea NOT NULL
);

CREATE TABLE portal_generations (
    app_id     text COLLATE "C" PRIMARY KEY,
    generation bigint NOT NULL
);
