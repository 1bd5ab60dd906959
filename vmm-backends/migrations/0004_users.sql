-- Who may do what: users (with their Argon2id password hashes) and their tokens, kept as a
-- unique lookup prefix and the SHA-256 of the whole token.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT, -- none for LDAP users and the bootstrap admin
    record TEXT NOT NULL -- the User as JSON
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    record TEXT NOT NULL -- the ApiToken as JSON
);
CREATE INDEX tokens_by_user ON tokens (user_id, id);

-- A VM belongs to a user (none for VMs made before VMs had owners); a user who owns VMs
-- cannot be deleted.
ALTER TABLE vms ADD COLUMN owner_id TEXT REFERENCES users (id);
CREATE INDEX vms_by_owner ON vms (owner_id, id);

-- Each user's SSH keys; a fingerprint once per library.
CREATE TABLE ssh_keys (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    record TEXT NOT NULL, -- the SshKey as JSON
    UNIQUE (owner_id, fingerprint)
);
CREATE INDEX ssh_keys_by_owner ON ssh_keys (owner_id, id);

-- The audit log: appended to, never changed; it outlives the users it names.
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    actor_id TEXT,
    target_id TEXT,
    record TEXT NOT NULL -- the AuditEntry as JSON
);
CREATE INDEX audit_by_actor ON audit (actor_id, id);
CREATE INDEX audit_by_target ON audit (target_id, id);

-- A task is its VM's owner's, as of when it was queued: it stays theirs after the VM is gone.
ALTER TABLE tasks ADD COLUMN owner_id TEXT;
CREATE INDEX tasks_by_owner ON tasks (owner_id, id);
