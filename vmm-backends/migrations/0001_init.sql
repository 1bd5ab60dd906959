-- vmm's schema; the same SQL runs on SQLite and PostgreSQL. Ids are canonical UUID text,
-- times RFC 3339 UTC text with microseconds (so text order is time order), addresses in
-- keys are 32-digit hex of their 128-bit value (so text order is address order).

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uri TEXT NOT NULL,
    virt_type TEXT NOT NULL,
    cpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    storage_gib BIGINT NOT NULL,
    cpu_overcommit DOUBLE PRECISION NOT NULL,
    memory_overcommit DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE ip_pools (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    pool TEXT NOT NULL -- the IpPool as JSON
);

-- The free addresses of each pool as disjoint inclusive intervals: the next free address is
-- the first row of an index scan, whatever the pool's size.
CREATE TABLE ip_free (
    pool_id TEXT NOT NULL REFERENCES ip_pools (id) ON DELETE CASCADE,
    start_key TEXT NOT NULL,
    end_key TEXT NOT NULL,
    PRIMARY KEY (pool_id, start_key)
);

-- Uniqueness of an address in a pool is the primary key: the database is the final guard.
CREATE TABLE ip_leases (
    pool_id TEXT NOT NULL REFERENCES ip_pools (id),
    address_key TEXT NOT NULL,
    address TEXT NOT NULL,
    vm_id TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (pool_id, address_key)
);
CREATE INDEX ip_leases_by_vm ON ip_leases (vm_id);

CREATE TABLE vms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    disk_gib BIGINT NOT NULL,
    node_id TEXT NOT NULL REFERENCES nodes (id),
    ip_pool_id TEXT,
    state TEXT NOT NULL,
    addresses TEXT NOT NULL, -- JSON array, kept with the VM's leases
    created_at TEXT NOT NULL
);
CREATE INDEX vms_by_node ON vms (node_id);

-- No foreign key to vms: undoing a create removes the VM while its task still runs.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    vm_id TEXT,
    state TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    task TEXT NOT NULL -- the Task as JSON; the columns above are authoritative
);
-- At most one queued or running task per VM.
CREATE UNIQUE INDEX tasks_one_active_per_vm ON tasks (vm_id) WHERE state IN ('queued', 'running');
CREATE INDEX tasks_active ON tasks (id) WHERE state IN ('queued', 'running');
CREATE INDEX tasks_by_vm ON tasks (vm_id, id);
CREATE INDEX tasks_by_state ON tasks (state, id);
