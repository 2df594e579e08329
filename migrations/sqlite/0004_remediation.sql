-- The remediation pipeline's memory (original Jarvis table names where it had them).
-- Timestamps are epoch milliseconds; lists are JSON text.

-- Every remediation attempt, kept (the original deleted history when an alert resolved).
-- `symptom` is the alert name plus its identifying labels; `commands_sig` the
-- normalised commands: together they are what failure memory and learning key on.
CREATE TABLE remediation_log (
    id                   TEXT PRIMARY KEY,
    alert_event_id       TEXT NOT NULL,
    fingerprint          TEXT NOT NULL,
    alert_name           TEXT NOT NULL,
    alert_instance       TEXT NOT NULL DEFAULT '',
    host                 TEXT NOT NULL DEFAULT '',
    source               TEXT NOT NULL,
    pattern_id           TEXT,
    symptom              TEXT NOT NULL,
    commands_sig         TEXT NOT NULL,
    commands_executed    TEXT NOT NULL,
    output               TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL,
    counts_as_attempt    BOOLEAN NOT NULL,
    success              BOOLEAN NOT NULL,
    verified             BOOLEAN NOT NULL,
    verification_message TEXT NOT NULL DEFAULT '',
    error_message        TEXT NOT NULL DEFAULT '',
    started_at           BIGINT NOT NULL,
    finished_at          BIGINT,
    duration_seconds     DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX remediation_log_fingerprint_idx ON remediation_log (fingerprint, started_at);
CREATE INDEX remediation_log_started_idx ON remediation_log (started_at);
CREATE INDEX remediation_log_event_idx ON remediation_log (alert_event_id);

-- Seeded, imported and learned patterns with their track record.
CREATE TABLE remediation_patterns (
    id                 TEXT PRIMARY KEY,
    alert_name         TEXT NOT NULL,
    matchers           TEXT NOT NULL,
    host               TEXT NOT NULL DEFAULT '',
    commands           TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    origin             TEXT NOT NULL,
    prior              DOUBLE PRECISION NOT NULL,
    success_count      BIGINT NOT NULL DEFAULT 0,
    verified_successes BIGINT NOT NULL DEFAULT 0,
    failure_count      BIGINT NOT NULL DEFAULT 0,
    last_used_at       BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX remediation_patterns_alert_idx ON remediation_patterns (alert_name);

-- Fixes that did not work for a symptom, so they are not repeated.
CREATE TABLE remediation_failures (
    id             TEXT PRIMARY KEY,
    symptom        TEXT NOT NULL,
    commands_sig   TEXT NOT NULL,
    alert_name     TEXT NOT NULL,
    commands       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    remediation_id TEXT NOT NULL,
    failed_at      BIGINT NOT NULL
);
CREATE INDEX remediation_failures_symptom_idx ON remediation_failures (symptom, failed_at);

-- Maintenance windows: `host` NULL means all hosts.
CREATE TABLE maintenance_windows (
    id         TEXT PRIMARY KEY,
    host       TEXT,
    reason     TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    ended_at   BIGINT,
    silence_id TEXT
);
CREATE INDEX maintenance_windows_active_idx ON maintenance_windows (ended_at, ends_at);

-- After an escalation, the same alert stays quiet until `until`.
CREATE TABLE escalation_cooldowns (
    fingerprint    TEXT PRIMARY KEY,
    alert_name   TEXT NOT NULL,
    escalated_at BIGINT NOT NULL,
    cooldown_until BIGINT NOT NULL,
    reason       TEXT NOT NULL DEFAULT ''
);

-- What a container or unit looked like before a command changed it.
CREATE TABLE state_snapshots (
    id             TEXT PRIMARY KEY,
    remediation_id TEXT NOT NULL,
    host           TEXT NOT NULL,
    target         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    command        TEXT NOT NULL,
    output         TEXT NOT NULL,
    taken_at       BIGINT NOT NULL
);
CREATE INDEX state_snapshots_remediation_idx ON state_snapshots (remediation_id);

-- Alerts correlated into one incident around a root cause.
CREATE TABLE incidents (
    id               TEXT PRIMARY KEY,
    root_cause_alert TEXT NOT NULL,
    root_fingerprint TEXT NOT NULL,
    related_alerts   TEXT NOT NULL,
    correlation_type TEXT NOT NULL,
    state            TEXT NOT NULL,
    opened_at        BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    closed_at        BIGINT
);
CREATE INDEX incidents_root_idx ON incidents (root_fingerprint, state);
CREATE INDEX incidents_opened_idx ON incidents (opened_at);
