-- The event log. `id` is the row's key, made by its writer (a UUIDv7); `pos` is the event's
-- public id, which only grows: SQLite numbers an event as it is written (one writer at a
-- time), PostgreSQL as it becomes visible (see sql/events.rs), so that a reader that has
-- seen N is never shown a smaller id later.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    pos BIGINT UNIQUE,
    at TEXT NOT NULL,
    type TEXT NOT NULL,
    area TEXT NOT NULL,
    owner_id TEXT,
    record TEXT NOT NULL -- the Event as JSON
);
CREATE INDEX events_unnumbered ON events (id) WHERE pos IS NULL;
CREATE INDEX events_by_owner ON events (owner_id, pos);
CREATE INDEX events_by_at ON events (at);

-- The last `pos` given: pruning never lowers it.
CREATE TABLE event_counter (last BIGINT NOT NULL);
INSERT INTO event_counter (last) VALUES (0);
