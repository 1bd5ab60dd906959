-- Migrations: the node a VM is moving to, whose capacity is held for it until the
-- migration switches over (node_id becomes it) or rolls back.
ALTER TABLE vms ADD COLUMN migrating_to TEXT;

-- Each task's kind as a column, so that lists filter by it. Tasks written before it have
-- their kind only in the JSON record (compact, as vmm writes it), read once here.
ALTER TABLE tasks ADD COLUMN kind TEXT;
UPDATE tasks SET kind = CASE
    WHEN task LIKE '%"kind":"create_vm"%' THEN 'create_vm'
    WHEN task LIKE '%"kind":"delete_vm"%' THEN 'delete_vm'
    WHEN task LIKE '%"kind":"start_vm"%' THEN 'start_vm'
    WHEN task LIKE '%"kind":"stop_vm"%' THEN 'stop_vm'
    WHEN task LIKE '%"kind":"shutdown_vm"%' THEN 'shutdown_vm'
    WHEN task LIKE '%"kind":"reboot_vm"%' THEN 'reboot_vm'
    WHEN task LIKE '%"kind":"suspend_vm"%' THEN 'suspend_vm'
    WHEN task LIKE '%"kind":"resume_vm"%' THEN 'resume_vm'
    WHEN task LIKE '%"kind":"update_vm"%' THEN 'update_vm'
    WHEN task LIKE '%"kind":"reinstall_vm"%' THEN 'reinstall_vm'
    WHEN task LIKE '%"kind":"clone_vm"%' THEN 'clone_vm'
    WHEN task LIKE '%"kind":"add_address"%' THEN 'add_address'
    WHEN task LIKE '%"kind":"remove_address"%' THEN 'remove_address'
    WHEN task LIKE '%"kind":"import_image"%' THEN 'import_image'
    WHEN task LIKE '%"kind":"reconcile"%' THEN 'reconcile'
    WHEN task LIKE '%"kind":"backup_vm"%' THEN 'backup_vm'
    WHEN task LIKE '%"kind":"restore_backup"%' THEN 'restore_backup'
    WHEN task LIKE '%"kind":"verify_backup"%' THEN 'verify_backup'
    WHEN task LIKE '%"kind":"delete_backup"%' THEN 'delete_backup'
    WHEN task LIKE '%"kind":"snapshot_vm"%' THEN 'snapshot_vm'
    WHEN task LIKE '%"kind":"revert_snapshot"%' THEN 'revert_snapshot'
    WHEN task LIKE '%"kind":"delete_snapshot"%' THEN 'delete_snapshot'
END;
CREATE INDEX tasks_by_kind ON tasks (kind, id);

-- HA: a node's fence method (JSON; none: an operator confirms), whether a VM is restarted
-- elsewhere when its node dies, and each node's lease and HA state (JSON: ha::NodeLease).
ALTER TABLE nodes ADD COLUMN fence TEXT;
ALTER TABLE vms ADD COLUMN ha INTEGER NOT NULL DEFAULT 0;
CREATE TABLE node_leases (
    node_id TEXT PRIMARY KEY,
    expires_us BIGINT NOT NULL,
    record TEXT NOT NULL
);
