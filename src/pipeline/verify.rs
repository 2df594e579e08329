//! Verification: did the fix really resolve the alert? Decided in Prometheus, not by
//! exit codes. The original Jarvis counted "not found" as resolved, so any label
//! mismatch passed as a fix; here an alert never seen firing is `unverifiable`.

use super::attempt::{AttemptEnd, Flow, Running};
use super::remediate::{Ctx, Remediator, Waiting};
use super::{Disposition, Park};
use crate::domain::alert::{AlertState, LabelSet};
use crate::domain::ids::now_ms;
use crate::integrations::prometheus::PromAlert;
use crate::store::AttemptStatus;

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

/// Follows the alert across polls (stored with a parked verification).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl Remediator {
    /// Is the alert firing in Prometheus right now? `None`: cannot tell.
    pub(super) async fn presence(&self, labels: &LabelSet) -> Option<Presence> {
        let p = self.prometheus.as_ref()?;
        match p.alerts().await {
            Ok(a) => Some(presence(labels, &a)),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read alerts from Prometheus.");
                None
            }
        }
    }

    /// Looks once whether the fix resolved the alert; parks until the next look
    /// (`poll_interval_seconds`, or sooner when the resolved notification arrives)
    /// while it cannot tell yet, and ends the attempt once it can.
    pub(super) async fn verification(
        &self,
        ctx: &Ctx<'_>,
        mut run: Running,
        since: i64,
        deadline: i64,
    ) -> Flow {
        let now = now_ms();
        let after = |what: &str| format!("{what} after {}s", (now - since).max(0) / 1000);
        let decided = if self.resolved_meanwhile(ctx.event).await {
            Some((Outcome::Resolved, after("resolved (Alertmanager)")))
        } else if let Some(p) = self.presence(&ctx.labels).await
            && let Some(o) = run.tracker.observe(p)
        {
            Some((o, after("resolved in Prometheus")))
        } else if now >= deadline {
            let o = run.tracker.timed_out();
            let waited = (deadline - since) / 1000;
            let msg = match o {
                Outcome::StillFiring => format!("still firing after {waited}s"),
                _ => format!(
                    "unverifiable: the alert was never found in Prometheus within {waited}s (do its labels match?)"
                ),
            };
            Some((o, msg))
        } else {
            None
        };
        let Some((outcome, message)) = decided else {
            let poll = i64::try_from(self.config.verification.poll_interval_seconds.max(1) * 1000)
                .unwrap_or(i64::MAX);
            return Flow::Leave(Disposition::parked(
                AlertState::Verifying,
                "waiting for the alert to resolve",
                Park::until(
                    (now + poll).min(deadline),
                    &Waiting::Verification {
                        since,
                        deadline,
                        attempt: run,
                    },
                ),
            ));
        };
        let Ok(Some(mut row)) = self.store.get_remediation(&run.remediation_id).await else {
            return Flow::End(
                AttemptEnd::Failed("the attempt's record cannot be read".into()),
                Box::new(run),
            );
        };
        row.verification_message = message.clone();
        let end = match outcome {
            Outcome::Resolved => {
                row.success = true;
                row.verified = true;
                self.close(ctx, &mut row, &run.plan, AttemptStatus::Success)
                    .await;
                AttemptEnd::Fixed {
                    verified: true,
                    message,
                }
            }
            Outcome::StillFiring => {
                row.error_message = message.clone();
                self.close(ctx, &mut row, &run.plan, AttemptStatus::Failure)
                    .await;
                AttemptEnd::Failed(message)
            }
            Outcome::Unverifiable => {
                self.close(ctx, &mut row, &run.plan, AttemptStatus::Unverifiable)
                    .await;
                AttemptEnd::Stop {
                    state: AlertState::Failed,
                    reason: format!("the fix ran but {message}"),
                }
            }
        };
        Flow::End(end, Box::new(run))
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
