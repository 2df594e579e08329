//! Storage for the remediation pipeline: attempts, patterns, failure memory,
//! maintenance windows, escalation cooldowns, snapshots, incidents, and the alert-event
//! state changes a long-running remediation makes while it holds its claim.
//!
//! A separate trait so the intake-facing [`Store`](super::Store) stays readable; every
//! `Store` is also a `RemediationStore`.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::{FromRow, QueryBuilder};

use super::{AlertEventRow, EVENT_COLUMNS, Pool, SqlStore, StoreError};
use crate::domain::alert::AlertState;

/// Where an attempt stands (remediation_log.status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Running,
    AwaitingApproval,
    Verifying,
    Success,
    Failure,
    /// Cut short by a restart.
    Interrupted,
    /// The fix ran but Prometheus never showed the alert.
    Unverifiable,
    /// Only read-only commands ran (not an attempt).
    Diagnostic,
    /// Ended before anything ran (the alert resolved while it waited for approval).
    Superseded,
}

crate::text_enum!(AttemptStatus, "attempt status", {
    Running => "running",
    AwaitingApproval => "awaiting_approval",
    Verifying => "verifying",
    Success => "success",
    Failure => "failure",
    Interrupted => "interrupted",
    Unverifiable => "unverifiable",
    Diagnostic => "diagnostic",
    Superseded => "superseded",
});

/// One remediation attempt (remediation_log).
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct RemediationRow {
    pub id: String,
    pub alert_event_id: String,
    pub fingerprint: String,
    pub alert_name: String,
    pub alert_instance: String,
    pub host: String,
    #[sqlx(try_from = "String")]
    pub source: crate::pipeline::plan::PlanSource,
    pub pattern_id: Option<String>,
    pub symptom: String,
    pub commands_sig: String,
    /// JSON list of the commands run, in order.
    pub commands_executed: String,
    /// Short outputs of what ran.
    pub output: String,
    #[sqlx(try_from = "String")]
    pub status: AttemptStatus,
    /// Diagnostic-only runs (every command was read-only) are not attempts.
    pub counts_as_attempt: bool,
    pub success: bool,
    pub verified: bool,
    pub verification_message: String,
    pub error_message: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub duration_seconds: f64,
}

/// A pattern with its track record (remediation_patterns).
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct PatternRow {
    pub id: String,
    pub alert_name: String,
    /// JSON object: label name → glob.
    pub matchers: String,
    pub host: String,
    /// JSON list of command templates.
    pub commands: String,
    pub description: String,
    /// `seeded`, `imported` or `learned`.
    pub origin: String,
    pub prior: f64,
    pub success_count: i64,
    pub verified_successes: i64,
    pub failure_count: i64,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct FailureRow {
    pub id: String,
    pub symptom: String,
    pub commands_sig: String,
    pub alert_name: String,
    pub commands: String,
    pub reason: String,
    pub remediation_id: String,
    pub failed_at: i64,
}

#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct MaintenanceRow {
    pub id: String,
    /// `None`: every host.
    pub host: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub ended_at: Option<i64>,
    pub silence_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct SnapshotRow {
    pub id: String,
    pub remediation_id: String,
    pub host: String,
    pub target: String,
    /// `container` or `unit`.
    pub kind: String,
    pub command: String,
    pub output: String,
    pub taken_at: i64,
}

#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct IncidentRow {
    pub id: String,
    pub root_cause_alert: String,
    pub root_fingerprint: String,
    /// JSON list of `{alertname, fingerprint, instance}`.
    pub related_alerts: String,
    /// `cascade` or `dependency`.
    pub correlation_type: String,
    /// `open` or `resolved`.
    pub state: String,
    pub opened_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub alerts: i64,
    pub remediations: i64,
    pub successful: i64,
    pub verified: i64,
    pub escalated: i64,
    pub unique_alerts: i64,
    pub pattern_remediations: i64,
    pub llm_remediations: i64,
    pub avg_duration_seconds: f64,
    /// Mean time from the alert starting to its verified fix.
    pub mttr_seconds: f64,
}

/// Filters for the remediation log.
#[derive(Debug, Clone, Default)]
pub struct RemediationFilter {
    pub limit: u32,
    pub alert_name: Option<String>,
    pub alert_event_id: Option<String>,
    pub fingerprint: Option<String>,
}

/// Rows removed by the retention job, per table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Purged {
    pub alert_events: u64,
    pub remediation_log: u64,
    pub audit_log: u64,
    pub host_status_log: u64,
    pub state_snapshots: u64,
    pub incidents: u64,
    pub notifications: u64,
}

#[async_trait]
pub trait RemediationStore: Send + Sync {
    /// Moves a claimed event to a non-final `state` and extends its claim to
    /// `lease_until`. `false` if `owner` no longer holds it.
    async fn set_alert_state(
        &self,
        id: &str,
        owner: &str,
        state: AlertState,
        reason: Option<&str>,
        lease_until: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Extends a claim (a heartbeat while an event is being worked on).
    async fn renew_claim(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError>;
    /// Whether Alertmanager has said this firing has ended.
    async fn resolved_event_exists(
        &self,
        fingerprint: &str,
        starts_at: i64,
    ) -> Result<bool, StoreError>;
    /// The newest firing event of `alertname` received since `since` that has not been
    /// resolved (by webhook or by a verified fix).
    async fn firing_event(
        &self,
        alertname: &str,
        since: i64,
    ) -> Result<Option<AlertEventRow>, StoreError>;

    /// Events being remediated right now by any replica (held, claim not expired):
    /// what dependency waits look at across processes.
    async fn in_remediation(&self, now: i64) -> Result<Vec<AlertEventRow>, StoreError>;

    /// Wakes a parked event now (an approval was decided). `false` if it was not
    /// parked (still being worked on, or finished).
    async fn wake_alert_event(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// Wakes the parked firing events of a fingerprint now (its alert resolved).
    async fn wake_fingerprint(&self, fingerprint: &str, now: i64) -> Result<u64, StoreError>;

    async fn insert_remediation(&self, r: &RemediationRow) -> Result<(), StoreError>;
    async fn get_remediation(&self, id: &str) -> Result<Option<RemediationRow>, StoreError>;
    /// Rewrites the mutable fields of an attempt.
    async fn update_remediation(&self, r: &RemediationRow) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_remediations(
        &self,
        f: &RemediationFilter,
    ) -> Result<Vec<RemediationRow>, StoreError>;
    /// Attempts (diagnostic runs excluded) for this fingerprint started since `since`.
    async fn attempts_since(&self, fingerprint: &str, since: i64) -> Result<i64, StoreError>;
    /// When the last attempt on this fingerprint finished, excluding `except_event`.
    async fn last_finished(
        &self,
        fingerprint: &str,
        except_event: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// Marks attempts of this event still `running` (or waiting) as interrupted: a
    /// restart cut them short. Returns them.
    async fn interrupt_unfinished(
        &self,
        alert_event_id: &str,
        now: i64,
    ) -> Result<Vec<RemediationRow>, StoreError>;

    async fn insert_failure(&self, f: &FailureRow) -> Result<(), StoreError>;
    /// Failures of these commands for this symptom since they last worked.
    async fn failures_since_success(
        &self,
        symptom: &str,
        commands_sig: &str,
    ) -> Result<i64, StoreError>;
    /// Newest first.
    async fn list_failures(&self, symptom: &str, limit: u32)
    -> Result<Vec<FailureRow>, StoreError>;

    /// Inserts a pattern; if one with the same id exists, refreshes its definition and
    /// keeps its track record.
    async fn upsert_pattern(&self, p: &PatternRow) -> Result<(), StoreError>;
    async fn patterns_for(&self, alert_name: &str) -> Result<Vec<PatternRow>, StoreError>;
    async fn list_patterns(&self) -> Result<Vec<PatternRow>, StoreError>;
    async fn get_pattern(&self, id: &str) -> Result<Option<PatternRow>, StoreError>;
    async fn record_pattern_outcome(
        &self,
        id: &str,
        success: bool,
        verified: bool,
        now: i64,
    ) -> Result<(), StoreError>;

    async fn insert_maintenance(&self, m: &MaintenanceRow) -> Result<(), StoreError>;
    async fn set_silence_id(&self, id: &str, silence_id: &str) -> Result<(), StoreError>;
    async fn active_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRow>, StoreError>;
    /// Ends active windows: for `host` (`Some(None)`: the global ones), or all (`None`).
    async fn end_maintenance(
        &self,
        host: Option<Option<&str>>,
        now: i64,
    ) -> Result<Vec<MaintenanceRow>, StoreError>;
    /// Ends windows whose time is up; returns them.
    async fn expire_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRow>, StoreError>;

    /// Until when this fingerprint's escalations are quiet, if they are at `now`.
    async fn escalation_cooldown(
        &self,
        fingerprint: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;

    async fn insert_snapshot(&self, s: &SnapshotRow) -> Result<(), StoreError>;
    async fn list_snapshots(&self, remediation_id: &str) -> Result<Vec<SnapshotRow>, StoreError>;

    async fn open_incident(
        &self,
        root_fingerprint: &str,
    ) -> Result<Option<IncidentRow>, StoreError>;
    async fn insert_incident(&self, i: &IncidentRow) -> Result<(), StoreError>;
    async fn update_incident_related(
        &self,
        id: &str,
        related: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    async fn close_incidents(&self, root_fingerprint: &str, now: i64) -> Result<u64, StoreError>;
    async fn list_incidents(&self, limit: u32) -> Result<Vec<IncidentRow>, StoreError>;

    async fn totals(&self, since: i64) -> Result<Totals, StoreError>;
    /// Deletes history older than `before`: final alert events, logs, snapshots and
    /// closed incidents. Patterns and failure memory are kept (they are what was learned).
    async fn purge(&self, before: i64) -> Result<Purged, StoreError>;
}

#[async_trait]
impl RemediationStore for SqlStore {
    async fn set_alert_state(
        &self,
        id: &str,
        owner: &str,
        state: AlertState,
        reason: Option<&str>,
        lease_until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let n = on_pool!(self, p => {
            sqlx::query(
                "UPDATE alert_events SET state = $1, reason = $2, updated_at = $3, claim_expires_at = $4, \
                 resume_at = NULL, waiting = NULL WHERE id = $5 AND claimed_by = $6",
            )
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(lease_until)
            .bind(id)
            .bind(owner)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    async fn renew_claim(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let n = on_pool!(self, p => {
            sqlx::query("UPDATE alert_events SET claim_expires_at = $1 WHERE id = $2 AND claimed_by = $3")
                .bind(lease_until)
                .bind(id)
                .bind(owner)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    async fn resolved_event_exists(
        &self,
        fingerprint: &str,
        starts_at: i64,
    ) -> Result<bool, StoreError> {
        let n: i64 = on_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM alert_events WHERE fingerprint = $1 AND status = 'resolved' AND starts_at = $2",
            )
            .bind(fingerprint)
            .bind(starts_at)
            .fetch_one(p)
            .await?
        });
        Ok(n > 0)
    }

    async fn firing_event(
        &self,
        alertname: &str,
        since: i64,
    ) -> Result<Option<AlertEventRow>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM alert_events f WHERE alertname = $1 AND status = 'firing' \
             AND received_at >= $2 AND state <> 'resolved' \
             AND NOT EXISTS (SELECT 1 FROM alert_events r WHERE r.fingerprint = f.fingerprint \
                             AND r.status = 'resolved' AND r.starts_at = f.starts_at) \
             ORDER BY received_at DESC LIMIT 1"
        );
        let row = on_pool!(self, p => {
            sqlx::query_as::<_, AlertEventRow>(sqlx::AssertSqlSafe(sql))
                .bind(alertname)
                .bind(since)
                .fetch_optional(p)
                .await?
        });
        Ok(row)
    }

    async fn in_remediation(&self, now: i64) -> Result<Vec<AlertEventRow>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM alert_events WHERE status = 'firing' \
             AND state IN ('remediating', 'verifying', 'awaiting_approval') \
             AND ((claimed_by IS NOT NULL AND claim_expires_at > $1) OR waiting IS NOT NULL) \
             ORDER BY received_at LIMIT 500"
        );
        Ok(on_pool!(self, p => {
            sqlx::query_as::<_, AlertEventRow>(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .fetch_all(p)
                .await?
        }))
    }

    async fn wake_alert_event(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let n = on_pool!(self, p => {
            sqlx::query("UPDATE alert_events SET resume_at = $1 WHERE id = $2 AND resume_at > $1")
                .bind(now)
                .bind(id)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    async fn wake_fingerprint(&self, fingerprint: &str, now: i64) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => {
            sqlx::query(
                "UPDATE alert_events SET resume_at = $1 WHERE fingerprint = $2 \
                 AND status = 'firing' AND resume_at > $1",
            )
            .bind(now)
            .bind(fingerprint)
            .execute(p)
            .await?
            .rows_affected()
        }))
    }

    async fn get_remediation(&self, id: &str) -> Result<Option<RemediationRow>, StoreError> {
        Ok(on_pool!(self, p => {
            sqlx::query_as::<_, RemediationRow>("SELECT * FROM remediation_log WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
        }))
    }

    async fn insert_remediation(&self, r: &RemediationRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_durable_pool!(self, p => {
            sqlx::query(
                "INSERT INTO remediation_log (id, alert_event_id, fingerprint, alert_name, alert_instance, host, source, \
                 pattern_id, symptom, commands_sig, commands_executed, output, status, counts_as_attempt, success, verified, \
                 verification_message, error_message, started_at, finished_at, duration_seconds) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
            )
            .bind(&r.id)
            .bind(&r.alert_event_id)
            .bind(&r.fingerprint)
            .bind(&r.alert_name)
            .bind(&r.alert_instance)
            .bind(&r.host)
            .bind(r.source.as_str())
            .bind(&r.pattern_id)
            .bind(&r.symptom)
            .bind(&r.commands_sig)
            .bind(&r.commands_executed)
            .bind(&r.output)
            .bind(r.status.as_str())
            .bind(r.counts_as_attempt)
            .bind(r.success)
            .bind(r.verified)
            .bind(&r.verification_message)
            .bind(&r.error_message)
            .bind(r.started_at)
            .bind(r.finished_at)
            .bind(r.duration_seconds)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn update_remediation(&self, r: &RemediationRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_durable_pool!(self, p => {
            sqlx::query(
                "UPDATE remediation_log SET host = $1, commands_executed = $2, output = $3, status = $4, \
                 counts_as_attempt = $5, success = $6, verified = $7, verification_message = $8, error_message = $9, \
                 finished_at = $10, duration_seconds = $11 WHERE id = $12",
            )
            .bind(&r.host)
            .bind(&r.commands_executed)
            .bind(&r.output)
            .bind(r.status.as_str())
            .bind(r.counts_as_attempt)
            .bind(r.success)
            .bind(r.verified)
            .bind(&r.verification_message)
            .bind(&r.error_message)
            .bind(r.finished_at)
            .bind(r.duration_seconds)
            .bind(&r.id)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn list_remediations(
        &self,
        f: &RemediationFilter,
    ) -> Result<Vec<RemediationRow>, StoreError> {
        let rows = on_pool!(self, p => {
            let mut qb = QueryBuilder::new("SELECT * FROM remediation_log WHERE 1 = 1");
            if let Some(v) = &f.alert_name {
                qb.push(" AND alert_name = ").push_bind(v.clone());
            }
            if let Some(v) = &f.alert_event_id {
                qb.push(" AND alert_event_id = ").push_bind(v.clone());
            }
            if let Some(v) = &f.fingerprint {
                qb.push(" AND fingerprint = ").push_bind(v.clone());
            }
            qb.push(" ORDER BY started_at DESC, id DESC LIMIT ").push_bind(i64::from(f.limit));
            qb.build_query_as::<RemediationRow>().fetch_all(p).await?
        });
        Ok(rows)
    }

    async fn attempts_since(&self, fingerprint: &str, since: i64) -> Result<i64, StoreError> {
        let n: i64 = on_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM remediation_log WHERE fingerprint = $1 AND started_at >= $2 AND counts_as_attempt",
            )
            .bind(fingerprint)
            .bind(since)
            .fetch_one(p)
            .await?
        });
        Ok(n)
    }

    async fn last_finished(
        &self,
        fingerprint: &str,
        except_event: &str,
    ) -> Result<Option<i64>, StoreError> {
        let at: Option<i64> = on_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT MAX(finished_at) FROM remediation_log WHERE fingerprint = $1 AND alert_event_id <> $2 \
                 AND counts_as_attempt",
            )
            .bind(fingerprint)
            .bind(except_event)
            .fetch_one(p)
            .await?
        });
        Ok(at)
    }

    async fn interrupt_unfinished(
        &self,
        alert_event_id: &str,
        now: i64,
    ) -> Result<Vec<RemediationRow>, StoreError> {
        let _turn = self.write_turn().await;
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, RemediationRow>(
                "UPDATE remediation_log SET status = 'interrupted', finished_at = $1, \
                 error_message = 'interrupted by a restart' \
                 WHERE alert_event_id = $2 AND status IN ('running', 'awaiting_approval', 'verifying') RETURNING *",
            )
            .bind(now)
            .bind(alert_event_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    async fn insert_failure(&self, f: &FailureRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO remediation_failures (id, symptom, commands_sig, alert_name, commands, reason, \
                 remediation_id, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&f.id)
            .bind(&f.symptom)
            .bind(&f.commands_sig)
            .bind(&f.alert_name)
            .bind(&f.commands)
            .bind(&f.reason)
            .bind(&f.remediation_id)
            .bind(f.failed_at)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn failures_since_success(
        &self,
        symptom: &str,
        commands_sig: &str,
    ) -> Result<i64, StoreError> {
        let n: i64 = on_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM remediation_failures WHERE symptom = $1 AND commands_sig = $2 AND failed_at > \
                 COALESCE((SELECT MAX(finished_at) FROM remediation_log WHERE symptom = $1 AND commands_sig = $2 \
                           AND success), 0)",
            )
            .bind(symptom)
            .bind(commands_sig)
            .fetch_one(p)
            .await?
        });
        Ok(n)
    }

    async fn list_failures(
        &self,
        symptom: &str,
        limit: u32,
    ) -> Result<Vec<FailureRow>, StoreError> {
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, FailureRow>(
                "SELECT * FROM remediation_failures WHERE symptom = $1 ORDER BY failed_at DESC LIMIT $2",
            )
            .bind(symptom)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    async fn upsert_pattern(&self, r: &PatternRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO remediation_patterns (id, alert_name, matchers, host, commands, description, origin, prior, \
                 success_count, verified_successes, failure_count, last_used_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, host = excluded.host, \
                 commands = excluded.commands, description = excluded.description, prior = excluded.prior, \
                 updated_at = excluded.updated_at \
                 WHERE remediation_patterns.matchers <> excluded.matchers OR remediation_patterns.host <> excluded.host \
                    OR remediation_patterns.commands <> excluded.commands \
                    OR remediation_patterns.description <> excluded.description \
                    OR remediation_patterns.prior <> excluded.prior",
            )
            .bind(&r.id)
            .bind(&r.alert_name)
            .bind(&r.matchers)
            .bind(&r.host)
            .bind(&r.commands)
            .bind(&r.description)
            .bind(&r.origin)
            .bind(r.prior)
            .bind(r.success_count)
            .bind(r.verified_successes)
            .bind(r.failure_count)
            .bind(r.last_used_at)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn patterns_for(&self, alert_name: &str) -> Result<Vec<PatternRow>, StoreError> {
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, PatternRow>("SELECT * FROM remediation_patterns WHERE alert_name = $1 ORDER BY id")
                .bind(alert_name)
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }

    async fn list_patterns(&self) -> Result<Vec<PatternRow>, StoreError> {
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, PatternRow>("SELECT * FROM remediation_patterns ORDER BY alert_name, id")
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }

    async fn get_pattern(&self, id: &str) -> Result<Option<PatternRow>, StoreError> {
        let row = on_pool!(self, p => {
            sqlx::query_as::<_, PatternRow>("SELECT * FROM remediation_patterns WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
        });
        Ok(row)
    }

    async fn record_pattern_outcome(
        &self,
        id: &str,
        success: bool,
        verified: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let (s, v, f) = (
            i64::from(success),
            i64::from(success && verified),
            i64::from(!success),
        );
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "UPDATE remediation_patterns SET success_count = success_count + $1, \
                 verified_successes = verified_successes + $2, failure_count = failure_count + $3, \
                 last_used_at = $4, updated_at = $4 WHERE id = $5",
            )
            .bind(s)
            .bind(v)
            .bind(f)
            .bind(now)
            .bind(id)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn insert_maintenance(&self, m: &MaintenanceRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_durable_pool!(self, p => {
            sqlx::query(
                "INSERT INTO maintenance_windows (id, host, reason, created_by, starts_at, ends_at, ended_at, silence_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&m.id)
            .bind(&m.host)
            .bind(&m.reason)
            .bind(&m.created_by)
            .bind(m.starts_at)
            .bind(m.ends_at)
            .bind(m.ended_at)
            .bind(&m.silence_id)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn set_silence_id(&self, id: &str, silence_id: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query("UPDATE maintenance_windows SET silence_id = $1 WHERE id = $2")
                .bind(silence_id)
                .bind(id)
                .execute(p)
                .await
                .map(|_| ())?
        });
        Ok(())
    }

    async fn active_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRow>, StoreError> {
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, MaintenanceRow>(
                "SELECT * FROM maintenance_windows WHERE ended_at IS NULL AND starts_at <= $1 AND ends_at > $1 \
                 ORDER BY starts_at",
            )
            .bind(now)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    async fn end_maintenance(
        &self,
        host: Option<Option<&str>>,
        now: i64,
    ) -> Result<Vec<MaintenanceRow>, StoreError> {
        let _turn = self.write_turn().await;
        let rows = on_pool!(self, p => {
            let mut qb = QueryBuilder::new("UPDATE maintenance_windows SET ended_at = ");
            qb.push_bind(now).push(" WHERE ended_at IS NULL");
            match host {
                None => {}
                Some(None) => {
                    qb.push(" AND host IS NULL");
                }
                Some(Some(h)) => {
                    qb.push(" AND host = ").push_bind(h.to_owned());
                }
            }
            qb.push(" RETURNING *");
            qb.build_query_as::<MaintenanceRow>().fetch_all(p).await?
        });
        Ok(rows)
    }

    async fn expire_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRow>, StoreError> {
        let _turn = self.write_turn().await;
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, MaintenanceRow>(
                "UPDATE maintenance_windows SET ended_at = ends_at WHERE ended_at IS NULL AND ends_at <= $1 RETURNING *",
            )
            .bind(now)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    async fn escalation_cooldown(
        &self,
        fingerprint: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let until: Option<i64> = on_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT cooldown_until FROM escalation_cooldowns WHERE fingerprint = $1 AND cooldown_until > $2",
            )
            .bind(fingerprint)
            .bind(now)
            .fetch_optional(p)
            .await?
        });
        Ok(until)
    }

    async fn insert_snapshot(&self, s: &SnapshotRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO state_snapshots (id, remediation_id, host, target, kind, command, output, taken_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&s.id)
            .bind(&s.remediation_id)
            .bind(&s.host)
            .bind(&s.target)
            .bind(&s.kind)
            .bind(&s.command)
            .bind(&s.output)
            .bind(s.taken_at)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn list_snapshots(&self, remediation_id: &str) -> Result<Vec<SnapshotRow>, StoreError> {
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, SnapshotRow>(
                "SELECT * FROM state_snapshots WHERE remediation_id = $1 ORDER BY taken_at, id",
            )
            .bind(remediation_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    async fn open_incident(
        &self,
        root_fingerprint: &str,
    ) -> Result<Option<IncidentRow>, StoreError> {
        let row = on_pool!(self, p => {
            sqlx::query_as::<_, IncidentRow>(
                "SELECT * FROM incidents WHERE root_fingerprint = $1 AND state = 'open' ORDER BY opened_at DESC LIMIT 1",
            )
            .bind(root_fingerprint)
            .fetch_optional(p)
            .await?
        });
        Ok(row)
    }

    async fn insert_incident(&self, i: &IncidentRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO incidents (id, root_cause_alert, root_fingerprint, related_alerts, correlation_type, state, \
                 opened_at, updated_at, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&i.id)
            .bind(&i.root_cause_alert)
            .bind(&i.root_fingerprint)
            .bind(&i.related_alerts)
            .bind(&i.correlation_type)
            .bind(&i.state)
            .bind(i.opened_at)
            .bind(i.updated_at)
            .bind(i.closed_at)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn update_incident_related(
        &self,
        id: &str,
        related: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query("UPDATE incidents SET related_alerts = $1, updated_at = $2 WHERE id = $3")
                .bind(related)
                .bind(now)
                .bind(id)
                .execute(p)
                .await
                .map(|_| ())?
        });
        Ok(())
    }

    async fn close_incidents(&self, root_fingerprint: &str, now: i64) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let n = on_pool!(self, p => {
            sqlx::query(
                "UPDATE incidents SET state = 'resolved', closed_at = $1, updated_at = $1 \
                 WHERE root_fingerprint = $2 AND state = 'open'",
            )
            .bind(now)
            .bind(root_fingerprint)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    async fn list_incidents(&self, limit: u32) -> Result<Vec<IncidentRow>, StoreError> {
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, IncidentRow>("SELECT * FROM incidents ORDER BY opened_at DESC, id DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }

    async fn totals(&self, since: i64) -> Result<Totals, StoreError> {
        let t = on_pool!(self, p => {
            let (alerts, unique_alerts, escalated): (i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(DISTINCT fingerprint), \
                 COALESCE(SUM(CASE WHEN state = 'escalated' THEN 1 ELSE 0 END), 0) \
                 FROM alert_events WHERE status = 'firing' AND received_at >= $1",
            )
            .bind(since)
            .fetch_one(p)
            .await?;
            let (remediations, successful, verified, pattern_remediations, llm_remediations, avg): (i64, i64, i64, i64, i64, Option<f64>) =
                sqlx::query_as(
                    "SELECT COUNT(*), \
                     COALESCE(SUM(CASE WHEN success THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN success AND verified THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN source = 'pattern' THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN source = 'llm' THEN 1 ELSE 0 END), 0), \
                     CAST(AVG(duration_seconds) AS DOUBLE PRECISION) \
                     FROM remediation_log WHERE counts_as_attempt AND started_at >= $1",
                )
                .bind(since)
                .fetch_one(p)
                .await?;
            let mttr: Option<f64> = sqlx::query_scalar(
                "SELECT CAST(AVG(r.finished_at - e.starts_at) AS DOUBLE PRECISION) / 1000.0 \
                 FROM remediation_log r JOIN alert_events e ON e.id = r.alert_event_id \
                 WHERE r.success AND r.verified AND r.started_at >= $1",
            )
            .bind(since)
            .fetch_one(p)
            .await?;
            Totals {
                alerts,
                remediations,
                successful,
                verified,
                escalated,
                unique_alerts,
                pattern_remediations,
                llm_remediations,
                avg_duration_seconds: avg.unwrap_or(0.0),
                mttr_seconds: mttr.unwrap_or(0.0),
            }
        });
        Ok(t)
    }

    async fn purge(&self, before: i64) -> Result<Purged, StoreError> {
        let _turn = self.write_turn().await;
        let sql = |table: &str, column: &str, extra: &str| {
            format!("DELETE FROM {table} WHERE {column} < $1{extra}")
        };
        let final_events = " AND state NOT IN ".to_owned() + &super::non_final_states();
        let mut out = Purged::default();
        on_pool!(self, p => {
            for (n, q) in [
                (&mut out.alert_events, sql("alert_events", "received_at", &final_events)),
                (&mut out.remediation_log, sql("remediation_log", "started_at", " AND finished_at IS NOT NULL")),
                (&mut out.audit_log, sql("audit_log", "at", "")),
                (&mut out.host_status_log, sql("host_status_log", "changed_at", "")),
                (&mut out.state_snapshots, sql("state_snapshots", "taken_at", "")),
                (&mut out.incidents, sql("incidents", "opened_at", " AND state <> 'open'")),
                // Deliveries go with their notification, pending or not (a sink removed
                // from the configuration leaves its deliveries pending for good).
                (&mut 0, "DELETE FROM notification_deliveries WHERE notification_id IN (SELECT id FROM \
                    notifications WHERE created_at < $1)".to_owned()),
                (&mut 0, sql("rate_events", "at", "")),
                (&mut out.notifications, sql("notifications", "created_at",
                    " AND NOT EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = notifications.id)")),
            ] {
                *n = sqlx::query(sqlx::AssertSqlSafe(q)).bind(before).execute(p).await?.rows_affected();
            }
        });
        Ok(out)
    }
}
