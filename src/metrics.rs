//! Prometheus metrics (INTERFACE §6). One registry per application instance, no
//! globals, so every test gets fresh counters. Business code calls the named methods
//! here and never spells a metric name; label values are bounded enums, never raw
//! error text or commands.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::alert::AlertStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum StatusValue {
    firing,
    resolved,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: StatusValue,
}

/// How a webhook request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum WebhookOutcome {
    stored,
    spooled,
    malformed,
    unauthorized,
    too_large,
    unsupported_media_type,
    unavailable,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    /// A configured host name: bounded by the configuration.
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: WebhookOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemediationLabels {
    /// Alert rule names: bounded by the operator's rule files.
    alert_name: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertNameLabel {
    alert_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    /// diagnostic, allowed, approval_required, blocked
    verdict: &'static str,
    /// operator, learned, llm, manual
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    /// A suppression reason: maintenance, host_offline, cascade:<configured root>,
    /// escalation_cooldown.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmCallLabels {
    model: String,
    /// ok, rejected, unavailable, malformed
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmTokenLabels {
    model: String,
    /// input, output, cache_read, cache_write
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: &'static str,
    result: &'static str,
}

/// How a remediation ended, for `jarvis_remediation_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemediationStatus {
    Success,
    Failure,
    Escalated,
    Skipped,
}

fn duration_histogram() -> Histogram {
    Histogram::new([5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
}

pub struct Metrics {
    registry: Registry,
    remediation_total: Family<RemediationLabels, Counter>,
    remediation_duration: Family<AlertNameLabel, Histogram, fn() -> Histogram>,
    pattern_matches: Family<ResultLabel, Counter>,
    active_remediations: Gauge,
    alerts_suppressed: Family<ReasonLabel, Counter>,
    commands: Family<CommandLabels, Counter>,
    notifications: Family<SinkLabels, Counter>,
    llm_calls: Family<LlmCallLabels, Counter>,
    llm_tokens: Family<LlmTokenLabels, Counter>,
    alerts_received: Family<StatusLabel, Counter>,
    alerts_duplicate: Counter,
    webhook_requests: Family<OutcomeLabel, Counter>,
    database_connected: Gauge,
    spooled_alerts: Gauge,
    host_up: Family<HostLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jarvis");
        let alerts_received = Family::<StatusLabel, Counter>::default();
        registry.register(
            "alerts_received",
            "Alert events accepted from Alertmanager (new ones; duplicates excluded)",
            alerts_received.clone(),
        );
        let alerts_duplicate = Counter::default();
        registry.register(
            "alerts_duplicate",
            "Alert events already known (retries, HA Alertmanager pairs)",
            alerts_duplicate.clone(),
        );
        let webhook_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook requests by outcome",
            webhook_requests.clone(),
        );
        let database_connected = Gauge::default();
        registry.register(
            "database_connected",
            "1 when the database is reachable, 0 while intake spools to disk",
            database_connected.clone(),
        );
        let spooled_alerts = Gauge::default();
        registry.register(
            "spooled_alerts",
            "Alert events in the local spool waiting for the database",
            spooled_alerts.clone(),
        );
        let host_up = Family::<HostLabel, Gauge>::default();
        registry.register(
            "host_up",
            "1 when the host answers over SSH, 0 when offline",
            host_up.clone(),
        );
        let remediation_total = Family::<RemediationLabels, Counter>::default();
        registry.register(
            "remediation",
            "Remediations by alert and how they ended (success means verified or, without Prometheus, exit status)",
            remediation_total.clone(),
        );
        let remediation_duration =
            Family::<AlertNameLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "remediation_duration_seconds",
            "Time from starting a remediation attempt to its outcome",
            remediation_duration.clone(),
        );
        let pattern_matches = Family::<ResultLabel, Counter>::default();
        registry.register(
            "pattern_matches",
            "Planning from the pattern library: hit (a pattern was used) or miss",
            pattern_matches.clone(),
        );
        let active_remediations = Gauge::default();
        registry.register(
            "active_remediations",
            "Alerts being remediated right now",
            active_remediations.clone(),
        );
        let alerts_suppressed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "alerts_suppressed",
            "Alerts held back by maintenance, offline hosts, cascades and cooldowns",
            alerts_suppressed.clone(),
        );
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Commands judged by the safety gate, by verdict and by who proposed them",
            commands.clone(),
        );
        let notifications = Family::<SinkLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by sink and result (sent or dropped)",
            notifications.clone(),
        );
        let llm_calls = Family::<LlmCallLabels, Counter>::default();
        registry.register(
            "claude_api_calls",
            "LLM provider calls by model and status (the original's name; counts every provider)",
            llm_calls.clone(),
        );
        let llm_tokens = Family::<LlmTokenLabels, Counter>::default();
        registry.register(
            "llm_tokens",
            "LLM tokens by model and kind (input, output, cache_read, cache_write)",
            llm_tokens.clone(),
        );
        Self {
            llm_calls,
            llm_tokens,
            remediation_total,
            remediation_duration,
            pattern_matches,
            active_remediations,
            alerts_suppressed,
            commands,
            notifications,
            host_up,
            registry,
            alerts_received,
            alerts_duplicate,
            webhook_requests,
            database_connected,
            spooled_alerts,
        }
    }

    pub fn alert_received(&self, status: AlertStatus) {
        let status = match status {
            AlertStatus::Firing => StatusValue::firing,
            AlertStatus::Resolved => StatusValue::resolved,
        };
        self.alerts_received
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    pub fn alerts_duplicate(&self, n: u64) {
        if n > 0 {
            self.alerts_duplicate.inc_by(n);
        }
    }

    pub fn webhook_request(&self, outcome: WebhookOutcome) {
        self.webhook_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn set_database_connected(&self, up: bool) {
        self.database_connected.set(i64::from(up));
    }

    pub fn set_spooled_alerts(&self, n: u64) {
        self.spooled_alerts
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_host_up(&self, host: &str, up: bool) {
        self.host_up
            .get_or_create(&HostLabel {
                host: host.to_owned(),
            })
            .set(i64::from(up));
    }

    pub fn remediation(&self, alert_name: &str, status: RemediationStatus) {
        let status = match status {
            RemediationStatus::Success => "success",
            RemediationStatus::Failure => "failure",
            RemediationStatus::Escalated => "escalated",
            RemediationStatus::Skipped => "skipped",
        };
        self.remediation_total
            .get_or_create(&RemediationLabels {
                alert_name: alert_name.to_owned(),
                status,
            })
            .inc();
    }

    pub fn remediation_duration(&self, alert_name: &str, seconds: f64) {
        self.remediation_duration
            .get_or_create(&AlertNameLabel {
                alert_name: alert_name.to_owned(),
            })
            .observe(seconds);
    }

    pub fn pattern_match(&self, hit: bool) {
        self.pattern_matches
            .get_or_create(&ResultLabel {
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// Marks one remediation active until the guard drops.
    pub fn active_remediation(&self) -> ActiveGuard<'_> {
        self.active_remediations.inc();
        ActiveGuard(&self.active_remediations)
    }

    /// One command judged by the safety gate.
    pub fn command_judged(&self, verdict: crate::safety::Verdict, source: crate::safety::Source) {
        self.commands
            .get_or_create(&CommandLabels {
                verdict: verdict.as_str(),
                source: source.as_str(),
            })
            .inc();
    }

    pub fn alert_suppressed(&self, reason: &str) {
        self.alerts_suppressed
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn notification(&self, sink: &'static str, sent: bool) {
        self.notifications
            .get_or_create(&SinkLabels {
                sink,
                result: if sent { "sent" } else { "dropped" },
            })
            .inc();
    }

    /// One LLM call and its tokens.
    pub fn llm_call(&self, model: &str, status: &'static str, tokens: [(&'static str, u64); 4]) {
        self.llm_calls
            .get_or_create(&LlmCallLabels {
                model: model.to_owned(),
                status,
            })
            .inc();
        for (kind, n) in tokens {
            if n > 0 {
                self.llm_tokens
                    .get_or_create(&LlmTokenLabels {
                        model: model.to_owned(),
                        kind,
                    })
                    .inc_by(n);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Decrements `jarvis_active_remediations` when dropped.
pub struct ActiveGuard<'a>(&'a Gauge);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_match_the_interface() {
        let m = Metrics::new();
        m.alert_received(AlertStatus::Firing);
        m.alert_received(AlertStatus::Firing);
        m.alert_received(AlertStatus::Resolved);
        m.set_database_connected(true);
        m.set_spooled_alerts(7);
        m.remediation("ContainerDown", RemediationStatus::Success);
        m.remediation_duration("ContainerDown", 7.0);
        m.pattern_match(true);
        m.alert_suppressed("maintenance");
        m.command_judged(crate::safety::Verdict::Blocked, crate::safety::Source::Llm);
        let active = m.active_remediation();
        let text = m.encode();
        drop(active);
        for line in [
            "jarvis_alerts_received_total{status=\"firing\"} 2",
            "jarvis_alerts_received_total{status=\"resolved\"} 1",
            "jarvis_database_connected 1",
            "jarvis_spooled_alerts 7",
            "jarvis_remediation_total{alert_name=\"ContainerDown\",status=\"success\"} 1",
            "jarvis_remediation_duration_seconds_bucket{le=\"10.0\",alert_name=\"ContainerDown\"} 1",
            "jarvis_pattern_matches_total{result=\"hit\"} 1",
            "jarvis_active_remediations 1",
            "jarvis_alerts_suppressed_total{reason=\"maintenance\"} 1",
            "jarvis_commands_total{verdict=\"blocked\",source=\"llm\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
