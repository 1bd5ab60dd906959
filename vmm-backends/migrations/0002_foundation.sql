-- Each node keeps what its VMs have taken, changed in the same transaction as every VM
-- create, resize and delete, so that placing a VM reads one row per node whatever the
-- number of VMs.
ALTER TABLE nodes ADD COLUMN used_vms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN used_vcpus BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN used_memory_mib BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN used_storage_gib BIGINT NOT NULL DEFAULT 0;
UPDATE nodes SET
    used_vms = (SELECT COUNT(*) FROM vms WHERE vms.node_id = nodes.id),
    used_vcpus = (SELECT COALESCE(SUM(vcpus), 0) FROM vms WHERE vms.node_id = nodes.id),
    used_memory_mib = (SELECT COALESCE(SUM(memory_mib), 0) FROM vms WHERE vms.node_id = nodes.id),
    used_storage_gib = (SELECT COALESCE(SUM(disk_gib), 0) FROM vms WHERE vms.node_id = nodes.id);

-- One host, one node: the same URI twice would count its capacity twice.
CREATE UNIQUE INDEX nodes_by_uri ON nodes (uri);

-- Leases are fenced (the fence rises at every claim) and expire by the database's clock,
-- in microseconds since the Unix epoch.
ALTER TABLE tasks ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN lease_until_us BIGINT;
ALTER TABLE tasks DROP COLUMN lease_expires;
