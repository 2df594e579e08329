//! Triage: the pure decision whether an alert is acted on, from facts gathered
//! elsewhere. Order (INTERFACE §3): maintenance, host offline, cascade root, fingerprint
//! cooldown, escalation cooldown, attempts exhausted.

use crate::config::{CascadeRule, RemediationConfig};
use crate::domain::alert::LabelSet;

use super::hints::shell_quote;

/// What is known about an alert when it is triaged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// An active maintenance window covers the alert's host (or all hosts).
    pub maintenance: bool,
    pub host_offline: bool,
    /// A cascade root that is firing and explains this alert.
    pub cascade_root: Option<String>,
    /// Milliseconds since a remediation of this fingerprint (another event) finished.
    pub last_remediation_ago_ms: Option<i64>,
    /// The fingerprint's escalation is quiet until then (epoch ms).
    pub escalation_quiet_until: Option<i64>,
    pub attempts_in_window: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    Proceed,
    Suppress(String),
    Deduplicate(String),
    Escalate(String),
}

pub fn triage(f: &Facts, cfg: &RemediationConfig) -> Triage {
    if f.maintenance {
        return Triage::Suppress("maintenance".into());
    }
    if f.host_offline {
        return Triage::Suppress("host_offline".into());
    }
    if let Some(root) = &f.cascade_root {
        return Triage::Suppress(format!("cascade:{root}"));
    }
    let cooldown_ms = i64::try_from(cfg.fingerprint_cooldown_seconds * 1000).unwrap_or(i64::MAX);
    if let Some(ago) = f.last_remediation_ago_ms
        && ago < cooldown_ms
    {
        return Triage::Deduplicate(format!(
            "remediated {}s ago (fingerprint cooldown {}s)",
            ago / 1000,
            cfg.fingerprint_cooldown_seconds
        ));
    }
    if f.escalation_quiet_until.is_some() {
        return Triage::Suppress("escalation_cooldown".into());
    }
    if f.attempts_in_window >= i64::from(cfg.max_attempts_per_alert) {
        return Triage::Escalate(format!(
            "attempts exhausted: {} of {} in the last {} h",
            f.attempts_in_window, cfg.max_attempts_per_alert, cfg.attempt_window_hours
        ));
    }
    Triage::Proceed
}

/// Cascade roots that would explain `alertname`.
pub fn cascade_roots<'a>(alertname: &str, rules: &'a [CascadeRule]) -> Vec<&'a str> {
    rules
        .iter()
        .filter(|r| r.suppresses.iter().any(|s| s == alertname))
        .map(|r| r.root.as_str())
        .collect()
}

/// The service an alert is about: its `service`, `container`, `job` or `name` label.
pub fn service_of(labels: &LabelSet) -> Option<&str> {
    ["service", "container", "job", "name"]
        .iter()
        .find_map(|k| labels.get(*k))
        .map(String::as_str)
}

/// What a state-changing command acts on, and how to record its state first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTarget {
    /// `container` or `unit`.
    pub kind: &'static str,
    pub target: String,
    /// The read-only command whose output is the snapshot.
    pub command: String,
}

/// For `docker restart x`, `systemctl restart y` and the like (after `sudo`), the
/// container or unit and the command that records its state; `None` for anything else.
pub fn snapshot_target(command: &str) -> Option<SnapshotTarget> {
    let mut words: Vec<&str> = command.split_whitespace().collect();
    if words.first() == Some(&"sudo") {
        words.remove(0);
    }
    let (program, rest) = words.split_first()?;
    let (verbs, kind): (&[&str], &'static str) = match *program {
        "docker" | "podman" => (
            &[
                "restart", "stop", "start", "kill", "rm", "pause", "unpause", "update",
            ],
            "container",
        ),
        "systemctl" => (
            &[
                "restart",
                "stop",
                "start",
                "reload",
                "try-restart",
                "reload-or-restart",
                "kill",
                "enable",
                "disable",
                "mask",
                "unmask",
            ],
            "unit",
        ),
        _ => return None,
    };
    let mut args = rest.iter().filter(|w| !w.starts_with('-'));
    let verb = args.next()?;
    if !verbs.contains(verb) {
        return None;
    }
    let target = args.next()?;
    let simple = target
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.@:-".contains(c));
    if !simple || target.is_empty() {
        return None;
    }
    let command = match kind {
        "container" => format!("{program} inspect {}", shell_quote(target)),
        _ => format!("systemctl show {} --no-pager", shell_quote(target)),
    };
    Some(SnapshotTarget {
        kind,
        target: (*target).to_owned(),
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RemediationConfig {
        RemediationConfig::default()
    }

    #[test]
    fn triage_follows_the_documented_order() {
        let all = Facts {
            maintenance: true,
            host_offline: true,
            cascade_root: Some("WireGuardVPNDown".into()),
            last_remediation_ago_ms: Some(1000),
            escalation_quiet_until: Some(1),
            attempts_in_window: 9,
        };
        let cases: Vec<(Facts, Triage)> = vec![
            (all.clone(), Triage::Suppress("maintenance".into())),
            (
                Facts {
                    maintenance: false,
                    ..all.clone()
                },
                Triage::Suppress("host_offline".into()),
            ),
            (
                Facts {
                    maintenance: false,
                    host_offline: false,
                    ..all.clone()
                },
                Triage::Suppress("cascade:WireGuardVPNDown".into()),
            ),
            (
                Facts {
                    maintenance: false,
                    host_offline: false,
                    cascade_root: None,
                    ..all.clone()
                },
                Triage::Deduplicate("remediated 1s ago (fingerprint cooldown 300s)".into()),
            ),
            (
                Facts {
                    escalation_quiet_until: Some(5),
                    attempts_in_window: 9,
                    last_remediation_ago_ms: Some(300_000),
                    ..Facts::default()
                },
                Triage::Suppress("escalation_cooldown".into()),
            ),
            (
                Facts {
                    attempts_in_window: 3,
                    ..Facts::default()
                },
                Triage::Escalate("attempts exhausted: 3 of 3 in the last 2 h".into()),
            ),
            (
                Facts {
                    attempts_in_window: 2,
                    last_remediation_ago_ms: Some(300_001),
                    ..Facts::default()
                },
                Triage::Proceed,
            ),
        ];
        for (facts, want) in cases {
            assert_eq!(triage(&facts, &cfg()), want, "{facts:?}");
        }
    }

    #[test]
    fn default_cascades_are_the_originals() {
        let rules = crate::config::RulesConfig::default().cascade;
        assert_eq!(
            cascade_roots("OutpostDown", &rules),
            vec!["WireGuardVPNDown"]
        );
        assert_eq!(cascade_roots("ContainerDown", &rules), vec!["OutpostDown"]);
        assert!(cascade_roots("WireGuardVPNDown", &rules).is_empty());
    }

    #[test]
    fn snapshots_are_taken_for_state_changes_on_containers_and_units() {
        let t = snapshot_target("docker restart frigate").unwrap();
        assert_eq!((t.kind, t.target.as_str()), ("container", "frigate"));
        assert_eq!(t.command, "docker inspect frigate");
        let t = snapshot_target("sudo systemctl --quiet restart nginx.service").unwrap();
        assert_eq!(t.command, "systemctl show nginx.service --no-pager");
        for none in [
            "docker ps",
            "docker logs frigate",
            "systemctl status nginx",
            "echo docker restart x",
            "docker restart $(id)",
            "",
        ] {
            assert_eq!(snapshot_target(none), None, "{none}");
        }
    }
}
