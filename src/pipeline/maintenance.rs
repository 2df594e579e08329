//! Maintenance windows: while one is active (globally, or for an alert's host), alerts
//! are suppressed and nothing runs. Windows have a duration and end by themselves;
//! with `[alertmanager] url` set, each window also gets an Alertmanager silence that
//! is expired with it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, HostConfig};
use crate::domain::ids::{new_id, now_ms};
use crate::integrations::alertmanager::{Alertmanager, Matcher, glob_regex, regex_escape};
use crate::notify::{Kind, Message, Notifications};
use crate::store::{MaintenanceRow, Store, StoreError};

/// Longest window one request may open (a week), so a typo cannot mute Jarvis forever.
pub const MAX_DURATION_MINUTES: u64 = 7 * 24 * 60;

pub struct Maintenance {
    store: Arc<dyn Store>,
    hosts: Vec<HostConfig>,
    alertmanager: Option<Alertmanager>,
    notify: Arc<Notifications>,
}

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Silence matchers for a window: every alert, or the host's alerts (by `instance`
/// against its match_instances, name, aliases and address).
pub fn silence_matchers(host: Option<&HostConfig>) -> Vec<Matcher> {
    let Some(h) = host else {
        return vec![Matcher {
            name: "alertname".into(),
            value: ".+".into(),
            is_regex: true,
        }];
    };
    let mut alternatives: Vec<String> = h.match_instances.iter().map(|g| glob_regex(g)).collect();
    for name in std::iter::once(&h.name)
        .chain(h.aliases.iter())
        .chain(std::iter::once(&h.address))
        .filter(|n| !n.is_empty())
    {
        alternatives.push(format!("{}(:.*)?", regex_escape(name)));
    }
    alternatives.dedup();
    vec![Matcher {
        name: "instance".into(),
        value: alternatives.join("|"),
        is_regex: true,
    }]
}

impl Maintenance {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        notify: Arc<Notifications>,
    ) -> anyhow::Result<Self> {
        let alertmanager = if config.alertmanager.url.is_empty() {
            None
        } else {
            Some(Alertmanager::new(
                &config.alertmanager.url,
                Duration::from_secs(10),
            )?)
        };
        Ok(Self {
            store,
            hosts: config.hosts.clone(),
            alertmanager,
            notify,
        })
    }

    fn host(&self, name: &str) -> Option<&HostConfig> {
        self.hosts
            .iter()
            .find(|h| h.name == name || h.aliases.iter().any(|a| a == name))
    }

    /// Opens a window. `host`: a configured host (or alias); `None`: everything.
    pub async fn start(
        &self,
        host: Option<&str>,
        reason: &str,
        created_by: &str,
        duration_minutes: u64,
    ) -> Result<MaintenanceRow, MaintenanceError> {
        if duration_minutes == 0 || duration_minutes > MAX_DURATION_MINUTES {
            return Err(MaintenanceError::Invalid(format!(
                "duration_minutes must be between 1 and {MAX_DURATION_MINUTES}, got {duration_minutes}"
            )));
        }
        let host_cfg = match host {
            Some(h) => Some(self.host(h).ok_or_else(|| {
                let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
                MaintenanceError::Invalid(format!(
                    "unknown host {h:?}; configured hosts: {}",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ))
            })?),
            None => None,
        };
        let now = now_ms();
        let row = MaintenanceRow {
            id: new_id(),
            host: host_cfg.map(|h| h.name.clone()),
            reason: reason.to_owned(),
            created_by: created_by.to_owned(),
            starts_at: now,
            ends_at: now + i64::try_from(duration_minutes * 60_000).unwrap_or(i64::MAX),
            ended_at: None,
            silence_id: None,
        };
        self.store.insert_maintenance(&row).await?;
        let mut row = row;
        if let Some(am) = &self.alertmanager {
            let comment = format!("Jarvis maintenance window {}: {reason}", row.id);
            match am
                .create_silence(
                    &silence_matchers(host_cfg),
                    row.starts_at,
                    row.ends_at,
                    created_by,
                    &comment,
                )
                .await
            {
                Ok(id) => {
                    self.store.set_silence_id(&row.id, &id).await?;
                    row.silence_id = Some(id);
                }
                // The window itself works without the silence; say so and carry on.
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot create the Alertmanager silence for a maintenance window.")
                }
            }
        }
        tracing::info!(window = %row.id, host = row.host.as_deref().unwrap_or("all"), minutes = duration_minutes, "Maintenance started.");
        self.notify
            .send_now(
                Message::new(
                    Kind::MaintenanceStarted,
                    format!(
                        "Maintenance started: {}",
                        row.host.as_deref().unwrap_or("all hosts")
                    ),
                    format!(
                        "For {duration_minutes} min by {}: {reason}",
                        if created_by.is_empty() {
                            "unknown"
                        } else {
                            created_by
                        }
                    ),
                )
                .url(self.notify.link("/maintenance/status")),
            )
            .await;
        Ok(row)
    }

    /// Ends active windows for `host` (all windows when `None`).
    pub async fn end(&self, host: Option<&str>) -> Result<Vec<MaintenanceRow>, MaintenanceError> {
        let selector = match host {
            Some(h) => Some(Some(self.host(h).map(|c| c.name.as_str()).unwrap_or(h))),
            None => None,
        };
        let ended = self.store.end_maintenance(selector, now_ms()).await?;
        self.after_end(&ended, "ended").await;
        Ok(ended)
    }

    pub async fn active(&self) -> Result<Vec<MaintenanceRow>, StoreError> {
        self.store.active_maintenance(now_ms()).await
    }

    /// The window covering `host` (or every host) now, if any.
    pub async fn covering(&self, host: Option<&str>) -> Result<Option<MaintenanceRow>, StoreError> {
        Ok(self
            .active()
            .await?
            .into_iter()
            .find(|w| w.host.is_none() || w.host.as_deref() == host))
    }

    async fn after_end(&self, ended: &[MaintenanceRow], how: &str) {
        for w in ended {
            if let (Some(am), Some(id)) = (&self.alertmanager, &w.silence_id)
                && let Err(e) = am.expire_silence(id).await
            {
                tracing::warn!(error = %e, "Cannot expire the Alertmanager silence of a maintenance window.");
            }
            tracing::info!(window = %w.id, host = w.host.as_deref().unwrap_or("all"), "Maintenance {how}.");
            self.notify
                .send_now(Message::new(
                    Kind::MaintenanceEnded,
                    format!(
                        "Maintenance {how}: {}",
                        w.host.as_deref().unwrap_or("all hosts")
                    ),
                    w.reason.clone(),
                ))
                .await;
        }
    }

    /// Ends windows whose time is up, every few seconds.
    pub async fn run_expiry(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            match self.store.expire_maintenance(now_ms()).await {
                Ok(ended) => self.after_end(&ended, "expired").await,
                Err(e) => tracing::debug!(error = %e, "Cannot expire maintenance windows yet."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_silences_match_the_hosts_instances() {
        let h = HostConfig {
            name: "nexus".into(),
            address: "192.168.0.11".into(),
            match_instances: vec!["192.168.0.11:*".into()],
            aliases: vec!["nexus.lan".into()],
            ..HostConfig::default()
        };
        let m = silence_matchers(Some(&h));
        assert_eq!(m[0].name, "instance");
        assert_eq!(
            m[0].value,
            r"192\.168\.0\.11:.*|nexus(:.*)?|nexus\.lan(:.*)?|192\.168\.0\.11(:.*)?"
        );
        assert_eq!(silence_matchers(None)[0].value, ".+");
    }
}
