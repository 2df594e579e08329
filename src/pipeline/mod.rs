//! The work loop after intake: claim stored alert events, hand each to the
//! [`Pipeline`], record where it ended.
//!
//! Events are claimed from the store with a lease, so each has one owner at a time,
//! several replicas can share a PostgreSQL database, and an event whose owner died is
//! taken over when the lease runs out. Nothing lives only in memory: a restart simply
//! claims again whatever is not final.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::domain::alert::AlertState;
use crate::domain::ids::{new_id, now_ms};
use crate::intake::StorageStatus;
use crate::store::{AlertEventRow, EscalationCooldown, OutboxItem, Store};

mod attempt;
pub mod correlate;
pub mod hints;
pub mod maintenance;
mod outcome;
pub mod plan;
pub mod remediate;
pub mod step;
pub mod triage;
pub mod verify;

/// Where an event ended up, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition {
    pub state: AlertState,
    pub reason: Option<String>,
    /// Not finished: parked until `resume_at` (or woken earlier), its claim released,
    /// so no worker slot waits for a person, a dependency or a verification.
    pub park: Option<Park>,
    /// Notifications this outcome causes: written to the outbox in the same
    /// transaction as the state change.
    pub notes: Vec<OutboxItem>,
    /// An escalation's cooldown, written with the state change.
    pub cooldown: Option<EscalationCooldown>,
}

impl Disposition {
    pub fn done(state: AlertState, reason: impl Into<String>) -> Self {
        Self {
            state,
            reason: Some(reason.into()),
            park: None,
            notes: Vec::new(),
            cooldown: None,
        }
    }

    pub fn parked(state: AlertState, reason: impl Into<String>, park: Park) -> Self {
        Self {
            state,
            reason: Some(reason.into()),
            park: Some(park),
            notes: Vec::new(),
            cooldown: None,
        }
    }

    /// Adds a notification to write with the outcome.
    pub fn note(mut self, item: OutboxItem) -> Self {
        self.notes.push(item);
        self
    }
}

/// What a parked event waits for, and until when at the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Park {
    /// Epoch ms; the event is claimable again from then (a decision or a resolved
    /// notification wakes it earlier).
    pub resume_at: i64,
    /// JSON: how to resume (the pipeline's own type).
    pub waiting: String,
    /// Wake at once if this approval was decided before the park was stored.
    pub approval_id: Option<String>,
}

impl Park {
    pub fn until(resume_at: i64, waiting: &impl serde::Serialize) -> Self {
        Self {
            resume_at,
            waiting: serde_json::to_string(waiting).expect("waiting state serializes"),
            approval_id: None,
        }
    }
}

/// What happens to a claimed alert event. The remediation pipeline implements this.
#[async_trait]
pub trait Pipeline: Send + Sync + 'static {
    async fn process(&self, event: &AlertEventRow) -> Disposition;
}

/// The first pipeline: records each event and closes it, so the intake → claim →
/// dispose loop is exercised end to end before remediation exists. Resolved
/// notifications close as `resolved`; firing alerts are `escalated`, since nothing
/// in this build acts on them and a person must.
pub struct RecordOnly;

#[async_trait]
impl Pipeline for RecordOnly {
    async fn process(&self, event: &AlertEventRow) -> Disposition {
        tracing::info!(
            alertname = %event.alertname,
            fingerprint = %event.fingerprint,
            status = %event.status,
            "Alert recorded."
        );
        if event.status == crate::domain::alert::AlertStatus::Resolved {
            Disposition::done(AlertState::Resolved, "resolved by Alertmanager")
        } else {
            Disposition::done(
                AlertState::Escalated,
                "no remediation pipeline in this build",
            )
        }
    }
}

pub struct WorkerSettings {
    /// This replica's id (`[cluster] replica_id`): claims are recorded as
    /// `<replica id>/<worker nonce>`.
    pub replica_id: String,
    pub concurrency: u32,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// How long shutdown waits for events being processed before abandoning them
    /// (they stay claimed-but-unfinished and are picked up again after the restart).
    pub shutdown_grace: Duration,
}

/// Claims and processes events until `shutdown`; events being processed are finished
/// before it returns.
pub async fn run_worker(
    store: Arc<dyn Store>,
    pipeline: Arc<dyn Pipeline>,
    status: Arc<StorageStatus>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) {
    let nonce = new_id();
    let owner = format!(
        "{}/{}",
        settings.replica_id,
        &nonce[nonce.len().saturating_sub(8)..]
    );
    let lease_ms = i64::try_from(settings.lease.as_millis()).unwrap_or(i64::MAX);
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        // Listen before claiming, so a wake-up that arrives while claiming is not lost.
        let notified = status.new_events.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let free = settings.concurrency as usize - running.len();
        let mut claimed = 0;
        if free > 0 && !shutdown.is_cancelled() {
            match store
                .claim_alert_events(&owner, now_ms(), lease_ms, free as u32)
                .await
            {
                Ok(events) => {
                    claimed = events.len();
                    for event in events {
                        let (store, pipeline, owner, stop) = (
                            store.clone(),
                            pipeline.clone(),
                            owner.clone(),
                            shutdown.clone(),
                        );
                        running.spawn(async move {
                            process_one(&*store, &*pipeline, &owner, lease_ms, event, stop).await
                        });
                    }
                }
                // A row that cannot be read stalls every claim: say so loudly. The
                // database being away is expected (intake spools) and said elsewhere.
                Err(
                    e @ crate::store::StoreError::Database(
                        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_),
                    ),
                ) => {
                    tracing::error!(error = %e, "A stored alert event cannot be read; claiming is stuck until it is fixed.")
                }
                Err(e) => tracing::debug!(error = %e, "Cannot claim alert events yet."),
            }
        }
        if claimed > 0 && running.len() < settings.concurrency as usize {
            continue; // more may be waiting
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = notified => {}
            _ = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
    let drain = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "Alert events still in progress at shutdown; they resume after the restart."
        );
    }
    tracing::debug!("Worker stopped.");
}

async fn process_one(
    store: &dyn Store,
    pipeline: &dyn Pipeline,
    owner: &str,
    lease_ms: i64,
    event: AlertEventRow,
    shutdown: CancellationToken,
) {
    // A remediation can outlast the lease (approvals, verification): renew the claim
    // while working, so no other worker takes over a live event.
    let beat = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1000).max(100));
    let work = pipeline.process(&event);
    tokio::pin!(work);
    let d = loop {
        tokio::select! {
            d = &mut work => break d,
            _ = tokio::time::sleep(beat) => {
                if let Err(e) = store.renew_claim(&event.id, owner, now_ms() + lease_ms).await {
                    tracing::warn!(error = %e, id = %event.id, "Cannot renew the claim on an alert event.");
                }
            }
        }
    };
    // The outcome must reach the store; retry while the database is away. On shutdown
    // give up: the event is still claimed-but-unfinished and is processed again after
    // the restart (or by another replica when the lease runs out).
    let mut delay = Duration::from_millis(100);
    loop {
        let recorded = match &d.park {
            None => {
                store
                    .finish_alert_event(
                        &event.id,
                        owner,
                        d.state,
                        d.reason.as_deref(),
                        &d.notes,
                        d.cooldown.as_ref(),
                        now_ms(),
                    )
                    .await
            }
            Some(park) => {
                store
                    .park_alert_event(
                        &event.id,
                        owner,
                        d.state,
                        d.reason.as_deref(),
                        park,
                        &d.notes,
                        now_ms(),
                    )
                    .await
            }
        };
        match recorded {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(id = %event.id, "Claim on alert event lapsed before it was finished; another worker owns it now.");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, id = %event.id, "Cannot record alert outcome yet; retrying.");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
