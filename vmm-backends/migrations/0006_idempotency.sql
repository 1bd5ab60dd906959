-- Idempotency keys: the request each was first used with and, once answered, the answer.
CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL, -- the IdempotencyRecord as JSON
    expires_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
