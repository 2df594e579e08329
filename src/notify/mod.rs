//! Telling people: fixed, failed, escalated, approval needed, host offline/online,
//! maintenance. Behind the [`Notifier`] trait (Discord, ntfy, Slack, generic webhook).
//!
//! Nothing here may slow remediation: callers hand a message to an unbounded queue and
//! return. One task sends, so a storm cannot fan out into a storm of messages:
//! - sends are paced by a token bucket (`burst` at once, then one per `min_interval`);
//!   whatever queues up meanwhile goes out as one digest;
//! - suppressed alerts are never announced one by one: they are counted per root cause
//!   and summarised every `summary_interval`.
//!
//! A sink that is down is retried a few times (honouring 429 `retry_after`), then the
//! message is dropped for that sink, logged and counted. Remediation never waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::NotifyConfig;
use crate::metrics::Metrics;

pub mod sinks;

/// What a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub kind: Kind,
    pub title: String,
    pub body: String,
    /// Name → value, shown as fields where the sink has them.
    pub fields: Vec<(String, String)>,
    /// A link into Jarvis (built from `server.external_url`).
    pub url: Option<String>,
    /// Epoch milliseconds.
    pub at: i64,
}

impl Message {
    pub fn new(kind: Kind, title: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            kind,
            title: title.into(),
            body: body.into(),
            fields: Vec::new(),
            url: None,
            at: crate::domain::ids::now_ms(),
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

/// Sends to one sink with bounded retries.
async fn deliver(sink: &dyn Notifier, m: &Message, metrics: &Metrics) {
    const TRIES: u32 = 4;
    const LONGEST_WAIT: Duration = Duration::from_secs(60);
    for attempt in 1..=TRIES {
        let wait = match sink.send(m).await {
            Ok(()) => {
                metrics.notification(sink.name(), true);
                return;
            }
            Err(SendError::Failed(e)) => {
                tracing::warn!(sink = sink.name(), error = %e, "Notification refused; not retrying (check the sink's URL).");
                break;
            }
            Err(SendError::RetryAfter(d)) => d.min(LONGEST_WAIT),
            Err(SendError::Transient(e)) => {
                tracing::debug!(sink = sink.name(), error = %e, attempt, "Notification failed; retrying.");
                Duration::from_millis(500 * 2u64.pow(attempt))
            }
        };
        if attempt < TRIES {
            tokio::time::sleep(wait).await;
        } else {
            tracing::warn!(
                sink = sink.name(),
                "Notification dropped after {TRIES} tries."
            );
        }
    }
    metrics.notification(sink.name(), false);
}

/// How the dispatcher paces itself.
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

#[derive(Default)]
struct SuppressedCounts {
    /// Root cause → (how many, a few of the alerts' names).
    by_root: BTreeMap<String, (u64, Vec<String>)>,
}

/// The front door: cheap to call from anywhere, never blocks.
pub struct Notifications {
    tx: mpsc::UnboundedSender<Message>,
    suppressed: Mutex<SuppressedCounts>,
    /// Messages handed to the sinks (after folding); for tests and benchmarks.
    sent: AtomicU64,
    external_url: String,
    enabled: bool,
}

impl Notifications {
    /// Builds the dispatcher and its sending task.
    pub fn start(
        sinks: Vec<Arc<dyn Notifier>>,
        pacing: Pacing,
        external_url: &str,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = Arc::new(Self {
            tx,
            suppressed: Mutex::new(SuppressedCounts::default()),
            sent: AtomicU64::new(0),
            external_url: external_url.trim_end_matches('/').to_owned(),
            enabled: !sinks.is_empty(),
        });
        let task = tokio::spawn(run(me.clone(), rx, sinks, pacing, metrics, shutdown));
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

    pub fn send(&self, m: Message) {
        if self.enabled {
            let _ = self.tx.send(m);
        }
    }

    /// Counts a suppressed alert under its root cause, for the next summary.
    pub fn suppressed(&self, root: &str, alert: &str) {
        if !self.enabled {
            return;
        }
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

    /// Messages sent so far (each digest counts once).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
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
    m.body = body;
    m.fields = batch
        .iter()
        .filter(|b| matches!(b.kind, Kind::Escalated | Kind::ApprovalNeeded))
        .take(10)
        .map(|b| (b.title.clone(), b.body.clone()))
        .collect();
    m
}

async fn run(
    me: Arc<Notifications>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    sinks: Vec<Arc<dyn Notifier>>,
    pacing: Pacing,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tokens = f64::from(pacing.burst);
    let mut last_refill = tokio::time::Instant::now();
    let mut summary_at = tokio::time::Instant::now() + pacing.summary_interval;
    let mut pending: Vec<Message> = Vec::new();
    loop {
        // Refill the bucket.
        let now = tokio::time::Instant::now();
        if !pacing.min_interval.is_zero() {
            let earned =
                now.duration_since(last_refill).as_secs_f64() / pacing.min_interval.as_secs_f64();
            tokens = (tokens + earned).min(f64::from(pacing.burst));
        } else {
            tokens = f64::from(pacing.burst);
        }
        last_refill = now;
        if now >= summary_at {
            pending.extend(me.take_summaries());
            summary_at = now + pacing.summary_interval;
        }
        while let Ok(m) = rx.try_recv() {
            pending.push(m);
        }
        if !pending.is_empty() && tokens >= 1.0 {
            tokens -= 1.0;
            let m = digest(std::mem::take(&mut pending));
            me.sent.fetch_add(1, Ordering::Relaxed);
            deliver_all(&sinks, &m, &metrics).await;
            continue;
        }
        let wait_token = if pending.is_empty() {
            Duration::from_secs(3600)
        } else {
            pacing
                .min_interval
                .mul_f64((1.0 - tokens).max(0.0))
                .max(Duration::from_millis(10))
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv(), if pending.is_empty() => match m {
                Some(m) => pending.push(m),
                None => break,
            },
            _ = tokio::time::sleep(wait_token) => {}
            _ = tokio::time::sleep_until(summary_at) => {}
        }
    }
    // Last words: whatever is queued goes out once, quickly.
    while let Ok(m) = rx.try_recv() {
        pending.push(m);
    }
    pending.extend(me.take_summaries());
    if !pending.is_empty() {
        let m = digest(pending);
        me.sent.fetch_add(1, Ordering::Relaxed);
        let _ =
            tokio::time::timeout(Duration::from_secs(5), deliver_all(&sinks, &m, &metrics)).await;
    }
}

/// Sends one message to every sink, one sink after another.
async fn deliver_all(sinks: &[Arc<dyn Notifier>], m: &Message, metrics: &Metrics) {
    for s in sinks {
        deliver(&**s, m, metrics).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_of_one_is_that_message() {
        let m = Message::new(Kind::Fixed, "fixed", "ok");
        assert_eq!(digest(vec![m.clone()]), m);
        let d = digest(vec![m.clone(), Message::new(Kind::Escalated, "esc", "why")]);
        assert_eq!(d.kind, Kind::Digest);
        assert!(d.body.contains("• fixed") && d.body.contains("• esc"));
        assert_eq!(d.fields, vec![("esc".to_owned(), "why".to_owned())]);
    }
}
