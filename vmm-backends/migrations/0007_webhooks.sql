-- Webhook subscriptions and notification channels (class 'webhook' or 'channel'): the
-- settings and delivery state as JSON, with the columns that claims and due lists read; the
-- secret apart (never in the JSON).
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    class TEXT NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret TEXT,
    enabled BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    claim_owner TEXT,
    claim_until TEXT,
    record TEXT NOT NULL -- the Webhook as JSON
);
CREATE INDEX webhooks_due ON webhooks (enabled, next_attempt_at);
CREATE INDEX webhooks_by_owner ON webhooks (owner_id, class, id);
CREATE INDEX webhooks_by_class ON webhooks (class, id);

-- Each attempt to deliver an event.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    record TEXT NOT NULL -- the Delivery as JSON
);
CREATE INDEX deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
