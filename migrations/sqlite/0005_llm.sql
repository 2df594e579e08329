-- The LLM agent's bookkeeping. Timestamps are epoch milliseconds.

-- Every provider call: tokens by kind and what it cost (priced when made, from the
-- configured table), per alert and model. The daily budget is summed from here.
CREATE TABLE llm_usage (
    id                 TEXT PRIMARY KEY,
    alert_event_id     TEXT NOT NULL DEFAULT '',
    alert_name         TEXT NOT NULL DEFAULT '',
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    purpose            TEXT NOT NULL,
    status             TEXT NOT NULL,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL
);
CREATE INDEX llm_usage_created_idx ON llm_usage (created_at);

-- After an escalation: the model's likely root cause and suggested commands, for a
-- person to review. Never executed automatically.
CREATE TABLE learning_feedback (
    id                 TEXT PRIMARY KEY,
    alert_event_id     TEXT NOT NULL,
    alert_name         TEXT NOT NULL,
    root_cause         TEXT NOT NULL,
    suggested_commands TEXT NOT NULL,
    reviewed           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         BIGINT NOT NULL
);
CREATE INDEX learning_feedback_created_idx ON learning_feedback (created_at);
