-- Every change of a host's availability (online/offline), original Jarvis's table name.
CREATE TABLE host_status_log (
    id         TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    status     TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    changed_at BIGINT NOT NULL
);
CREATE INDEX host_status_log_host_idx ON host_status_log (host, changed_at);
