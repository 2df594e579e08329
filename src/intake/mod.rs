//! Intake: from a parsed webhook to events that are durably recorded.
//!
//! The HTTP handler hands parsed events to [`Intake::submit`] and answers only when
//! the one writer task reports them durable. The writer commits whatever requests have
//! queued up in a single transaction (group commit), so an fsync is shared by many
//! webhooks and durability costs little throughput. While the database is unreachable
//! it appends to the [`spool::Spool`] instead, and replays the spool in order, before
//! anything newer, once the database is back. Being the only writer is what keeps
//! the order: nothing new reaches the database while older spooled alerts wait.

pub mod auth;
pub mod payload;
pub mod spool;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::alert::{AlertStatus, Fingerprint, NewAlertEvent};
use crate::metrics::Metrics;
use crate::store::Store;
use spool::Spool;

/// Requests waiting for the writer before submitters feel back-pressure.
const QUEUE_DEPTH: usize = 4096;
/// Events committed together at most.
const MAX_BATCH_EVENTS: usize = 5000;

/// What happened to one submitted payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Events new to Jarvis.
    pub accepted: usize,
    /// Events Jarvis already had (retries, HA Alertmanager pairs, repeats in the payload).
    pub duplicates: usize,
    /// True when they went to the local spool because the database is unreachable.
    pub spooled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Neither the database nor the spool could take the alerts; the sender should retry.
    #[error("alerts could not be stored: the database is unreachable and the spool failed ({0})")]
    Unavailable(String),
    #[error("Jarvis is shutting down")]
    ShuttingDown,
}

/// Shared view of the storage state, read by /health and the metrics.
#[derive(Debug, Default)]
pub struct StorageStatus {
    db_connected: AtomicBool,
    spooled_events: AtomicU64,
    /// Wakes the reconnect loop when a write fails.
    db_lost: Notify,
    /// Wakes the workers when new events are committed.
    pub new_events: Notify,
}

impl StorageStatus {
    pub fn db_connected(&self) -> bool {
        self.db_connected.load(Ordering::SeqCst)
    }
    pub fn spooled_events(&self) -> u64 {
        self.spooled_events.load(Ordering::SeqCst)
    }
}

struct WriteRequest {
    events: Vec<NewAlertEvent>,
    reply: oneshot::Sender<Result<Accepted, IntakeError>>,
}

/// The submitting side of intake; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<WriteRequest>,
}

impl Intake {
    /// Returns once `events` are committed to the database or fsync'd to the spool.
    pub async fn submit(&self, events: Vec<NewAlertEvent>) -> Result<Accepted, IntakeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriteRequest { events, reply })
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
        rx.await.map_err(|_| IntakeError::ShuttingDown)?
    }
}

/// Starts the writer and the database watch. On `shutdown` the writer stops taking
/// new requests, answers every request already queued, and ends; so does the watch.
pub fn start(
    store: Arc<dyn Store>,
    spool: Spool,
    status: Arc<StorageStatus>,
    metrics: Arc<Metrics>,
    db_ready: bool,
    shutdown: CancellationToken,
) -> (
    Intake,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    status.db_connected.store(db_ready, Ordering::SeqCst);
    status
        .spooled_events
        .store(spool.pending_events(), Ordering::SeqCst);
    metrics.set_database_connected(db_ready);
    metrics.set_spooled_alerts(spool.pending_events());
    let writer = Writer {
        store: store.clone(),
        spool: Some(spool),
        status: status.clone(),
        metrics: metrics.clone(),
    };
    let writer = tokio::spawn(writer.run(rx, shutdown.clone()));
    let watch = tokio::spawn(watch_database(store, status, metrics, shutdown));
    (Intake { tx }, writer, watch)
}

struct Writer {
    store: Arc<dyn Store>,
    /// Taken out while a blocking file operation runs on the blocking pool.
    spool: Option<Spool>,
    status: Arc<StorageStatus>,
    metrics: Arc<Metrics>,
}

/// The identity Alertmanager re-deliveries share.
fn identity(e: &NewAlertEvent) -> (Fingerprint, AlertStatus, i64) {
    (e.fingerprint.clone(), e.status, e.starts_at)
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>, shutdown: CancellationToken) {
        let mut drain_tick = tokio::time::interval(Duration::from_millis(500));
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                // Refuse new submissions (they get a retryable 503) but keep serving
                // what is already queued: recv() returns None once that is done.
                _ = shutdown.cancelled(), if !rx.is_closed() => rx.close(),
                first = rx.recv() => {
                    let Some(first) = first else { break };
                    let mut batch = vec![first];
                    let mut n = batch[0].events.len();
                    while n < MAX_BATCH_EVENTS {
                        match rx.try_recv() {
                            Ok(r) => {
                                n += r.events.len();
                                batch.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                    self.write(batch).await;
                }
                _ = drain_tick.tick() => {
                    if self.status.db_connected() && self.spooled() > 0 {
                        self.drain().await;
                    }
                }
            }
        }
        tracing::debug!("Intake writer stopped; every accepted alert is stored.");
    }

    fn spooled(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::pending_events)
    }

    fn set_connected(&self, connected: bool) {
        let was = self.status.db_connected.swap(connected, Ordering::SeqCst);
        self.metrics.set_database_connected(connected);
        if was && !connected {
            self.status.db_lost.notify_one();
        }
    }

    async fn write(&mut self, batch: Vec<WriteRequest>) {
        // Repeats inside the batch are duplicates of their first occurrence.
        let mut seen = HashSet::new();
        let mut unique: Vec<Vec<NewAlertEvent>> = Vec::with_capacity(batch.len());
        let mut dup_in_batch = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for req in batch {
            let before = req.events.len();
            let kept: Vec<NewAlertEvent> = req
                .events
                .into_iter()
                .filter(|e| seen.insert(identity(e)))
                .collect();
            dup_in_batch.push(before - kept.len());
            unique.push(kept);
            replies.push(req.reply);
        }

        if self.status.db_connected() && self.spooled() > 0 {
            self.drain().await;
        }
        if self.status.db_connected() && self.spooled() == 0 {
            let flat: Vec<NewAlertEvent> = unique.iter().flatten().cloned().collect();
            match self.store.insert_alert_events(&flat).await {
                Ok(inserted) => {
                    let mut flags = inserted.into_iter();
                    for ((events, dups), reply) in unique.iter().zip(dup_in_batch).zip(replies) {
                        let mut accepted = 0;
                        for e in events {
                            if flags.next().unwrap_or(false) {
                                accepted += 1;
                                self.metrics.alert_received(e.status);
                            }
                        }
                        let duplicates = dups + events.len() - accepted;
                        self.metrics.alerts_duplicate(duplicates as u64);
                        let _ = reply.send(Ok(Accepted {
                            accepted,
                            duplicates,
                            spooled: false,
                        }));
                    }
                    self.status.new_events.notify_waiters();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Database write failed; spooling alerts until it is back.");
                    self.set_connected(false);
                }
            }
        }
        self.spool_batch(unique, dup_in_batch, replies).await;
    }

    async fn spool_batch(
        &mut self,
        unique: Vec<Vec<NewAlertEvent>>,
        dup_in_batch: Vec<usize>,
        replies: Vec<oneshot::Sender<Result<Accepted, IntakeError>>>,
    ) {
        let Some((result, unique, pending)) = self
            .on_spool(move |spool| {
                let refs: Vec<&[NewAlertEvent]> = unique
                    .iter()
                    .filter(|u| !u.is_empty())
                    .map(Vec::as_slice)
                    .collect();
                let r = spool.append(&refs);
                (r, unique, spool.pending_events())
            })
            .await
        else {
            return;
        };
        self.status.spooled_events.store(pending, Ordering::SeqCst);
        self.metrics.set_spooled_alerts(pending);
        for ((events, dups), reply) in unique.iter().zip(dup_in_batch).zip(replies) {
            let answer = match &result {
                Ok(()) => {
                    for e in events {
                        self.metrics.alert_received(e.status);
                    }
                    Ok(Accepted {
                        accepted: events.len(),
                        duplicates: dups,
                        spooled: true,
                    })
                }
                Err(e) => Err(IntakeError::Unavailable(e.to_string())),
            };
            let _ = reply.send(answer);
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "Alerts could not be spooled either; Alertmanager will retry them.");
        }
    }

    /// Runs a blocking file operation on the spool on the blocking pool, so an fsync
    /// never stalls the runtime. `None` only if the spool is already lent out.
    async fn on_spool<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let mut spool = self.spool.take()?;
        let (spool, result) = tokio::task::spawn_blocking(move || {
            let r = f(&mut spool);
            (spool, r)
        })
        .await
        .expect("spool operations do not panic");
        self.spool = Some(spool);
        Some(result)
    }

    /// Replays the spool into the database, oldest first; empties it only once all of
    /// it is committed. Idempotent, so an interrupted drain is simply repeated.
    async fn drain(&mut self) {
        let payloads = match self.on_spool(|s| s.read_all()).await {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                tracing::error!(error = %e, "Cannot read the spool; it will be retried.");
                return;
            }
            None => return,
        };
        let events: Vec<NewAlertEvent> = payloads.into_iter().flatten().collect();
        let mut replayed = 0usize;
        for chunk in events.chunks(MAX_BATCH_EVENTS) {
            match self.store.insert_alert_events(chunk).await {
                Ok(flags) => replayed += flags.iter().filter(|f| **f).count(),
                Err(e) => {
                    tracing::warn!(error = %e, "Spool replay interrupted; the database is unreachable again.");
                    self.set_connected(false);
                    return;
                }
            }
        }
        if let Some(Err(e)) = self.on_spool(|s| s.clear()).await {
            tracing::error!(error = %e, "Spool replayed but could not be emptied; it will be replayed again (harmlessly).");
            return;
        }
        self.status.spooled_events.store(0, Ordering::SeqCst);
        self.metrics.set_spooled_alerts(0);
        self.status.new_events.notify_waiters();
        tracing::info!(
            events = events.len(),
            new = replayed,
            "Spool replayed into the database."
        );
    }
}

/// Watches the database: while it is up, a cheap ping every few seconds so /health
/// turns `degraded` even without traffic; while it is down, reconnects with capped
/// exponential backoff, applying migrations first (Jarvis may have started without it).
async fn watch_database(
    store: Arc<dyn Store>,
    status: Arc<StorageStatus>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    const PING_EVERY: Duration = Duration::from_secs(5);
    const FIRST_RETRY: Duration = Duration::from_millis(250);
    const MAX_RETRY: Duration = Duration::from_secs(30);
    let mut retry = FIRST_RETRY;
    loop {
        if status.db_connected() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = status.db_lost.notified() => {}
                _ = tokio::time::sleep(PING_EVERY) => {
                    if let Err(e) = store.ping().await {
                        tracing::warn!(error = %e, "Database unreachable; intake is spooling to disk.");
                        status.db_connected.store(false, Ordering::SeqCst);
                        metrics.set_database_connected(false);
                    }
                }
            }
            retry = FIRST_RETRY;
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        match store.ready().await {
            Ok(()) => {
                tracing::info!("Database reachable; replaying any spooled alerts.");
                status.db_connected.store(true, Ordering::SeqCst);
                metrics.set_database_connected(true);
            }
            Err(e) => {
                tracing::debug!(error = %e, retry_in = ?retry, "Database still unreachable.");
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}
