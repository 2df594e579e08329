//! Durable storage. One logical schema on two backends: SQLite (embedded default, one
//! file, WAL) and PostgreSQL (several replicas). The rest of Jarvis sees the [`Store`]
//! trait; [`SqlStore`] implements it for both backends with the same SQL text, chosen by
//! the URL prefix at start.
//!
//! Portable SQL only: `$n` placeholders (sqlx binds them on SQLite too), application
//! ids, epoch-millisecond BIGINTs, `ON CONFLICT` and `RETURNING`.

mod migrations;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, QueryBuilder};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::domain::alert::{AlertState, AlertStatus, NewAlertEvent};

pub use migrations::{MIGRATIONS, Migration};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Config(String),
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A stored alert event, as the API and the workers read it.
#[derive(Debug, Clone, PartialEq, FromRow, serde::Serialize)]
pub struct AlertEventRow {
    pub id: String,
    pub fingerprint: String,
    #[sqlx(try_from = "String")]
    pub status: AlertStatus,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub alertname: String,
    pub instance: Option<String>,
    /// JSON object text.
    pub labels: String,
    /// JSON object text.
    pub annotations: String,
    pub generator_url: String,
    pub receiver: String,
    pub group_key: String,
    #[sqlx(try_from = "String")]
    pub state: AlertState,
    pub reason: Option<String>,
    pub received_at: i64,
    pub updated_at: i64,
    pub claimed_by: Option<String>,
    pub claim_expires_at: Option<i64>,
    /// Parked: claimable again from then (epoch ms).
    pub resume_at: Option<i64>,
    /// Parked: what the pipeline needs to resume (JSON, the pipeline's own type).
    #[serde(skip)]
    pub waiting: Option<String>,
}

impl AlertEventRow {
    /// The event's labels. A row whose JSON cannot be read is an error naming the row
    /// (never an empty label set, which would remediate the wrong thing). Decoded here
    /// rather than in the query, so one bad row fails its own handling, not every
    /// claim or listing.
    pub fn label_set(&self) -> Result<crate::domain::alert::LabelSet, String> {
        self.decode("labels", &self.labels)
    }

    pub fn annotation_set(&self) -> Result<crate::domain::alert::LabelSet, String> {
        self.decode("annotations", &self.annotations)
    }

    fn decode(&self, field: &str, json: &str) -> Result<crate::domain::alert::LabelSet, String> {
        serde_json::from_str(json).map_err(|e| {
            format!(
                "alert event {}: its stored {field} cannot be read ({e})",
                self.id
            )
        })
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Re-judged as blocked when someone approved it.
    Blocked,
    /// Replaced (the alert resolved, or a restart cut its attempt short).
    Superseded,
}

crate::text_enum!(ApprovalStatus, "approval status", {
    Pending => "pending",
    Approved => "approved",
    Denied => "denied",
    Expired => "expired",
    Blocked => "blocked",
    Superseded => "superseded",
});

/// A command held for a person's decision.
#[derive(Debug, Clone, PartialEq, FromRow, serde::Serialize)]
pub struct ApprovalRow {
    pub id: String,
    pub host: String,
    pub command: String,
    #[sqlx(try_from = "String")]
    pub source: crate::safety::Source,
    pub verdict: String,
    pub rule: String,
    pub reason: String,
    pub digest: String,
    #[sqlx(try_from = "String")]
    pub status: ApprovalStatus,
    pub requested_by: String,
    pub alert_event_id: Option<String>,
    pub requested_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub output: Option<String>,
    /// How the gate read the command and why it holds it (`check-command --explain`).
    pub explanation: String,
}

/// One audited judgement, execution or decision.
#[derive(Debug, Clone, PartialEq, Default, FromRow, serde::Serialize)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    /// judged, executed, approval_requested, approved, denied, expired, refused
    pub kind: String,
    pub source: String,
    pub verdict: String,
    pub rule: String,
    pub host: String,
    pub command: String,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub output_digest: Option<String>,
    pub actor: String,
    pub detail: String,
}

/// Filters for listing alert events (GET /alerts).
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub limit: u32,
    pub state: Option<AlertState>,
    pub alertname: Option<String>,
}

/// The storage operations Jarvis needs. Async trait objects so the app can hold one
/// `Arc<dyn Store>` whatever the backend.
#[async_trait]
pub trait Store:
    RemediationStore + LlmStore + OutboxStore + LimitsStore + Send + Sync + 'static
{
    fn backend(&self) -> Backend;
    /// Cheap reachability check.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies pending migrations (idempotent; safe with several replicas).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Ready to take writes: migrated and reachable. What start-up and reconnection
    /// both wait for.
    async fn ready(&self) -> Result<(), StoreError> {
        self.migrate().await?;
        self.ping().await
    }
    /// Inserts events in one transaction. For each event, `true` if it was new and
    /// `false` if an event with the same id or (fingerprint, status, starts_at) existed.
    async fn insert_alert_events(&self, events: &[NewAlertEvent]) -> Result<Vec<bool>, StoreError>;
    /// Newest first.
    async fn list_alert_events(
        &self,
        filter: &AlertFilter,
    ) -> Result<Vec<AlertEventRow>, StoreError>;
    /// Claims up to `limit` events not in a final state that nobody holds (or whose
    /// holder's lease ran out), oldest first. Each event has one owner at a time, and
    /// a firing event is not claimed while another event of its fingerprint is held.
    async fn claim_alert_events(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<AlertEventRow>, StoreError>;
    /// Parks a claimed event in a non-final `state`: the claim is released and the
    /// event may be claimed again from `resume_at`, or at once if `approval_id` names
    /// an approval already decided (a decision that raced the park is not missed).
    /// `false` if `owner` no longer holds the claim.
    #[allow(clippy::too_many_arguments)]
    async fn park_alert_event(
        &self,
        id: &str,
        owner: &str,
        state: AlertState,
        reason: Option<&str>,
        park: &crate::pipeline::Park,
        notes: &[OutboxItem],
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Moves a claimed event to `state` and releases the claim, writing `notes` to the
    /// notification outbox in the same transaction. `false` (and nothing written) if
    /// `owner` no longer held it (the lease ran out and another worker took it over).
    #[allow(clippy::too_many_arguments)]
    async fn finish_alert_event(
        &self,
        id: &str,
        owner: &str,
        state: AlertState,
        reason: Option<&str>,
        notes: &[OutboxItem],
        cooldown: Option<&EscalationCooldown>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Appends a host availability change to host_status_log.
    async fn insert_host_status(
        &self,
        host: &str,
        status: &str,
        reason: &str,
        at: i64,
    ) -> Result<(), StoreError>;
    async fn insert_approval(&self, a: &ApprovalRow) -> Result<(), StoreError>;
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRow>, StoreError>;
    /// Newest first; `status` filters.
    async fn list_approvals(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApprovalRow>, StoreError>;
    /// Moves an approval from `pending` to `status` atomically: `false` if it was not
    /// pending any more (decided by someone else, or expired), so nothing runs twice.
    async fn decide_approval(
        &self,
        id: &str,
        status: &str,
        by: &str,
        at: i64,
    ) -> Result<bool, StoreError>;
    /// Stores what an approved command did.
    async fn finish_approval(
        &self,
        id: &str,
        exit_code: Option<i64>,
        output: &str,
    ) -> Result<(), StoreError>;
    /// Marks pending approvals past their expiry as expired; returns them.
    async fn expire_approvals(&self, now: i64) -> Result<Vec<ApprovalRow>, StoreError>;
    async fn insert_audit(&self, a: &AuditRow) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_audit(
        &self,
        host: Option<&str>,
        kind: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError>;
    /// Releases every claim (single-process SQLite after a restart: the old owner is gone).
    async fn release_all_claims(&self) -> Result<u64, StoreError>;
    /// Tables and their columns, for checking both backends have the same schema.
    async fn schema(&self) -> Result<Vec<(String, String)>, StoreError>;
    async fn close(&self);
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The SQL [`Store`] for both backends.
pub struct SqlStore {
    pool: Pool,
    /// SQLite only: one connection with `synchronous=FULL` for intake commits, so a
    /// webhook is answered only once its alerts are on disk. Its fsync of the WAL also
    /// persists every earlier commit of the other connections, which can therefore
    /// run with `synchronous=NORMAL` (a worker's state change lost to a power cut is
    /// redone after the restart). It never checkpoints, keeping that work off the
    /// intake path.
    durable: Option<SqlitePool>,
    /// SQLite only: writes take turns in-process instead of meeting SQLite's busy
    /// handler, which sleeps up to 100 ms between retries and made intake latency spiky.
    write_lock: tokio::sync::Mutex<()>,
}

/// Like `on_pool!`, but on SQLite uses the durable (synchronous=FULL) connection.
macro_rules! on_durable_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match (&$self.pool, &$self.durable) {
            (Pool::Sqlite(_), Some($pool)) | (Pool::Sqlite($pool), None) => $body,
            (Pool::Postgres($pool), _) => $body,
        }
    };
}

/// Runs the same body against whichever pool this store holds. The body is compiled
/// once per backend, so the SQL text and code exist once in the source.
macro_rules! on_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

mod limits;
pub use limits::LimitsStore;
mod outbox;
pub use outbox::{
    DeliveryRow, DueDelivery, EscalationCooldown, NotificationRow, OutboxItem, OutboxStore,
};
mod llm;
pub use llm::{FeedbackRow, LlmStore, LlmTotals, LlmUsageRow};
mod remediation;
pub use remediation::{
    AttemptStatus, FailureRow, IncidentRow, MaintenanceRow, PatternRow, Purged, RemediationFilter,
    RemediationRow, RemediationStore, SnapshotRow, Totals,
};

const EVENT_COLUMNS: &str = "id, fingerprint, status, starts_at, ends_at, alertname, instance, labels, \
     annotations, generator_url, receiver, group_key, state, reason, received_at, updated_at, \
     claimed_by, claim_expires_at, resume_at, waiting";

/// The SQL list of the states that are not final, from [`AlertState`] (one source:
/// a new state cannot be forgotten in the claim or the retention job).
pub(crate) fn non_final_states() -> String {
    let names: Vec<String> = AlertState::ALL
        .iter()
        .filter(|s| !s.is_final())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// An event that may be claimed at `now` (a placeholder): not final, not held, due.
fn claimable(now: &str) -> String {
    format!(
        "state IN {} AND (claimed_by IS NULL OR claim_expires_at < {now}) \
         AND (resume_at IS NULL OR resume_at <= {now})",
        non_final_states()
    )
}

/// A firing event goes only when it is the oldest unfinished firing event of its
/// fingerprint and no other event of the fingerprint is held (`o` = the others).
fn alone(now: &str) -> String {
    format!(
        "(alert_events.status = 'resolved' OR NOT EXISTS (SELECT 1 FROM alert_events o \
         WHERE o.fingerprint = alert_events.fingerprint AND o.id <> alert_events.id AND ( \
           (o.claimed_by IS NOT NULL AND o.claim_expires_at >= {now}) \
           OR (o.status = 'firing' AND o.state IN {} \
               AND (o.received_at < alert_events.received_at \
                    OR (o.received_at = alert_events.received_at AND o.id < alert_events.id))))))",
        non_final_states()
    )
}

/// A stable 64-bit key for a fingerprint (PostgreSQL advisory locks): the first 8
/// bytes of its SHA-256. A collision only makes two fingerprints take turns.
pub fn fingerprint_lock_key(fingerprint: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(fingerprint.as_bytes());
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The claim on PostgreSQL, where replicas claim at the same time. Under READ
/// COMMITTED one statement's snapshot can miss another replica's claim that has not
/// committed yet, so two replicas could each take a different event of one
/// fingerprint. So, in one transaction: candidates are locked with `FOR UPDATE SKIP
/// LOCKED` (replicas never wait on each other's rows); for a firing event a
/// transaction-scoped advisory lock on its fingerprint is taken (or the event is
/// skipped until the next poll), and only then is the "alone" condition checked, in a
/// new statement whose snapshot includes every claim committed before the lock was
/// granted. A replica that holds the lock has not committed, and one that committed
/// has released it: either way the second replica cannot also claim.
async fn claim_postgres(
    p: &PgPool,
    owner: &str,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<AlertEventRow>, StoreError> {
    let mut tx = p.begin().await?;
    // The re-check relies on each statement seeing what committed before it.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *tx)
        .await?;
    let candidates: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, fingerprint, status FROM alert_events WHERE {} AND {} \
         ORDER BY received_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        claimable("$2"),
        alone("$2")
    )))
    .bind(i64::from(limit) * 4)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let claim = format!(
        "UPDATE alert_events SET claimed_by = $1, claim_expires_at = $2 \
         WHERE id = $4 AND {} AND {} RETURNING {EVENT_COLUMNS}",
        claimable("$3"),
        alone("$3")
    );
    let mut rows = Vec::new();
    for (id, fingerprint, status) in candidates {
        if rows.len() >= limit as usize {
            break;
        }
        if status == "firing" {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(fingerprint_lock_key(&fingerprint))
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                continue;
            }
        }
        if let Some(row) = sqlx::query_as::<_, AlertEventRow>(sqlx::AssertSqlSafe(claim.clone()))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
        {
            rows.push(row);
        }
    }
    tx.commit().await?;
    Ok(rows)
}

/// Rows per multi-row INSERT: well under SQLite's 32,766 bound parameters (20 each).
const INSERT_CHUNK: usize = 1000;

/// The path part of a `sqlite:` URL, to create its folder; `None` for in-memory.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path))
}

impl SqlStore {
    /// Opens a store without touching the database yet: connections are made lazily,
    /// so Jarvis can start (and spool) while PostgreSQL is down. SQLite's folder is
    /// created here.
    pub fn open(cfg: &DatabaseConfig) -> Result<Self, StoreError> {
        Self::open_url(
            &cfg.url,
            cfg.max_connections,
            Duration::from_secs(cfg.connect_timeout_seconds),
        )
    }

    pub fn open_url(
        url: &DatabaseUrl,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let raw = url.expose();
        let mut durable = None;
        let pool = if url.is_sqlite() {
            if let Some(parent) = sqlite_path(raw).as_deref().and_then(|p| p.parent())
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Config(format!(
                        "database.url: cannot create folder {} for the SQLite database ({e})",
                        parent.display()
                    ))
                })?;
            }
            let opts = SqliteConnectOptions::from_str(raw)
                .map_err(|e| StoreError::Config(format!("database.url {}: {e}", url.redacted())))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                // Waiting longer than this for another process's lock counts as "down".
                .busy_timeout(connect_timeout)
                .foreign_keys(true);
            let durable_opts = opts
                .clone()
                .synchronous(SqliteSynchronous::Full)
                .pragma("wal_autocheckpoint", "0");
            durable = Some(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(connect_timeout)
                    .connect_lazy_with(durable_opts),
            );
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max_connections.clamp(1, 4))
                    .acquire_timeout(connect_timeout)
                    .connect_lazy_with(opts),
            )
        } else if url.is_postgres() {
            let opts = PgConnectOptions::from_str(raw)
                .map_err(|e| StoreError::Config(format!("database.url {}: {e}", url.redacted())))?;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(connect_timeout)
                    .connect_lazy_with(opts),
            )
        } else {
            return Err(StoreError::Config(format!(
                "database.url: {} is neither sqlite:// nor postgres://",
                url.redacted()
            )));
        };
        Ok(Self {
            pool,
            durable,
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Holds SQLite's in-process write turn; nothing on PostgreSQL.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.pool {
            Pool::Sqlite(_) => Some(self.write_lock.lock().await),
            Pool::Postgres(_) => None,
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match &self.pool {
            // SQLite is "down" when it cannot be written (locked by another process,
            // disk trouble): take the write lock and give it back.
            Pool::Sqlite(p) => {
                let _turn = self.write_turn().await;
                p.begin_with("BEGIN IMMEDIATE").await?.rollback().await?
            }
            Pool::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?,
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrations::migrator(self.backend());
        let _turn = self.write_turn().await;
        on_pool!(self, p => migrator.run(p).await?);
        Ok(())
    }

    async fn insert_alert_events(&self, events: &[NewAlertEvent]) -> Result<Vec<bool>, StoreError> {
        let mut inserted_ids = std::collections::HashSet::with_capacity(events.len());
        let _turn = self.write_turn().await;
        on_durable_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in events.chunks(INSERT_CHUNK) {
                let mut qb = QueryBuilder::new(format!("INSERT INTO alert_events ({EVENT_COLUMNS}) "));
                qb.push_values(chunk, |mut row, e| {
                    row.push_bind(e.id.clone())
                        .push_bind(e.fingerprint.to_string())
                        .push_bind(e.status.as_str())
                        .push_bind(e.starts_at)
                        .push_bind(e.ends_at)
                        .push_bind(e.alertname.as_str().to_owned())
                        .push_bind(e.instance().map(str::to_owned))
                        .push_bind(serde_json::to_string(&e.labels).expect("string map serializes"))
                        .push_bind(serde_json::to_string(&e.annotations).expect("string map serializes"))
                        .push_bind(e.generator_url.clone())
                        .push_bind(e.receiver.clone())
                        .push_bind(e.group_key.clone())
                        .push_bind(AlertState::Received.as_str())
                        .push_bind(None::<String>)
                        .push_bind(e.received_at)
                        .push_bind(e.received_at)
                        .push_bind(None::<String>)
                        .push_bind(None::<i64>)
                        .push_bind(None::<i64>)
                        .push_bind(None::<String>);
                });
                qb.push(" ON CONFLICT DO NOTHING RETURNING id");
                let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                inserted_ids.extend(ids.into_iter().map(|(id,)| id));
            }
            tx.commit().await?;
        });
        Ok(events
            .iter()
            .map(|e| inserted_ids.contains(&e.id))
            .collect())
    }

    async fn list_alert_events(
        &self,
        filter: &AlertFilter,
    ) -> Result<Vec<AlertEventRow>, StoreError> {
        let rows = on_pool!(self, p => {
            let mut qb = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM alert_events WHERE 1 = 1"));
            if let Some(state) = filter.state {
                qb.push(" AND state = ").push_bind(state.as_str());
            }
            if let Some(name) = &filter.alertname {
                qb.push(" AND alertname = ").push_bind(name.clone());
            }
            qb.push(" ORDER BY received_at DESC, id DESC LIMIT ").push_bind(i64::from(filter.limit));
            qb.build_query_as::<AlertEventRow>().fetch_all(p).await?
        });
        Ok(rows)
    }

    async fn claim_alert_events(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<AlertEventRow>, StoreError> {
        // Any event not yet final can be claimed once it is due: one whose owner died
        // mid-remediation resumes; a parked one when its `resume_at` passes or it is
        // woken. Resolved events never wait (they complete verifications).
        //
        // One fingerprint is worked on by one owner at a time, in order: a firing event
        // is claimable only while it is the oldest unfinished firing event of its
        // fingerprint and no other event of it is held. SQLite has one writer, so one
        // statement decides. PostgreSQL needs more (see `claim_postgres`).
        let (claimable, alone) = (claimable("$3"), alone("$3"));
        let sql = format!(
            "UPDATE alert_events SET claimed_by = $1, claim_expires_at = $2 \
             WHERE id IN (SELECT id FROM alert_events WHERE {claimable} AND {alone} \
                          ORDER BY received_at, id LIMIT $4) \
               AND {claimable} \
             RETURNING {EVENT_COLUMNS}"
        );
        let _turn = self.write_turn().await;
        let mut rows = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_as::<_, AlertEventRow>(sqlx::AssertSqlSafe(sql))
                    .bind(owner)
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await?
            }
            Pool::Postgres(p) => claim_postgres(p, owner, now, lease_ms, limit).await?,
        };
        rows.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        Ok(rows)
    }

    async fn finish_alert_event(
        &self,
        id: &str,
        owner: &str,
        state: AlertState,
        reason: Option<&str>,
        notes: &[OutboxItem],
        cooldown: Option<&EscalationCooldown>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let affected = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE alert_events SET state = $1, reason = $2, updated_at = $3, \
                 claimed_by = NULL, claim_expires_at = NULL, resume_at = NULL, waiting = NULL \
                 WHERE id = $4 AND claimed_by = $5",
            )
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                outbox::insert_outbox!(tx, notes);
                if let Some(c) = cooldown {
                    sqlx::query(
                        "INSERT INTO escalation_cooldowns (fingerprint, alert_name, escalated_at, cooldown_until, reason) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (fingerprint) DO UPDATE SET \
                         escalated_at = excluded.escalated_at, cooldown_until = excluded.cooldown_until, \
                         reason = excluded.reason",
                    )
                    .bind(&c.fingerprint)
                    .bind(&c.alert_name)
                    .bind(c.at)
                    .bind(c.until)
                    .bind(&c.reason)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            n
        });
        Ok(affected == 1)
    }

    async fn park_alert_event(
        &self,
        id: &str,
        owner: &str,
        state: AlertState,
        reason: Option<&str>,
        park: &crate::pipeline::Park,
        notes: &[OutboxItem],
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let affected = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE alert_events SET state = $1, reason = $2, updated_at = $3, \
                 claimed_by = NULL, claim_expires_at = NULL, waiting = $4, \
                 resume_at = CASE WHEN EXISTS (SELECT 1 FROM approvals a WHERE a.id = $5 \
                     AND a.status <> 'pending' AND (a.status <> 'approved' OR a.output IS NOT NULL)) \
                     THEN $3 ELSE $6 END \
                 WHERE id = $7 AND claimed_by = $8",
            )
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(&park.waiting)
            .bind(park.approval_id.as_deref())
            .bind(park.resume_at)
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                outbox::insert_outbox!(tx, notes);
            }
            tx.commit().await?;
            n
        });
        Ok(affected == 1)
    }

    async fn insert_host_status(
        &self,
        host: &str,
        status: &str,
        reason: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query("INSERT INTO host_status_log (id, host, status, reason, changed_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(crate::domain::ids::new_id())
                .bind(host)
                .bind(status)
                .bind(reason)
                .bind(at)
                .execute(p)
                .await
                .map(|_| ())?
        });
        Ok(())
    }

    async fn insert_approval(&self, a: &ApprovalRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_durable_pool!(self, p => {
            sqlx::query(
                "INSERT INTO approvals (id, host, command, source, verdict, rule, reason, digest, status, requested_by, \
                 alert_event_id, requested_at, expires_at, explanation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&a.id)
            .bind(&a.host)
            .bind(&a.command)
            .bind(a.source.as_str())
            .bind(&a.verdict)
            .bind(&a.rule)
            .bind(&a.reason)
            .bind(&a.digest)
            .bind(a.status.as_str())
            .bind(&a.requested_by)
            .bind(&a.alert_event_id)
            .bind(a.requested_at)
            .bind(a.expires_at)
            .bind(&a.explanation)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        let row = on_pool!(self, p => {
            sqlx::query_as::<_, ApprovalRow>("SELECT * FROM approvals WHERE id = $1").bind(id).fetch_optional(p).await?
        });
        Ok(row)
    }

    async fn list_approvals(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let rows = on_pool!(self, p => {
            let mut qb = QueryBuilder::new("SELECT * FROM approvals WHERE 1 = 1");
            if let Some(s) = status {
                qb.push(" AND status = ").push_bind(s.to_owned());
            }
            qb.push(" ORDER BY requested_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
            qb.build_query_as::<ApprovalRow>().fetch_all(p).await?
        });
        Ok(rows)
    }

    async fn decide_approval(
        &self,
        id: &str,
        status: &str,
        by: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let n = on_durable_pool!(self, p => {
            sqlx::query(
                "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3 \
                 WHERE id = $4 AND status = 'pending' AND expires_at > $3",
            )
            .bind(status)
            .bind(by)
            .bind(at)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    async fn finish_approval(
        &self,
        id: &str,
        exit_code: Option<i64>,
        output: &str,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_durable_pool!(self, p => {
            sqlx::query("UPDATE approvals SET exit_code = $1, output = $2 WHERE id = $3")
                .bind(exit_code)
                .bind(output)
                .bind(id)
                .execute(p)
                .await
                .map(|_| ())?
        });
        Ok(())
    }

    async fn expire_approvals(&self, now: i64) -> Result<Vec<ApprovalRow>, StoreError> {
        let _turn = self.write_turn().await;
        let rows = on_pool!(self, p => {
            sqlx::query_as::<_, ApprovalRow>(
                "UPDATE approvals SET status = 'expired', decided_by = 'jarvis', decided_at = $1 \
                 WHERE status = 'pending' AND expires_at <= $1 RETURNING *",
            )
            .bind(now)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    async fn insert_audit(&self, a: &AuditRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO audit_log (id, at, kind, source, verdict, rule, host, command, exit_code, duration_ms, \
                 output_digest, actor, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&a.id)
            .bind(a.at)
            .bind(&a.kind)
            .bind(&a.source)
            .bind(&a.verdict)
            .bind(&a.rule)
            .bind(&a.host)
            .bind(&a.command)
            .bind(a.exit_code)
            .bind(a.duration_ms)
            .bind(&a.output_digest)
            .bind(&a.actor)
            .bind(&a.detail)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    async fn list_audit(
        &self,
        host: Option<&str>,
        kind: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = on_pool!(self, p => {
            let mut qb = QueryBuilder::new("SELECT * FROM audit_log WHERE 1 = 1");
            if let Some(h) = host {
                qb.push(" AND host = ").push_bind(h.to_owned());
            }
            if let Some(k) = kind {
                qb.push(" AND kind = ").push_bind(k.to_owned());
            }
            qb.push(" ORDER BY at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
            qb.build_query_as::<AuditRow>().fetch_all(p).await?
        });
        Ok(rows)
    }

    async fn release_all_claims(&self) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let n = on_pool!(self, p => {
            sqlx::query("UPDATE alert_events SET claimed_by = NULL, claim_expires_at = NULL WHERE claimed_by IS NOT NULL")
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    async fn schema(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut cols: Vec<(String, String)> = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT m.name, c.name FROM sqlite_master m JOIN pragma_table_info(m.name) c \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
                )
                .fetch_all(p)
                .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%'",
                )
                .fetch_all(p)
                .await?
            }
        };
        cols.sort();
        Ok(cols)
    }

    async fn close(&self) {
        if let Some(d) = &self.durable {
            d.close().await;
        }
        on_pool!(self, p => p.close().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_picks_up_every_state_that_is_not_final() {
        assert_eq!(
            non_final_states(),
            "('received', 'remediating', 'awaiting_approval', 'waiting_dependency', 'verifying')"
        );
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://jarvis-data/jarvis.db")
                .unwrap()
                .to_str(),
            Some("jarvis-data/jarvis.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/j.db?mode=rwc")
                .unwrap()
                .to_str(),
            Some("/var/lib/j.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }
}
