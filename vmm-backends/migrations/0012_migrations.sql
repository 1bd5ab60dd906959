-- Migrations: the node a VM is moving to, whose capacity is held for it until the
-- migration switches over (node_id becomes it) or rolls back.
ALTER TABLE vms ADD COLUMN migrating_to TEXT;
