CREATE TABLE items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL CONSTRAINT items_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    description text                 CONSTRAINT items_description_length CHECK (char_length(description) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1
);

-- One row per Idempotency-Key, written in the same transaction as the item it created.
-- The item_* columns keep the first response so that a retry replays it byte for byte.
CREATE TABLE idempotency_keys (
    key              text        PRIMARY KEY,
    request_hash     bytea       NOT NULL,
    item_id          bigint,
    item_name        text,
    item_description text,
    item_created_at  timestamptz,
    item_updated_at  timestamptz,
    item_version     bigint,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
