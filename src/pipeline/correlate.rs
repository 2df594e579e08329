//! Correlation: the facts triage decides on, incidents (a root cause and the alerts it
//! explains), and waiting for a root cause or a dependency before acting.
//!
//! Waiting is parking: the event is stored as `waiting_dependency` with when to look
//! again, and its worker slot is free meanwhile.

use super::remediate::{Ctx, Remediator, Waiting};
use super::triage::{self, Facts};
use super::{Disposition, Park};
use crate::domain::alert::AlertState;
use crate::domain::ids::{new_id, now_ms};
use crate::exec::monitor::HostState;
use crate::store::{AlertEventRow, IncidentRow, StoreError};

/// How often a wait on a dependency looks again.
const DEPENDENCY_POLL_MS: i64 = 2_000;

/// Whether an alert waits before it is acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Act now.
    No,
    /// A root cause could explain it and may arrive in another webhook: wait until then.
    Settle { until: i64 },
    /// A dependency is being remediated: look again then.
    Dependency { until: i64 },
}

/// What waiting needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitFacts {
    /// A cascade rule or a dependency could explain this alert.
    pub explainable: bool,
    /// When the settle window ends (received + `settle_seconds`).
    pub settle_until: i64,
    /// When waiting began, if it already has.
    pub waiting_since: Option<i64>,
    /// Waiting on dependencies stops after this long (one full remediation).
    pub limit_ms: i64,
    /// A dependency is being remediated now.
    pub dependency_active: bool,
}

/// The pure decision; `now` is passed in.
pub fn wait(f: &WaitFacts, now: i64) -> Wait {
    if !f.explainable {
        return Wait::No;
    }
    if now < f.settle_until {
        return Wait::Settle {
            until: f.settle_until,
        };
    }
    let since = f.waiting_since.unwrap_or(now);
    if f.dependency_active && now - since <= f.limit_ms {
        return Wait::Dependency {
            until: now + DEPENDENCY_POLL_MS,
        };
    }
    Wait::No
}

impl Remediator {
    pub(super) async fn facts(&self, ctx: &Ctx<'_>) -> Result<Facts, StoreError> {
        let now = now_ms();
        let c = &self.config;
        let maintenance = self
            .maintenance
            .covering(ctx.host.as_deref())
            .await?
            .is_some();
        let host_offline = ctx
            .host
            .as_deref()
            .is_some_and(|h| self.monitor.state(h) == Some(HostState::Offline));
        let mut cascade_root = None;
        for root in triage::cascade_roots(&ctx.event.alertname, &c.rules.cascade) {
            if let Some(r) = self.store.firing_event(root, now - 24 * 3_600_000).await? {
                self.join_incident(&r, ctx, "cascade").await;
                cascade_root = Some(root.to_owned());
                break;
            }
        }
        let last = self
            .store
            .last_finished(&ctx.event.fingerprint, &ctx.event.id)
            .await?;
        let window_start = now - i64::from(c.remediation.attempt_window_hours) * 3_600_000;
        Ok(Facts {
            maintenance,
            host_offline,
            cascade_root,
            last_remediation_ago_ms: last.map(|t| now - t),
            escalation_quiet_until: self
                .store
                .escalation_cooldown(&ctx.event.fingerprint, now)
                .await?,
            attempts_in_window: self
                .store
                .attempts_since(&ctx.event.fingerprint, window_start)
                .await?,
        })
    }

    /// Adds this alert to the open incident of `root` (opening one if needed).
    pub(super) async fn join_incident(&self, root: &AlertEventRow, ctx: &Ctx<'_>, kind: &str) {
        let now = now_ms();
        let entry = serde_json::json!({
            "alertname": ctx.event.alertname,
            "fingerprint": ctx.event.fingerprint,
            "instance": ctx.event.instance,
        });
        let result: Result<(), StoreError> = async {
            match self.store.open_incident(&root.fingerprint).await? {
                Some(inc) => {
                    let mut related: Vec<serde_json::Value> =
                        serde_json::from_str(&inc.related_alerts).unwrap_or_default();
                    if !related
                        .iter()
                        .any(|r| r["fingerprint"] == entry["fingerprint"])
                    {
                        related.push(entry);
                        self.store
                            .update_incident_related(
                                &inc.id,
                                &serde_json::to_string(&related).unwrap_or_default(),
                                now,
                            )
                            .await?;
                    }
                }
                None => {
                    self.store
                        .insert_incident(&IncidentRow {
                            id: new_id(),
                            root_cause_alert: root.alertname.clone(),
                            root_fingerprint: root.fingerprint.clone(),
                            related_alerts: serde_json::to_string(&vec![entry]).unwrap_or_default(),
                            correlation_type: kind.into(),
                            state: "open".into(),
                            opened_at: now,
                            updated_at: now,
                            closed_at: None,
                        })
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "Cannot record the incident.");
        }
    }

    /// Alerts a root cause could explain wait for it to arrive (it may come in another
    /// webhook) and, for dependencies, for its remediation to finish. `Some` parks the
    /// event; `None` goes on. `since` is when an earlier wait on a dependency began
    /// (the settle window before it does not count).
    pub(super) async fn settle(&self, ctx: &Ctx<'_>, since: Option<i64>) -> Option<Disposition> {
        let rules = &self.config.rules;
        let deps: Vec<String> = triage::service_of(&ctx.labels)
            .and_then(|s| rules.dependencies.get(s))
            .cloned()
            .unwrap_or_default();
        let explainable = !triage::cascade_roots(&ctx.event.alertname, &rules.cascade).is_empty()
            || !deps.is_empty();
        let now = now_ms();
        let settle_until =
            ctx.event.received_at + i64::try_from(rules.settle_seconds * 1000).unwrap_or(0);
        let root = if explainable && now >= settle_until && !deps.is_empty() {
            self.active_dependency(&deps).await
        } else {
            None
        };
        let v = &self.config.verification;
        let limit_s = v.max_wait_seconds + self.config.remediation.command_timeout_seconds + 30;
        let facts = WaitFacts {
            explainable,
            settle_until,
            waiting_since: since,
            limit_ms: i64::try_from(limit_s * 1000).unwrap_or(i64::MAX),
            dependency_active: root.is_some(),
        };
        let (until, reason, since) = match wait(&facts, now) {
            Wait::No => return None,
            Wait::Settle { until } => (
                until,
                "waiting for a root cause that could explain it".to_owned(),
                None,
            ),
            Wait::Dependency { until } => {
                let (fp, name) = root.expect("a dependency is active");
                if since.is_none() {
                    let window =
                        i64::try_from(rules.correlation_window_seconds * 1000).unwrap_or(0);
                    if let Ok(Some(r)) = self.store.firing_event(&name, now - window.max(0)).await
                        && r.fingerprint == fp
                    {
                        self.join_incident(&r, ctx, "dependency").await;
                    }
                }
                (
                    until,
                    format!("waiting for {name} (a dependency) to be remediated"),
                    Some(since.unwrap_or(now)),
                )
            }
        };
        Some(Disposition::parked(
            AlertState::WaitingDependency,
            reason,
            Park::until(until, &Waiting::Dependency { since }),
        ))
    }

    /// A dependency being remediated (by any replica, or parked mid-remediation):
    /// (fingerprint, alert name).
    async fn active_dependency(&self, deps: &[String]) -> Option<(String, String)> {
        let held = self.store.in_remediation(now_ms()).await.ok()?;
        held.into_iter().find_map(|e| {
            let labels = e
                .label_set()
                .map_err(|why| tracing::warn!(%why, "Skipping an event as a dependency."))
                .ok()?;
            triage::service_of(&labels)
                .is_some_and(|s| deps.iter().any(|d| d == s))
                .then_some((e.fingerprint, e.alertname))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> WaitFacts {
        WaitFacts {
            explainable: true,
            settle_until: 1_000,
            waiting_since: None,
            limit_ms: 10_000,
            dependency_active: false,
        }
    }

    #[test]
    fn waits_only_for_what_could_explain_the_alert() {
        let unexplainable = WaitFacts {
            explainable: false,
            dependency_active: true,
            ..facts()
        };
        assert_eq!(wait(&unexplainable, 0), Wait::No);
        assert_eq!(wait(&facts(), 500), Wait::Settle { until: 1_000 });
        assert_eq!(wait(&facts(), 1_000), Wait::No);
        let dep = WaitFacts {
            dependency_active: true,
            ..facts()
        };
        assert_eq!(
            wait(&dep, 2_000),
            Wait::Dependency {
                until: 2_000 + DEPENDENCY_POLL_MS
            }
        );
        // Bounded by one full remediation from when the wait began.
        let long = WaitFacts {
            waiting_since: Some(2_000),
            ..dep.clone()
        };
        assert!(matches!(wait(&long, 12_000), Wait::Dependency { .. }));
        assert_eq!(wait(&long, 12_001), Wait::No);
    }
}
