-- The notification outbox. A notification is written in the same transaction as the
-- alert state change that causes it, with one delivery row per configured sink;
-- each sink's sender marks its rows delivered (or failed after retries), so a crash
-- resends what was not marked, under the same id.
CREATE TABLE notifications (
    id             TEXT PRIMARY KEY,
    created_at     BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    title          TEXT NOT NULL,
    -- The whole message (JSON).
    message        TEXT NOT NULL,
    alert_event_id TEXT
);
CREATE INDEX notifications_created_idx ON notifications (created_at, id);
CREATE TABLE notification_deliveries (
    notification_id TEXT NOT NULL,
    sink            TEXT NOT NULL,
    -- pending | delivered | failed
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    delivered_at    BIGINT,
    PRIMARY KEY (notification_id, sink)
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (sink, state, next_attempt_at);
-- One sender per sink in the cluster (a lease), so pacing holds for all replicas.
CREATE TABLE notification_senders (
    sink       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
