-- Rate limits and circuit breakers live in the database, so every replica on one
-- PostgreSQL counts against the same limit and sees the same open breakers (and a
-- restart does not reset them).
CREATE TABLE rate_events (
    action TEXT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX rate_events_action_idx ON rate_events (action, at);
CREATE TABLE circuit_breakers (
    host      TEXT NOT NULL,
    action    TEXT NOT NULL,
    failures  BIGINT NOT NULL DEFAULT 0,
    opened_at BIGINT,
    PRIMARY KEY (host, action)
);
-- Host availability, decided once for the cluster (a transition is announced by the
-- replica that makes it).
CREATE TABLE host_health (
    host                 TEXT PRIMARY KEY,
    status               TEXT NOT NULL,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_change          BIGINT NOT NULL,
    last_error           TEXT
);
