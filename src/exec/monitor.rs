//! Host availability. A host goes offline after three consecutive connection
//! failures (from commands or probes) and back online on the first success. Offline
//! hosts are probed every five minutes; the pipeline suppresses alerts for them.
//!
//! The transitions are a pure state machine ([`HostHealth::observe`]); the monitor
//! wraps it with a lock, the probe loop, the status log and the `jarvis_host_up` metric.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::domain::ids::now_ms;

/// Consecutive connection failures that make a host offline.
pub const FAILURES_TO_OFFLINE: u32 = 3;
/// How often offline hosts are probed.
pub const OFFLINE_PROBE_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Not yet known (before the first probe or command).
    Checking,
    Online,
    Offline,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checking => "checking",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// One host's availability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostHealth {
    pub status: HostState,
    pub consecutive_failures: u32,
    /// Epoch ms of the last status change.
    pub last_change: i64,
    pub last_error: Option<String>,
}

/// A change worth logging and notifying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub host: String,
    pub from: HostState,
    pub to: HostState,
    pub reason: String,
    pub at: i64,
}

impl HostHealth {
    pub fn new(now: i64) -> Self {
        Self {
            status: HostState::Checking,
            consecutive_failures: 0,
            last_change: now,
            last_error: None,
        }
    }

    /// Records one connection attempt's outcome; returns the new state if it changed.
    pub fn observe(&mut self, ok: Result<(), &str>, now: i64) -> Option<HostState> {
        let next = match ok {
            Ok(()) => {
                self.consecutive_failures = 0;
                self.last_error = None;
                HostState::Online
            }
            Err(e) => {
                self.consecutive_failures += 1;
                self.last_error = Some(e.to_owned());
                if self.consecutive_failures >= FAILURES_TO_OFFLINE {
                    HostState::Offline
                } else {
                    self.status
                }
            }
        };
        (next != self.status).then(|| {
            self.status = next;
            self.last_change = now;
            next
        })
    }
}

/// Shared host availability for the API, the pipeline and the probe loop.
pub struct HostMonitor {
    health: RwLock<BTreeMap<String, HostHealth>>,
    metrics: Arc<crate::metrics::Metrics>,
    store: Arc<dyn crate::store::Store>,
    /// Set once the notifier exists (it is built after the monitor).
    notify: std::sync::OnceLock<Arc<crate::notify::Notifications>>,
}

impl HostMonitor {
    pub fn set_notifications(&self, n: Arc<crate::notify::Notifications>) {
        let _ = self.notify.set(n);
    }

    pub fn new(
        hosts: &[String],
        metrics: Arc<crate::metrics::Metrics>,
        store: Arc<dyn crate::store::Store>,
    ) -> Self {
        let now = now_ms();
        Self {
            health: RwLock::new(
                hosts
                    .iter()
                    .map(|h| (h.clone(), HostHealth::new(now)))
                    .collect(),
            ),
            metrics,
            store,
            notify: std::sync::OnceLock::new(),
        }
    }

    /// Takes what other replicas decided (called by the probe loop every second).
    pub async fn refresh(&self) {
        let Ok(stored) = self.store.hosts_health().await else {
            return;
        };
        let mut map = self.health.write().expect("not poisoned");
        for (host, h) in stored {
            if let Some(mine) = map.get_mut(&host) {
                if mine.status != h.status {
                    self.metrics
                        .set_host_up(&host, h.status == HostState::Online);
                }
                *mine = h;
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, HostHealth> {
        self.health.read().expect("not poisoned").clone()
    }

    pub fn state(&self, host: &str) -> Option<HostState> {
        self.health
            .read()
            .expect("not poisoned")
            .get(host)
            .map(|h| h.status)
    }

    /// Records the outcome of a connection to `host` (a probe, or a command's connect).
    /// The state is decided in the database, so replicas agree on it and a change is
    /// announced once, by the replica that makes it; with the database away, this
    /// replica decides alone.
    pub async fn observe(&self, host: &str, ok: Result<(), &str>) -> Option<Transition> {
        let now = now_ms();
        // A success on a host known online with no failures changes nothing: no write
        // on every command's connect.
        let unchanged = ok.is_ok()
            && self
                .health
                .read()
                .expect("not poisoned")
                .get(host)
                .is_some_and(|h| h.status == HostState::Online && h.consecutive_failures == 0);
        if unchanged {
            return None;
        }
        let shared = self.store.observe_host(host, ok, now).await;
        let transition = {
            let mut map = self.health.write().expect("not poisoned");
            let h = map
                .entry(host.to_owned())
                .or_insert_with(|| HostHealth::new(now));
            let changed = match shared {
                Ok((stored, changed)) => {
                    *h = stored;
                    changed.map(|from| (from, h.status))
                }
                Err(e) => {
                    tracing::debug!(error = %e, host, "Cannot share host health; deciding locally.");
                    let from = h.status;
                    h.observe(ok, now).map(|to| (from, to))
                }
            };
            changed.map(|(from, to)| Transition {
                host: host.to_owned(),
                from,
                to,
                reason: match (to, &h.last_error) {
                    (HostState::Offline, Some(e)) => {
                        format!("{FAILURES_TO_OFFLINE} consecutive connection failures; last: {e}")
                    }
                    _ => "connected".to_owned(),
                },
                at: now,
            })
        };
        if let Some(t) = &transition {
            crate::events::HostStateChanged {
                host: &t.host,
                to: t.to,
                reason: &t.reason,
            }
            .emit(&self.metrics);
            // From `checking` to online is start-up, not news.
            if let Some(n) = self.notify.get()
                && !(t.from == HostState::Checking && t.to == HostState::Online)
            {
                use crate::notify::{Kind, Message};
                let (kind, word) = match t.to {
                    HostState::Offline => (Kind::HostOffline, "offline"),
                    _ => (Kind::HostOnline, "back online"),
                };
                n.send_now(Message::new(
                    kind,
                    format!("Host {} is {word}", t.host),
                    t.reason.clone(),
                ))
                .await;
            }
            if let Err(e) = self
                .store
                .insert_host_status(&t.host, t.to.as_str(), &t.reason, t.at)
                .await
            {
                tracing::warn!(error = %e, "Cannot write host_status_log.");
            }
        }
        transition
    }
}

/// Probes every host at start, then online hosts every `online_every`, offline ones
/// every `offline_every` (five minutes by default), unknown ones every 30 s.
pub async fn run_probes(
    monitor: Arc<HostMonitor>,
    executor: Arc<super::ssh::SshExecutor>,
    shutdown: CancellationToken,
    online_every: Duration,
    offline_every: Duration,
) {
    let mut last_probe: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
    loop {
        monitor.refresh().await;
        let now = tokio::time::Instant::now();
        for (host, health) in monitor.snapshot() {
            let every = match health.status {
                HostState::Offline => offline_every,
                HostState::Checking => Duration::from_secs(30).min(online_every),
                HostState::Online if executor.is_local(&host) => continue,
                HostState::Online => online_every,
            };
            if last_probe
                .get(&host)
                .is_some_and(|t| now.duration_since(*t) < every)
            {
                continue;
            }
            last_probe.insert(host.clone(), now);
            let result = executor.probe(&host).await.map_err(|e| e.to_string());
            monitor
                .observe(&host, result.as_ref().map(|_| ()).map_err(String::as_str))
                .await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1).min(offline_every).min(online_every)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_make_a_host_offline_and_one_success_brings_it_back() {
        let mut h = HostHealth::new(0);
        assert_eq!(h.observe(Ok(()), 1), Some(HostState::Online));
        assert_eq!(h.observe(Ok(()), 2), None);
        assert_eq!(h.observe(Err("refused"), 3), None);
        assert_eq!(h.observe(Err("refused"), 4), None);
        assert_eq!(h.status, HostState::Online);
        assert_eq!(h.observe(Err("refused"), 5), Some(HostState::Offline));
        assert_eq!(
            (
                h.consecutive_failures,
                h.last_change,
                h.last_error.as_deref()
            ),
            (3, 5, Some("refused"))
        );
        assert_eq!(h.observe(Err("refused"), 6), None);
        assert_eq!(h.observe(Ok(()), 7), Some(HostState::Online));
        assert_eq!((h.consecutive_failures, h.last_error.as_deref()), (0, None));
        // A success in between resets the count.
        h.observe(Err("x"), 8);
        h.observe(Err("x"), 9);
        h.observe(Ok(()), 10);
        h.observe(Err("x"), 11);
        h.observe(Err("x"), 12);
        assert_eq!(h.status, HostState::Online);
        // From `checking`, three failures go straight to offline.
        let mut c = HostHealth::new(0);
        c.observe(Err("x"), 1);
        c.observe(Err("x"), 2);
        assert_eq!(c.observe(Err("x"), 3), Some(HostState::Offline));
    }
}
