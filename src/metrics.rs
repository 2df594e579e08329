//! Prometheus metrics (INTERFACE §6). One registry per application instance, no
//! globals, so every test gets fresh counters. Business code calls the named methods
//! here and never spells a metric name; label values are bounded enums, never raw
//! error text or commands.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

pub struct Metrics {
    registry: Registry,
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
        Self {
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

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
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
        let text = m.encode();
        for line in [
            "jarvis_alerts_received_total{status=\"firing\"} 2",
            "jarvis_alerts_received_total{status=\"resolved\"} 1",
            "jarvis_database_connected 1",
            "jarvis_spooled_alerts 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
