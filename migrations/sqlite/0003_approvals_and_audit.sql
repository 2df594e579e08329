-- Commands held for a person's decision. `digest` (SHA-256 of host and command) lets
-- the approver be sure that what runs is exactly what was asked for.
CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    command        TEXT NOT NULL,
    source         TEXT NOT NULL,
    verdict        TEXT NOT NULL,
    rule           TEXT NOT NULL,
    reason         TEXT NOT NULL,
    digest         TEXT NOT NULL,
    status         TEXT NOT NULL,
    requested_by   TEXT NOT NULL DEFAULT '',
    alert_event_id TEXT,
    requested_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    decided_by     TEXT,
    decided_at     BIGINT,
    exit_code      BIGINT,
    output         TEXT
);
CREATE INDEX approvals_status_idx ON approvals (status, requested_at);

-- Every command judged or run, and every decision about one.
CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    at            BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT NOT NULL DEFAULT '',
    verdict       TEXT NOT NULL DEFAULT '',
    rule          TEXT NOT NULL DEFAULT '',
    host          TEXT NOT NULL DEFAULT '',
    command       TEXT NOT NULL DEFAULT '',
    exit_code     BIGINT,
    duration_ms   BIGINT,
    output_digest TEXT,
    actor         TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
