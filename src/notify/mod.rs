//! Telling people: fixed, failed, escalated, approval needed, host offline/online,
//! maintenance. Behind the [`Notifier`] trait (Discord, ntfy, Slack, generic webhook).
//!
//! Notifications go through a durable outbox (the `notifications` and
//! `notification_deliveries` tables). The pipeline's messages are written in the same
//! transaction as the alert state change that causes them; others (host offline,
//! maintenance, the LLM budget) are written as they happen (`send_now`; queued for
//! one writer task while the database is away, as are the suppression summaries).
//! Nothing here slows remediation, and nothing written is lost:
//! - one sender task per sink, holding a lease on that sink in the database, so there
//!   is one sender per sink in the whole cluster and one slow sink (a Discord 429
//!   retried for a minute) never delays another;
//! - sends are paced per sink by a token bucket (`burst` at once, then one per
//!   `min_interval`); whatever is due meanwhile goes out as one digest;
//! - a failed send is retried with backoff (honouring 429 `retry_after`), a refused one
//!   (4xx) is marked failed; a crash resends what was not marked delivered, under the
//!   same id (`Message::id`, which the generic webhook sink passes on as
//!   `Idempotency-Key`);
//! - suppressed alerts are never announced one by one: they are counted per root cause
//!   and summarised every `summary_interval`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::NotifyConfig;
use crate::domain::ids::{new_id, now_ms};
use crate::events::NotificationDelivered;
use crate::metrics::Metrics;
use crate::store::{DueDelivery, OutboxItem, Store};

pub mod sinks;

/// What a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Fixed,
    Failed,
    Escalated,
    ApprovalNeeded,
    HostOffline,
    HostOnline,
    MaintenanceStarted,
    MaintenanceEnded,
    Suppressed,
    Digest,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Failed => "failed",
            Self::Escalated => "escalated",
            Self::ApprovalNeeded => "approval_needed",
            Self::HostOffline => "host_offline",
            Self::HostOnline => "host_online",
            Self::MaintenanceStarted => "maintenance_started",
            Self::MaintenanceEnded => "maintenance_ended",
            Self::Suppressed => "suppressed",
            Self::Digest => "digest",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable across resends (a sink that can dedupe uses it).
    pub id: String,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    /// Name → value, shown as fields where the sink has them.
    pub fields: Vec<(String, String)>,
    /// A link into Jarvis (built from `server.external_url`).
    pub url: Option<String>,
    /// Epoch milliseconds.
    pub at: i64,
    /// A digest: the ids of the notifications it carries (a sink that dedupes can do
    /// so per notification, since a digest resent after a crash may differ).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carries: Vec<String>,
}

impl Message {
    pub fn new(kind: Kind, title: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            id: new_id(),
            kind,
            title: title.into(),
            body: body.into(),
            fields: Vec::new(),
            url: None,
            at: now_ms(),
            carries: Vec::new(),
        }
    }

    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    pub fn url(mut self, url: Option<String>) -> Self {
        self.url = url;
        self
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Rate limited: try again after this long.
    #[error("rate limited; retry after {0:?}")]
    RetryAfter(Duration),
    /// Worth retrying (5xx, connection trouble).
    #[error("{0}")]
    Transient(String),
    /// Not worth retrying (4xx: bad URL, deleted webhook).
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Notifier: Send + Sync {
    fn name(&self) -> &'static str;
    async fn send(&self, m: &Message) -> Result<(), SendError>;
}

/// A failed send is tried this many times in all before it is marked failed.
const TRIES: i64 = 6;
/// The longest wait between tries (and the most a 429 may ask for).
const LONGEST_WAIT: Duration = Duration::from_secs(300);
/// Notifications older than this are no longer sent (a sink down for a day, or one
/// added back to the configuration, gets no stale backlog).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often an idle sender looks for due deliveries (others' writes, retries).
const POLL: Duration = Duration::from_millis(250);
/// A sender's lease on its sink: far longer than one send (the HTTP timeout is 15 s),
/// so a lease never runs out while its holder is sending.
const SINK_LEASE: Duration = Duration::from_secs(60);

/// When to try a failed delivery again, after `attempts` tries. Pure.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 12)).unwrap_or(12);
    Duration::from_millis(500 * 2u64.pow(exp)).min(LONGEST_WAIT)
}

/// How the senders pace themselves.
#[derive(Debug, Clone)]
pub struct Pacing {
    pub burst: u32,
    pub min_interval: Duration,
    pub summary_interval: Duration,
}

impl Pacing {
    pub fn from_config(c: &NotifyConfig) -> Self {
        Self {
            burst: c.burst.max(1),
            min_interval: Duration::from_millis(c.min_interval_ms),
            summary_interval: Duration::from_secs(c.summary_interval_seconds.max(1)),
        }
    }
}

/// A token bucket; `now` is passed in.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: tokio::time::Instant,
}

impl Bucket {
    fn new(p: &Pacing, now: tokio::time::Instant) -> Self {
        Self {
            tokens: f64::from(p.burst),
            at: now,
        }
    }

    fn refill(&mut self, p: &Pacing, now: tokio::time::Instant) {
        self.tokens = if p.min_interval.is_zero() {
            f64::from(p.burst)
        } else {
            let earned = now.duration_since(self.at).as_secs_f64() / p.min_interval.as_secs_f64();
            (self.tokens + earned).min(f64::from(p.burst))
        };
        self.at = now;
    }

    /// How long until a token is there.
    fn wait(&self, p: &Pacing) -> Duration {
        p.min_interval
            .mul_f64((1.0 - self.tokens).max(0.0))
            .max(Duration::from_millis(10))
    }
}

#[derive(Default)]
struct SuppressedCounts {
    /// Root cause → (how many, a few of the alerts' names).
    by_root: BTreeMap<String, (u64, Vec<String>)>,
}

/// The front door: cheap to call from anywhere, never blocks.
pub struct Notifications {
    store: Arc<dyn Store>,
    /// The configured sinks' names: a notification gets one delivery per sink.
    sinks: Vec<String>,
    queue: mpsc::UnboundedSender<OutboxItem>,
    suppressed: Mutex<SuppressedCounts>,
    /// Wakes the senders when something was written.
    written: Notify,
    external_url: String,
}

impl Notifications {
    /// Builds the front door, the outbox writer and one sender per sink. The handle
    /// ends after shutdown, once the writer has written what was queued and each
    /// sender has had one last try.
    pub fn start(
        store: Arc<dyn Store>,
        sinks: Vec<Arc<dyn Notifier>>,
        pacing: Pacing,
        external_url: &str,
        metrics: Arc<Metrics>,
        owner: String,
        shutdown: CancellationToken,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::unbounded_channel();
        // Per process: two processes that share a replica id must not share a lease.
        let nonce = new_id();
        let owner = format!("{owner}/{}", &nonce[nonce.len().saturating_sub(8)..]);
        let me = Arc::new(Self {
            store: store.clone(),
            sinks: sinks.iter().map(|s| s.name().to_owned()).collect(),
            queue,
            suppressed: Mutex::new(SuppressedCounts::default()),
            written: Notify::new(),
            external_url: external_url.trim_end_matches('/').to_owned(),
        });
        let writer = tokio::spawn(write_loop(
            me.clone(),
            store.clone(),
            rx,
            pacing.summary_interval,
            shutdown.clone(),
        ));
        // Senders stop after the writer, so what it wrote last goes out too.
        let senders_stop = CancellationToken::new();
        let mut senders = tokio::task::JoinSet::new();
        for sink in sinks {
            senders.spawn(send_loop(
                me.clone(),
                store.clone(),
                sink,
                pacing.clone(),
                metrics.clone(),
                owner.clone(),
                senders_stop.clone(),
            ));
        }
        let task = tokio::spawn(async move {
            let _ = writer.await;
            senders_stop.cancel();
            while senders.join_next().await.is_some() {}
        });
        (me, task)
    }

    /// The configured sinks.
    pub fn sinks_from_config(c: &NotifyConfig) -> anyhow::Result<Vec<Arc<dyn Notifier>>> {
        let client = crate::http_client(Duration::from_secs(15))?;
        let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
        if !c.discord.webhook_url.is_empty() {
            out.push(Arc::new(sinks::Discord {
                client: client.clone(),
                url: c.discord.webhook_url.expose().to_owned(),
            }));
        }
        if !c.ntfy.url.is_empty() {
            out.push(Arc::new(sinks::Ntfy {
                client: client.clone(),
                url: c.ntfy.url.clone(),
            }));
        }
        if !c.slack.webhook_url.is_empty() {
            out.push(Arc::new(sinks::Slack {
                client: client.clone(),
                url: c.slack.webhook_url.expose().to_owned(),
            }));
        }
        if !c.webhook.url.is_empty() {
            out.push(Arc::new(sinks::Webhook {
                client,
                url: c.webhook.url.clone(),
            }));
        }
        Ok(out)
    }

    /// The outbox row for `m`: written by the caller in the transaction of the state
    /// change that causes it.
    pub fn outbox(&self, m: &Message, alert_event_id: Option<&str>) -> OutboxItem {
        OutboxItem {
            id: m.id.clone(),
            created_at: m.at,
            kind: m.kind.as_str().into(),
            title: m.title.clone(),
            message: serde_json::to_string(m).expect("a message serializes"),
            alert_event_id: alert_event_id.map(str::to_owned),
            sinks: self.sinks.clone(),
        }
    }

    /// Writes `m` to the outbox now (right after the state change it announces, so a
    /// crash can lose it only in between); queues it when the database is away.
    pub async fn send_now(&self, m: Message) {
        let item = self.outbox(&m, None);
        match self
            .store
            .insert_notifications(std::slice::from_ref(&item))
            .await
        {
            Ok(()) => self.written(),
            Err(e) => {
                tracing::debug!(error = %e, "Cannot write a notification yet; queued.");
                let _ = self.queue.send(item);
            }
        }
    }

    /// Tells the senders that something was written.
    pub fn written(&self) {
        self.written.notify_waiters();
    }

    /// Counts a suppressed alert under its root cause, for the next summary.
    pub fn suppressed(&self, root: &str, alert: &str) {
        let mut s = self.suppressed.lock().expect("not poisoned");
        let entry = s.by_root.entry(root.to_owned()).or_default();
        entry.0 += 1;
        if entry.1.len() < 10 && !entry.1.iter().any(|a| a == alert) {
            entry.1.push(alert.to_owned());
        }
    }

    /// A link to a page of the API, when `server.external_url` is set.
    pub fn link(&self, path: &str) -> Option<String> {
        (!self.external_url.is_empty()).then(|| format!("{}{path}", self.external_url))
    }

    fn take_summaries(&self) -> Vec<Message> {
        let by_root = std::mem::take(&mut self.suppressed.lock().expect("not poisoned").by_root);
        by_root
            .into_iter()
            .map(|(root, (n, names))| {
                Message::new(
                    Kind::Suppressed,
                    format!("{n} alert(s) suppressed: {root}"),
                    format!(
                        "Held back while {root} is in effect: {}{}",
                        names.join(", "),
                        if n as usize > names.len() { " …" } else { "" }
                    ),
                )
            })
            .collect()
    }
}

/// Folds several messages into one.
pub fn digest(mut batch: Vec<Message>) -> Message {
    if batch.len() == 1 {
        return batch.pop().expect("one");
    }
    // The same batch resent after a crash keeps its id.
    let id = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for b in &batch {
            h.update(b.id.as_bytes());
        }
        let d = h.finalize();
        format!(
            "digest-{}",
            d[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    let mut m = Message::new(
        Kind::Digest,
        format!("Jarvis: {} updates", batch.len()),
        String::new(),
    );
    let mut body = String::new();
    for b in batch.iter().take(50) {
        body.push_str(&format!("• {}\n", b.title));
    }
    if batch.len() > 50 {
        body.push_str(&format!("… and {} more\n", batch.len() - 50));
    }
    m.id = id;
    m.carries = batch.iter().map(|b| b.id.clone()).collect();
    m.body = body;
    m.fields = batch
        .iter()
        .filter(|b| matches!(b.kind, Kind::Escalated | Kind::ApprovalNeeded))
        .take(10)
        .map(|b| (b.title.clone(), b.body.clone()))
        .collect();
    m
}

/// Writes queued messages and the suppression summaries to the outbox, retrying
/// while the database is away.
async fn write_loop(
    me: Arc<Notifications>,
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<OutboxItem>,
    summary_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut summary_at = tokio::time::Instant::now() + summary_interval;
    let mut batch: Vec<OutboxItem> = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            item = rx.recv(), if batch.is_empty() => match item {
                Some(i) => batch.push(i),
                None => break,
            },
            _ = tokio::time::sleep_until(summary_at) => {
                batch.extend(me.take_summaries().iter().map(|m| me.outbox(m, None)));
                summary_at = tokio::time::Instant::now() + summary_interval;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)), if !batch.is_empty() => {}
        }
        while let Ok(i) = rx.try_recv() {
            batch.push(i);
        }
        if batch.is_empty() {
            continue;
        }
        match store.insert_notifications(&batch).await {
            Ok(()) => {
                batch.clear();
                me.written();
            }
            Err(e) => {
                tracing::warn!(error = %e, queued = batch.len(), "Cannot write notifications yet; retrying.")
            }
        }
    }
    // Last words: what is queued, and the summaries, once.
    while let Ok(i) = rx.try_recv() {
        batch.push(i);
    }
    batch.extend(me.take_summaries().iter().map(|m| me.outbox(m, None)));
    if !batch.is_empty() {
        match tokio::time::timeout(Duration::from_secs(5), store.insert_notifications(&batch)).await
        {
            Ok(Ok(())) => me.written(),
            _ => tracing::warn!(
                lost = batch.len(),
                "Notifications queued at shutdown could not be written."
            ),
        }
    }
}

/// Sends one sink's due deliveries while this replica holds the sink's lease.
async fn send_loop(
    me: Arc<Notifications>,
    store: Arc<dyn Store>,
    sink: Arc<dyn Notifier>,
    pacing: Pacing,
    metrics: Arc<Metrics>,
    owner: String,
    shutdown: CancellationToken,
) {
    let name = sink.name();
    let lease_ms = i64::try_from(SINK_LEASE.as_millis()).unwrap_or(60_000);
    let mut bucket = Bucket::new(&pacing, tokio::time::Instant::now());
    // Renewed when half of it is gone (a send lasts at most the HTTP timeout, 15 s,
    // far less than the lease).
    let mut leased_until = 0i64;
    // A 429 pauses the whole sink, not only the messages that got it.
    let mut paused_until = tokio::time::Instant::now();
    let max_age = i64::try_from(MAX_AGE.as_millis()).unwrap_or(i64::MAX);
    let mut expired_at = tokio::time::Instant::now() - Duration::from_secs(3600);
    loop {
        let written = me.written.notified();
        tokio::pin!(written);
        written.as_mut().enable();
        if shutdown.is_cancelled() {
            break;
        }
        let now = tokio::time::Instant::now();
        bucket.refill(&pacing, now);
        let mut wait = POLL;
        let leased = if now_ms() < leased_until - lease_ms / 2 {
            Ok(true)
        } else {
            store.lease_sink(name, &owner, now_ms(), lease_ms).await
        };
        match leased {
            Ok(true) if now < paused_until => {
                leased_until = leased_until.max(now_ms());
                wait = paused_until - now;
            }
            Ok(true) if bucket.tokens >= 1.0 => {
                if leased_until < now_ms() + lease_ms / 2 {
                    leased_until = now_ms() + lease_ms;
                }
                if now.duration_since(expired_at) > Duration::from_secs(60) {
                    expired_at = now;
                    match store.expire_deliveries(name, now_ms() - max_age).await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(
                            sink = name,
                            expired = n,
                            "Notifications older than a day were never delivered; no longer sending them."
                        ),
                        Err(e) => {
                            tracing::debug!(error = %e, "Cannot expire old notifications yet.")
                        }
                    }
                }
                match store.due_deliveries(name, now_ms(), 50).await {
                    Ok(due) if !due.is_empty() => {
                        bucket.tokens -= 1.0;
                        if let Some(d) = send_batch(&*store, &*sink, due, &metrics).await {
                            paused_until = tokio::time::Instant::now() + d;
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, sink = name, "Cannot read the outbox yet.")
                    }
                }
            }
            Ok(true) => wait = bucket.wait(&pacing),
            Ok(false) => leased_until = 0, // another replica sends to this sink
            Err(e) => {
                leased_until = 0;
                tracing::debug!(error = %e, sink = name, "Cannot take the sink's lease yet.");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = written => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Last words: what is due goes out once, quickly, whatever the pacing; then the
    // sink is free for another replica at once.
    let last = async {
        if let Ok(true) = store.lease_sink(name, &owner, now_ms(), lease_ms).await
            && let Ok(due) = store.due_deliveries(name, now_ms(), 50).await
            && !due.is_empty()
        {
            send_batch(&*store, &*sink, due, &metrics).await;
        }
        let _ = store.release_sink(name, &owner).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), last).await;
}

/// Sends due deliveries as one message (a digest when several) and records how it
/// went. `Some(wait)`: the sink asked to be left alone that long (a 429).
async fn send_batch(
    store: &dyn Store,
    sink: &dyn Notifier,
    due: Vec<DueDelivery>,
    metrics: &Metrics,
) -> Option<Duration> {
    let name = sink.name();
    let record = |r: Result<(), crate::store::StoreError>| {
        if let Err(e) = r {
            tracing::warn!(error = %e, sink = name, "Cannot record a notification's delivery; it may be sent again.");
        }
    };
    let (mut ids, mut messages, mut unreadable) = (Vec::new(), Vec::new(), Vec::new());
    // The backoff follows the newest member's tries, so a fresh notification that
    // joins an old one's batch is not held back by the old one's count.
    let mut tries = i64::MAX;
    for d in due {
        match serde_json::from_str::<Message>(&d.message) {
            Ok(m) => {
                tries = tries.min(d.attempts + 1);
                ids.push(d.id);
                messages.push(m);
            }
            Err(_) => unreadable.push(d.id),
        }
    }
    if !unreadable.is_empty() {
        tracing::warn!(sink = name, ids = ?unreadable, "Stored notifications cannot be read; marking them failed.");
        record(
            store
                .mark_retry(name, &unreadable, None, "cannot be read", true, TRIES)
                .await,
        );
    }
    if messages.is_empty() {
        return None;
    }
    let m = digest(messages);
    let retry_at = |d: Duration| now_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match sink.send(&m).await {
        Ok(()) => {
            NotificationDelivered {
                sink: name,
                id: &m.id,
                carried: ids.len(),
                failed: None,
            }
            .emit(metrics);
            record(store.mark_delivered(name, &ids, now_ms()).await);
            None
        }
        Err(SendError::RetryAfter(d)) => {
            let d = d.min(LONGEST_WAIT);
            tracing::debug!(sink = name, wait = ?d, "Sink rate limited; pausing it for its wait.");
            record(
                store
                    .mark_retry(name, &ids, Some(retry_at(d)), "rate limited", false, TRIES)
                    .await,
            );
            Some(d)
        }
        Err(SendError::Transient(e)) => {
            tracing::debug!(sink = name, error = %e, "Notification failed; retrying.");
            // Each delivery counts its own tries (in the store): a digest's members may
            // be new.
            let at = retry_at(backoff(tries));
            record(
                store
                    .mark_retry(name, &ids, Some(at), &e, true, TRIES)
                    .await,
            );
            None
        }
        Err(e) => {
            let why = e.to_string();
            NotificationDelivered {
                sink: name,
                id: &m.id,
                carried: ids.len(),
                failed: Some(&why),
            }
            .emit(metrics);
            record(store.mark_retry(name, &ids, None, &why, true, TRIES).await);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_of_one_is_that_message() {
        let m = Message::new(Kind::Fixed, "fixed", "ok");
        assert_eq!(digest(vec![m.clone()]), m);
        let e = Message::new(Kind::Escalated, "esc", "why");
        let d = digest(vec![m.clone(), e.clone()]);
        assert_eq!(d.kind, Kind::Digest);
        assert!(d.body.contains("• fixed") && d.body.contains("• esc"));
        assert_eq!(d.fields, vec![("esc".to_owned(), "why".to_owned())]);
        // It says what it carries, and the same batch keeps its id.
        assert_eq!(d.carries, [m.id.clone(), e.id.clone()]);
        assert_eq!(digest(vec![m.clone(), e.clone()]).id, d.id);
        assert_ne!(digest(vec![e, m]).id, d.id);
    }
}
