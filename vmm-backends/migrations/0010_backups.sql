-- Backup targets: the settings as JSON, the S3 secret apart (never in the JSON).
CREATE TABLE backup_targets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    secret TEXT,
    record TEXT NOT NULL -- the BackupTargetConfig as JSON
);

-- Backups outlive their VMs (no foreign key to vms); a target that holds any stays.
CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    vm_id TEXT NOT NULL,
    owner_id TEXT,
    target_id TEXT NOT NULL REFERENCES backup_targets (id),
    state TEXT NOT NULL,
    record TEXT NOT NULL -- the Backup as JSON
);
CREATE INDEX backups_by_vm ON backups (vm_id, id);
CREATE INDEX backups_by_owner ON backups (owner_id, id);
CREATE INDEX backups_by_target ON backups (target_id, id);

-- Backup schedules: the settings as JSON, with the columns the due list reads.
CREATE TABLE backup_schedules (
    id TEXT PRIMARY KEY,
    owner_id TEXT,
    target_id TEXT NOT NULL REFERENCES backup_targets (id),
    enabled BIGINT NOT NULL,
    next_run_at TEXT NOT NULL,
    record TEXT NOT NULL -- the BackupSchedule as JSON
);
CREATE INDEX schedules_due ON backup_schedules (enabled, next_run_at);
CREATE INDEX schedules_by_owner ON backup_schedules (owner_id, id);

-- Each VM's snapshots, mirrored from its node; they go with the VM.
CREATE TABLE vm_snapshots (
    vm_id TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record TEXT NOT NULL, -- the Snapshot as JSON
    PRIMARY KEY (vm_id, name)
);
