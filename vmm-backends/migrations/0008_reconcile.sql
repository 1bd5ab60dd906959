-- What each VM's domain was last seen doing on its node, and why that differs from its state.
ALTER TABLE vms ADD COLUMN observed_state TEXT;
ALTER TABLE vms ADD COLUMN state_reason TEXT;

-- Loops that run once per cluster (the reconciler, pruning): who holds each, until when.
CREATE TABLE singletons (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_us BIGINT NOT NULL
);
