//! The remediation pipeline: triage, plan, execute through the safety gate, verify in
//! Prometheus, learn, notify — one claimed alert event at a time per fingerprint.
//!
//! Every step leaves a durable trace (alert state, remediation_log, audit), so after a
//! crash the event is claimed again and resumes: an attempt that may have been running
//! is marked interrupted and the alert is checked in Prometheus before anything runs
//! again. Waiting never holds a worker: an alert that needs a person, a dependency or
//! time to verify is parked with a [`Waiting`] and picked up again when it is due.
//!
//! This file is the flow; its parts live beside it: `plan.rs` (what to try),
//! `attempt.rs` (running a plan), `step.rs` (the attempt's log as a fold),
//! `correlate.rs` (incidents and waits), `verify.rs`, `outcome.rs` (endings and what
//! they send), and `learn::record` (what an attempt teaches).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

use super::attempt::{AttemptEnd, Flow, Running};
use super::maintenance::Maintenance;
use super::plan::Planner;
use super::step::By;
use super::triage::{self, Triage};
use super::{Disposition, Pipeline};
use crate::config::Config;
use crate::domain::alert::{AlertState, AlertStatus, LabelSet};
use crate::domain::ids::now_ms;
use crate::exec::monitor::HostMonitor;
use crate::exec::resolve_host;
use crate::exec::runner::CommandRunner;
use crate::integrations::prometheus::Prometheus;
use crate::learn::library;
use crate::metrics::Metrics;
use crate::notify::Notifications;
use crate::store::{AlertEventRow, Store};

pub use super::plan::{NoPlanner, Plan, PlanContext, PlanSource, RanCommand};

/// What a parked event waits for, stored with it (JSON) so any replica resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Waiting {
    /// A root cause that could explain the alert (`since` none), or a dependency's
    /// remediation (waited on since `since`).
    Dependency { since: Option<i64> },
    /// A person's decision on `approval_id`, for `command` of the attempt.
    Approval {
        approval_id: String,
        command: String,
        by: By,
        attempt: Running,
    },
    /// The fix ran; Prometheus is watched until `deadline`.
    Verification {
        since: i64,
        deadline: i64,
        attempt: Running,
    },
}

pub struct Remediator {
    pub(super) config: Arc<Config>,
    pub(super) store: Arc<dyn Store>,
    pub(super) runner: Arc<CommandRunner>,
    pub(super) monitor: Arc<HostMonitor>,
    pub(super) prometheus: Option<Prometheus>,
    pub(super) maintenance: Arc<Maintenance>,
    pub(super) notify: Arc<Notifications>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) planner: Arc<dyn Planner>,
    lease: Duration,
    /// Work started in the background (escalation reviews): shutdown waits for it.
    pub(super) background: TaskTracker,
    /// Fingerprint → its lock: one event per fingerprint at a time in this process
    /// (the claim already ensures it across replicas).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// One alert event being handled, with its labels parsed.
pub(super) struct Ctx<'a> {
    pub event: &'a AlertEventRow,
    pub owner: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub symptom: String,
    /// The host the labels point at.
    pub host: Option<String>,
}

impl Remediator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        runner: Arc<CommandRunner>,
        monitor: Arc<HostMonitor>,
        maintenance: Arc<Maintenance>,
        notify: Arc<Notifications>,
        metrics: Arc<Metrics>,
        planner: Arc<dyn Planner>,
    ) -> anyhow::Result<Self> {
        let prometheus = if config.prometheus.url.is_empty() {
            None
        } else {
            Some(Prometheus::new(
                &config.prometheus.url,
                Duration::from_secs(10),
            )?)
        };
        Ok(Self {
            lease: Duration::from_secs(config.worker.claim_lease_seconds),
            config,
            store,
            runner,
            monitor,
            prometheus,
            maintenance,
            notify,
            metrics,
            planner,
            background: TaskTracker::new(),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Spawns background work on `tracker`, which the application closes and waits
    /// for at shutdown.
    pub fn with_background(mut self, tracker: TaskTracker) -> Self {
        self.background = tracker;
        self
    }

    fn lock_for(&self, fingerprint: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("not poisoned");
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(fingerprint.to_owned()).or_default().clone()
    }

    /// Records progress (and that the event is no longer parked).
    pub(super) async fn set_state(&self, ctx: &Ctx<'_>, state: AlertState, reason: &str) {
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        if let Err(e) = self
            .store
            .set_alert_state(
                &ctx.event.id,
                &ctx.owner,
                state,
                Some(reason),
                now + lease,
                now,
            )
            .await
        {
            tracing::warn!(error = %e, "Cannot record the alert's progress.");
        }
    }

    /// The resolved notification closes incidents and wakes a parked verification.
    async fn on_resolved(&self, event: &AlertEventRow) -> Disposition {
        let now = now_ms();
        if let Err(e) = self.store.close_incidents(&event.fingerprint, now).await {
            tracing::warn!(error = %e, "Cannot close the alert's incidents.");
        }
        if let Err(e) = self.store.wake_fingerprint(&event.fingerprint, now).await {
            tracing::warn!(error = %e, "Cannot wake the alert's parked remediation.");
        }
        Disposition::done(AlertState::Resolved, "resolved by Alertmanager")
    }

    pub(super) async fn resolved_meanwhile(&self, event: &AlertEventRow) -> bool {
        matches!(
            self.store
                .resolved_event_exists(&event.fingerprint, event.starts_at)
                .await,
            Ok(true)
        )
    }

    /// `unparked`: back from a wait, and since when it waits on a dependency.
    async fn remediate(&self, ctx: &Ctx<'_>, unparked: Option<Option<i64>>) -> Disposition {
        let event = ctx.event;
        // Resumed after a crash or takeover: settle what the last owner left.
        if unparked.is_none()
            && (event.state != AlertState::Received || event.reason.is_some())
            && let Some(d) = self.resume(ctx).await
        {
            return d;
        }
        if let Some(parked) = self.settle(ctx, unparked.flatten()).await {
            return parked;
        }
        if self.resolved_meanwhile(event).await {
            return Disposition::done(
                AlertState::Resolved,
                "resolved by Alertmanager before remediation",
            );
        }
        let facts = match self.facts(ctx).await {
            Ok(f) => f,
            Err(e) => {
                // Without the store nothing can be decided safely; leave it for later.
                tracing::warn!(error = %e, "Cannot triage yet.");
                return Disposition::done(AlertState::Received, format!("triage postponed: {e}"));
            }
        };
        match triage::triage(&facts, &self.config.remediation) {
            Triage::Proceed => {}
            Triage::Suppress(reason) => return self.suppressed(ctx, reason),
            Triage::Deduplicate(reason) => {
                crate::events::RemediationFinished {
                    alert: &event.alertname,
                    fingerprint: &event.fingerprint,
                    ending: crate::events::Ending::Deduplicated,
                    reason: &reason,
                }
                .emit(&self.metrics);
                return Disposition::done(AlertState::Deduplicated, reason);
            }
            Triage::Escalate(reason) => {
                return self.escalate(ctx, AlertState::Escalated, reason).await;
            }
        }
        self.attempts(ctx, facts.attempts_in_window, None, None)
            .await
    }

    /// Plans and attempts until fixed, parked, out of attempts or out of ideas.
    /// `ended` is an attempt that ended after a park (its `used` and `last_failure`
    /// are the loop's state when it began).
    async fn attempts(
        &self,
        ctx: &Ctx<'_>,
        mut used: i64,
        mut last_failure: Option<String>,
        mut ended: Option<AttemptEnd>,
    ) -> Disposition {
        let _active = self.metrics.active_remediation();
        let max = i64::from(self.config.remediation.max_attempts_per_alert);
        loop {
            let end = match ended.take() {
                Some(end) => end,
                None => {
                    if used >= max {
                        let hours = self.config.remediation.attempt_window_hours;
                        let last = last_failure.map(|f| format!("; last: {f}"));
                        let reason = format!(
                            "attempts exhausted: {used} of {max} in the last {hours} h{}",
                            last.unwrap_or_default()
                        );
                        return self.escalate(ctx, AlertState::Escalated, reason).await;
                    }
                    // Planning may run commands (the LLM agent): from here a crash is
                    // resumed as one, with approvals it asked for superseded.
                    self.set_state(ctx, AlertState::Remediating, "planning")
                        .await;
                    let plan = match self.plan(ctx).await {
                        Ok(p) => p,
                        Err(why) => {
                            let reason = match last_failure {
                                Some(f) => format!("{why}; last failure: {f}"),
                                None => why,
                            };
                            return self.escalate(ctx, AlertState::Escalated, reason).await;
                        }
                    };
                    tracing::info!(alert = %ctx.event.alertname, source = plan.source.as_str(), commands = ?plan.commands, "Remediating.");
                    match self.attempt(ctx, plan, used, last_failure.clone()).await {
                        Flow::Leave(d) => return d,
                        Flow::End(end, _) => end,
                    }
                }
            };
            match end {
                AttemptEnd::Fixed { verified, message } => {
                    return self.fixed(ctx, verified, message).await;
                }
                AttemptEnd::Failed(f) => {
                    crate::events::AttemptFailed {
                        alert: &ctx.event.alertname,
                        reason: &f,
                    }
                    .emit(&self.metrics);
                    used += 1;
                    last_failure = Some(f);
                }
                AttemptEnd::Stop {
                    state: AlertState::Suppressed,
                    reason,
                } => return self.suppressed(ctx, reason),
                AttemptEnd::Stop { state, reason } => {
                    return self.escalate(ctx, state, reason).await;
                }
            }
        }
    }

    /// Picks up a parked event where it stopped.
    async fn unpark(&self, ctx: &Ctx<'_>, waiting: Waiting) -> Disposition {
        let flow = match waiting {
            Waiting::Dependency { since } => return self.remediate(ctx, Some(since)).await,
            Waiting::Approval {
                approval_id,
                command,
                by,
                attempt,
            } => {
                self.after_approval(ctx, &approval_id, &command, by, attempt)
                    .await
            }
            Waiting::Verification {
                since,
                deadline,
                attempt,
            } => self.verification(ctx, attempt, since, deadline).await,
        };
        match flow {
            Flow::Leave(d) => d,
            Flow::End(end, run) => {
                self.attempts(ctx, run.used, run.last_failure, Some(end))
                    .await
            }
        }
    }
}

#[async_trait]
impl Pipeline for Remediator {
    async fn process(&self, event: &AlertEventRow) -> Disposition {
        if event.status == AlertStatus::Resolved {
            return self.on_resolved(event).await;
        }
        let lock = self.lock_for(&event.fingerprint);
        let _one_at_a_time = lock.lock().await;
        let (labels, annotations) = match (event.label_set(), event.annotation_set()) {
            (Ok(l), Ok(a)) => (l, a),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "Cannot remediate an alert event.");
                return Disposition::done(AlertState::Failed, e);
            }
        };
        let host = resolve_host(&labels, &self.config.hosts)
            .ok()
            .map(|h| h.name.clone());
        let ctx = Ctx {
            event,
            owner: event.claimed_by.clone().unwrap_or_default(),
            symptom: library::symptom(&event.alertname, &labels),
            labels,
            annotations,
            host,
        };
        let waiting = event
            .waiting
            .as_deref()
            .map(serde_json::from_str::<Waiting>);
        match waiting {
            Some(Ok(w)) => self.unpark(&ctx, w).await,
            Some(Err(e)) => {
                // Written by another version: treat it as cut off, not as parked.
                tracing::warn!(error = %e, id = %event.id, "Cannot read what a parked alert waits for; resuming it as interrupted.");
                self.remediate(&ctx, None).await
            }
            None => self.remediate(&ctx, None).await,
        }
    }
}
