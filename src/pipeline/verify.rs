//! Verification: did the fix really resolve the alert? Decided in Prometheus, not by
//! exit codes. The original Jarvis counted "not found" as resolved, so any label
//! mismatch passed as a fix; here an alert never seen firing is `unverifiable`.

use crate::domain::alert::LabelSet;
use crate::integrations::prometheus::PromAlert;

/// Where the alert is in Prometheus right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Firing,
    Pending,
    Absent,
}

/// The alert's state in Prometheus. A Prometheus alert is the same alert when all of
/// its labels equal the webhook alert's: the webhook's label set may have more, since
/// Prometheus adds its external labels only on the way to Alertmanager.
pub fn presence(alert_labels: &LabelSet, active: &[PromAlert]) -> Presence {
    let same = |p: &PromAlert| {
        p.labels.get("alertname") == alert_labels.get("alertname")
            && p.labels.iter().all(|(k, v)| alert_labels.get(k) == Some(v))
    };
    let mut best = Presence::Absent;
    for p in active.iter().filter(|p| same(p)) {
        match p.state.as_str() {
            "firing" => return Presence::Firing,
            _ => best = Presence::Pending,
        }
    }
    best
}

/// How a verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Seen firing, then gone (or resolved by webhook): the fix worked.
    Resolved,
    /// Still firing when time ran out.
    StillFiring,
    /// Never seen in Prometheus at all: labels differ, or another Prometheus owns it.
    Unverifiable,
}

/// Follows the alert across polls.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    seen: bool,
}

impl Tracker {
    /// Feeds one poll; `Some` once the answer is certain.
    pub fn observe(&mut self, p: Presence) -> Option<Outcome> {
        match p {
            Presence::Firing | Presence::Pending => {
                self.seen = true;
                None
            }
            Presence::Absent if self.seen => Some(Outcome::Resolved),
            Presence::Absent => None,
        }
    }

    /// The answer when time runs out.
    pub fn timed_out(&self) -> Outcome {
        if self.seen {
            Outcome::StillFiring
        } else {
            Outcome::Unverifiable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::alert::labels;

    fn prom(pairs: &[(&str, &str)], state: &str) -> PromAlert {
        PromAlert {
            labels: labels(pairs),
            annotations: LabelSet::new(),
            state: state.into(),
            active_at: None,
            value: None,
        }
    }

    #[test]
    fn matching_tolerates_external_labels_but_not_differences() {
        let webhook = labels(&[
            ("alertname", "SvcDown"),
            ("instance", "a:1"),
            ("cluster", "homelab"),
        ]);
        let cases = [
            (
                vec![prom(
                    &[("alertname", "SvcDown"), ("instance", "a:1")],
                    "firing",
                )],
                Presence::Firing,
            ),
            (
                vec![prom(
                    &[("alertname", "SvcDown"), ("instance", "a:1")],
                    "pending",
                )],
                Presence::Pending,
            ),
            (
                vec![prom(
                    &[("alertname", "SvcDown"), ("instance", "b:1")],
                    "firing",
                )],
                Presence::Absent,
            ),
            (
                vec![prom(
                    &[("alertname", "Other"), ("instance", "a:1")],
                    "firing",
                )],
                Presence::Absent,
            ),
            (
                vec![prom(
                    &[
                        ("alertname", "SvcDown"),
                        ("instance", "a:1"),
                        ("extra", "x"),
                    ],
                    "firing",
                )],
                Presence::Absent,
            ),
            (vec![], Presence::Absent),
        ];
        for (active, want) in cases {
            assert_eq!(presence(&webhook, &active), want, "{active:?}");
        }
    }

    #[test]
    fn never_seen_is_unverifiable_not_resolved() {
        let mut t = Tracker::default();
        assert_eq!(t.observe(Presence::Absent), None);
        assert_eq!(t.timed_out(), Outcome::Unverifiable);
        assert_eq!(t.observe(Presence::Firing), None);
        assert_eq!(t.timed_out(), Outcome::StillFiring);
        assert_eq!(t.observe(Presence::Absent), Some(Outcome::Resolved));
    }
}
