-- Every alert Alertmanager delivers, once per (fingerprint, status, starts_at).
-- Timestamps are epoch milliseconds; labels and annotations are JSON text.
CREATE TABLE alert_events (
    id               TEXT PRIMARY KEY,
    fingerprint      TEXT NOT NULL,
    status           TEXT NOT NULL,
    starts_at        BIGINT NOT NULL,
    ends_at          BIGINT,
    alertname        TEXT NOT NULL,
    instance         TEXT,
    labels           TEXT NOT NULL,
    annotations      TEXT NOT NULL,
    generator_url    TEXT NOT NULL DEFAULT '',
    receiver         TEXT NOT NULL DEFAULT '',
    group_key        TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL,
    reason           TEXT,
    received_at      BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    claimed_by       TEXT,
    claim_expires_at BIGINT,
    CONSTRAINT alert_events_identity UNIQUE (fingerprint, status, starts_at)
);
CREATE INDEX alert_events_state_idx ON alert_events (state, received_at, id);
CREATE INDEX alert_events_received_idx ON alert_events (received_at, id);
CREATE INDEX alert_events_alertname_idx ON alert_events (alertname, received_at);
