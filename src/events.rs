//! Telemetry as named events (in the style of vector's internal events): each thing
//! worth telling an operator is one type whose `emit` logs it once and updates its
//! metrics, so a log line and its counter cannot drift apart and there is one place to
//! read what Jarvis reports about, say, a suppressed alert. Every log line carries
//! `event = "<Name>"`, so logs can be filtered by event.

use crate::exec::monitor::HostState;
use crate::metrics::{Metrics, RemediationStatus};
use crate::safety::{Source, Verdict};

/// The safety gate judged a command.
pub struct CommandJudged<'a> {
    pub host: &'a str,
    pub source: Source,
    pub verdict: Verdict,
    pub rule: &'a str,
}

impl CommandJudged<'_> {
    pub fn emit(self, metrics: Option<&Metrics>) {
        tracing::info!(event = "CommandJudged", host = %self.host, source = self.source.as_str(), verdict = %self.verdict, rule = %self.rule, "Command judged.");
        if let Some(m) = metrics {
            m.command_judged(self.verdict, self.source);
        }
    }
}

/// How an alert's remediation ended (for the alerts that reached remediation or
/// were deduplicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Fixed,
    Escalated,
    Deduplicated,
}

/// An alert's handling ended.
pub struct RemediationFinished<'a> {
    pub alert: &'a str,
    pub fingerprint: &'a str,
    pub ending: Ending,
    pub reason: &'a str,
}

impl RemediationFinished<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let status = match self.ending {
            Ending::Fixed => {
                tracing::info!(event = "RemediationFinished", alert = %self.alert, fingerprint = %self.fingerprint, ending = "fixed", reason = %self.reason, "Alert fixed.");
                RemediationStatus::Success
            }
            Ending::Escalated => {
                tracing::warn!(event = "RemediationFinished", alert = %self.alert, fingerprint = %self.fingerprint, ending = "escalated", reason = %self.reason, "Escalated to a person.");
                RemediationStatus::Escalated
            }
            Ending::Deduplicated => {
                tracing::info!(event = "RemediationFinished", alert = %self.alert, fingerprint = %self.fingerprint, ending = "deduplicated", reason = %self.reason, "Alert deduplicated.");
                RemediationStatus::Skipped
            }
        };
        metrics.remediation(self.alert, status);
    }
}

/// One attempt at a fix failed; another may follow.
pub struct AttemptFailed<'a> {
    pub alert: &'a str,
    pub reason: &'a str,
}

impl AttemptFailed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        tracing::info!(event = "AttemptFailed", alert = %self.alert, reason = %self.reason, "Remediation attempt failed.");
        metrics.remediation(self.alert, RemediationStatus::Failure);
    }
}

/// An alert was held back (maintenance, host offline, a cascade, a cooldown).
pub struct AlertSuppressed<'a> {
    pub alert: &'a str,
    pub reason: &'a str,
}

impl AlertSuppressed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        tracing::info!(event = "AlertSuppressed", alert = %self.alert, reason = %self.reason, "Alert suppressed.");
        metrics.alert_suppressed(self.reason);
        metrics.remediation(self.alert, RemediationStatus::Skipped);
    }
}

/// A notification (or a digest of several) reached a sink, or was given up on.
pub struct NotificationDelivered<'a> {
    pub sink: &'static str,
    pub id: &'a str,
    /// Notifications the message carried (a digest carries several).
    pub carried: usize,
    /// `None`: delivered; `Some(why)`: given up (marked failed).
    pub failed: Option<&'a str>,
}

impl NotificationDelivered<'_> {
    pub fn emit(self, metrics: &Metrics) {
        match self.failed {
            None => {
                tracing::debug!(event = "NotificationDelivered", sink = self.sink, id = %self.id, carried = self.carried, "Notification delivered.");
            }
            Some(why) => {
                tracing::warn!(event = "NotificationDelivered", sink = self.sink, id = %self.id, carried = self.carried, error = %why, "Notification not delivered; marked failed (check the sink's URL).");
            }
        }
        metrics.notification(self.sink, self.failed.is_none());
    }
}

/// A host went online or offline.
pub struct HostStateChanged<'a> {
    pub host: &'a str,
    pub to: HostState,
    pub reason: &'a str,
}

impl HostStateChanged<'_> {
    pub fn emit(self, metrics: &Metrics) {
        match self.to {
            HostState::Offline => {
                tracing::error!(event = "HostStateChanged", host = %self.host, to = "offline", reason = %self.reason, "Host offline; its alerts are suppressed until it answers.")
            }
            _ => {
                tracing::info!(event = "HostStateChanged", host = %self.host, to = self.to.as_str(), "Host online.")
            }
        }
        metrics.set_host_up(self.host, self.to == HostState::Online);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(metrics: &Metrics, line: &str) -> bool {
        metrics.encode().lines().any(|l| l == line)
    }

    #[test]
    fn each_event_updates_its_metrics() {
        let m = Metrics::new();
        CommandJudged {
            host: "h",
            source: Source::Llm,
            verdict: Verdict::Blocked,
            rule: "r",
        }
        .emit(Some(&m));
        assert!(has(
            &m,
            "jarvis_commands_total{verdict=\"blocked\",source=\"llm\"} 1"
        ));
        RemediationFinished {
            alert: "A",
            fingerprint: "f",
            ending: Ending::Escalated,
            reason: "why",
        }
        .emit(&m);
        AttemptFailed {
            alert: "A",
            reason: "exit 1",
        }
        .emit(&m);
        AlertSuppressed {
            alert: "A",
            reason: "maintenance",
        }
        .emit(&m);
        for status in ["escalated", "failure", "skipped"] {
            assert!(
                has(
                    &m,
                    &format!("jarvis_remediation_total{{alert_name=\"A\",status=\"{status}\"}} 1")
                ),
                "{status}: {}",
                m.encode()
            );
        }
        assert!(has(
            &m,
            "jarvis_alerts_suppressed_total{reason=\"maintenance\"} 1"
        ));
        NotificationDelivered {
            sink: "discord",
            id: "n1",
            carried: 1,
            failed: Some("HTTP 404"),
        }
        .emit(&m);
        assert!(has(
            &m,
            "jarvis_notifications_total{sink=\"discord\",result=\"dropped\"} 1"
        ));
        HostStateChanged {
            host: "h",
            to: HostState::Offline,
            reason: "3 failures",
        }
        .emit(&m);
        assert!(has(&m, "jarvis_host_up{host=\"h\"} 0"));
    }
}
