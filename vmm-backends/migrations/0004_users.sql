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
