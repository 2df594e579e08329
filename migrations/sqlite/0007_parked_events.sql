-- Parked alert events (awaiting approval, waiting for a dependency, verifying):
-- no worker holds them. `resume_at` (epoch ms) is when they may be claimed again
-- (a decision or a resolved notification sets it to now); `waiting` is what the
-- pipeline needs to resume (JSON). Both are NULL while an event is not parked.
ALTER TABLE alert_events ADD COLUMN resume_at BIGINT;
ALTER TABLE alert_events ADD COLUMN waiting TEXT;
CREATE INDEX alert_events_parked_idx ON alert_events (fingerprint, resume_at);
