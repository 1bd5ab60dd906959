-- Single-use console tickets, by the SHA-256 of their token.
CREATE TABLE console_tickets (
    token_hash TEXT PRIMARY KEY,
    expires_us BIGINT NOT NULL,
    record TEXT NOT NULL -- the ConsoleTicket as JSON
);

-- Usage points of VMs and nodes: raw (resolution 0) and averaged into buckets of
-- `resolution` seconds; `t` is Unix seconds.
CREATE TABLE usage_points (
    subject TEXT NOT NULL,
    resolution INTEGER NOT NULL,
    t BIGINT NOT NULL,
    cpu_percent DOUBLE PRECISION NOT NULL,
    memory_used_mib DOUBLE PRECISION NOT NULL,
    disk_read_bps DOUBLE PRECISION NOT NULL,
    disk_write_bps DOUBLE PRECISION NOT NULL,
    net_rx_bps DOUBLE PRECISION NOT NULL,
    net_tx_bps DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (subject, resolution, t)
);
CREATE INDEX usage_points_by_age ON usage_points (resolution, t);
