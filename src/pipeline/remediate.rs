//! The remediation pipeline: triage, plan, execute through the safety gate, verify in
//! Prometheus, learn, notify — one claimed alert event at a time per fingerprint.
//!
//! Every step leaves a durable trace (alert state, remediation_log, audit), so after a
//! crash the event is claimed again and resumes: an attempt that may have been running
//! is marked interrupted and the alert is checked in Prometheus before anything runs
//! again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::hints;
use super::maintenance::Maintenance;
use super::triage::{self, Facts, Triage};
use super::verify::{self, Outcome, Presence, Tracker};
use super::{Disposition, Pipeline};
use crate::config::Config;
use crate::domain::alert::{AlertState, LabelSet};
use crate::domain::ids::{new_id, now_ms};
use crate::exec::monitor::{HostMonitor, HostState};
use crate::exec::resolve_host;
use crate::exec::runner::{CommandRunner, RunOutcome, RunRequest};
use crate::integrations::prometheus::Prometheus;
use crate::learn::library::{self, KNOWN_FAILURE_AFTER, LEARNED_PRIOR};
use crate::metrics::{Metrics, RemediationStatus};
use crate::notify::{Kind, Message, Notifications};
use crate::safety::{Source, Verdict};
use crate::store::{
    AlertEventRow, FailureRow, IncidentRow, PatternRow, RemediationRow, SnapshotRow, Store,
    StoreError,
};

/// Where a plan came from (remediation_log.source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSource {
    Pattern,
    Hint,
    Llm,
}

impl PlanSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pattern => "pattern",
            Self::Hint => "hint",
            Self::Llm => "llm",
        }
    }
}

/// Commands to try for an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub source: PlanSource,
    /// Host name or alias; `None`: the host the alert's labels point at.
    pub host: Option<String>,
    pub commands: Vec<String>,
    pub pattern_id: Option<String>,
    /// A learned pattern: its commands were verified to work before.
    pub learned: bool,
    pub description: String,
    /// Commands the planner already ran through the gate (the LLM agent's
    /// `run_command`), in order. The pipeline records and verifies them and never runs
    /// them again: the original Jarvis re-executed the model's final command list, so
    /// restarts happened twice.
    pub ran: Vec<RanCommand>,
    /// Prometheus showed the alert firing before the planner acted (set by the
    /// pipeline): a planner's fix may resolve it before verification starts, and that
    /// must count as resolved, not as never seen.
    pub seen_firing_before: bool,
}

impl Plan {
    /// The state-changing commands of the plan: what learning and failure memory key on.
    /// For a planner that ran its own commands, those that ran and were not read-only.
    pub fn changes(&self) -> Vec<String> {
        if !self.commands.is_empty() {
            return self.commands.clone();
        }
        self.ran
            .iter()
            .filter(|r| r.changed_something())
            .map(|r| r.command.clone())
            .collect()
    }
}

/// A command a planner ran (or tried to).
#[derive(Debug, Clone, PartialEq)]
pub struct RanCommand {
    /// The host it ran on (as the planner named it).
    pub host: Option<String>,
    pub command: String,
    pub outcome: RanOutcome,
}

impl RanCommand {
    /// It ran (or waits for approval to run) and is not read-only.
    pub fn changed_something(&self) -> bool {
        !matches!(
            self.outcome,
            RanOutcome::NotRun { .. }
                | RanOutcome::Completed {
                    diagnostic: true,
                    ..
                }
        )
    }
}

/// "exited 3", or "exited without a code" (killed by a signal).
fn exited(code: Option<impl std::fmt::Display>) -> String {
    match code {
        Some(c) => format!("exited {c}"),
        None => "exited without a code".into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RanOutcome {
    Completed {
        /// Judged read-only by the gate.
        diagnostic: bool,
        exit_code: Option<i32>,
        timed_out: bool,
        output: String,
    },
    /// Waiting for a person; the pipeline waits for the decision.
    AwaitingApproval { approval_id: String, reason: String },
    /// Refused by the gate (or not run for another reason); the planner was told.
    NotRun { reason: String },
}

/// What a planner is told about the alert.
pub struct PlanContext<'a> {
    pub event: &'a AlertEventRow,
    pub labels: &'a LabelSet,
    pub annotations: &'a LabelSet,
    /// The host the labels point at, if any.
    pub host: Option<&'a str>,
    /// Fixes that failed for this symptom (newest first): do not propose them again.
    pub failures: &'a [FailureRow],
    /// Learned patterns not yet trusted enough to run without the planner.
    pub learned: &'a [PatternRow],
}

/// The seam where the LLM agent plugs in: asked only when no pattern and no hint
/// applies.
#[async_trait]
pub trait Planner: Send + Sync {
    fn name(&self) -> &'static str;
    /// `Ok(None)`: nothing to propose. `Err`: the planner failed (said in the
    /// escalation).
    async fn plan(&self, ctx: &PlanContext<'_>) -> Result<Option<Plan>, String>;
    /// Told after an alert was escalated (the LLM agent writes a review for a person).
    async fn after_escalation(&self, _event_id: &str, _alert_name: &str, _reason: &str) {}
    /// Whether this planner runs commands itself (returned in `Plan::ran`): then the
    /// pipeline looks in Prometheus before asking it, since its fix may resolve the
    /// alert before verification starts.
    fn runs_commands(&self) -> bool {
        false
    }
}

/// No LLM configured.
pub struct NoPlanner;

#[async_trait]
impl Planner for NoPlanner {
    fn name(&self) -> &'static str {
        "none"
    }
    async fn plan(&self, _ctx: &PlanContext<'_>) -> Result<Option<Plan>, String> {
        Ok(None)
    }
}

/// How one attempt ended.
enum AttemptEnd {
    /// Commands succeeded and the alert resolved (or, without Prometheus, exit status).
    Fixed { verified: bool, message: String },
    /// Worth another attempt.
    Failed(String),
    /// Stop and tell a person.
    Stop { state: AlertState, reason: String },
}

/// Tracks alerts being remediated in this process (for dependency waits and for
/// waking a verification when the resolved webhook arrives).
#[derive(Default)]
struct Active {
    /// Fingerprint → its lock (one event per fingerprint at a time).
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Fingerprint → woken when its resolved notification arrives.
    resolved: HashMap<String, Arc<Notify>>,
    /// Fingerprint → (alert name, service) of alerts being remediated now.
    remediating: HashMap<String, (String, Option<String>)>,
}

pub struct Remediator {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    runner: Arc<CommandRunner>,
    monitor: Arc<HostMonitor>,
    prometheus: Option<Prometheus>,
    maintenance: Arc<Maintenance>,
    notify: Arc<Notifications>,
    metrics: Arc<Metrics>,
    planner: Arc<dyn Planner>,
    lease: Duration,
    active: Mutex<Active>,
}

/// One alert event being handled, with its labels parsed.
struct Ctx<'a> {
    event: &'a AlertEventRow,
    owner: String,
    labels: LabelSet,
    annotations: LabelSet,
    symptom: String,
    /// The host the labels point at.
    host: Option<String>,
    attempts: Vec<RemediationRow>,
}

fn short(s: &str, max: usize) -> String {
    crate::notify::sinks::truncate(s.trim(), max)
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
            active: Mutex::new(Active::default()),
        })
    }

    fn lock_for(&self, fingerprint: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut a = self.active.lock().expect("not poisoned");
        if a.locks.len() > 10_000 {
            a.locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        a.locks.entry(fingerprint.to_owned()).or_default().clone()
    }

    fn resolved_signal(&self, fingerprint: &str) -> Arc<Notify> {
        let mut a = self.active.lock().expect("not poisoned");
        if a.resolved.len() > 10_000 {
            a.resolved.retain(|_, n| Arc::strong_count(n) > 1);
        }
        a.resolved
            .entry(fingerprint.to_owned())
            .or_default()
            .clone()
    }

    async fn set_state(&self, ctx: &Ctx<'_>, state: AlertState, reason: &str) {
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

    // ---- the resolved notification ----

    async fn on_resolved(&self, event: &AlertEventRow) -> Disposition {
        if let Err(e) = self
            .store
            .close_incidents(&event.fingerprint, now_ms())
            .await
        {
            tracing::warn!(error = %e, "Cannot close the alert's incidents.");
        }
        // Wake a verification in progress here (others poll the store for this row).
        let signal = self
            .active
            .lock()
            .expect("not poisoned")
            .resolved
            .get(&event.fingerprint)
            .cloned();
        if let Some(n) = signal {
            n.notify_waiters();
        }
        Disposition {
            state: AlertState::Resolved,
            reason: Some("resolved by Alertmanager".into()),
        }
    }

    // ---- triage ----

    async fn facts(&self, ctx: &Ctx<'_>) -> Result<Facts, StoreError> {
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
    async fn join_incident(&self, root: &AlertEventRow, ctx: &Ctx<'_>, kind: &str) {
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
    /// webhook) and, for dependencies, for its remediation to finish.
    async fn settle(&self, ctx: &Ctx<'_>) {
        let rules = &self.config.rules;
        let service = triage::service_of(&ctx.labels).map(str::to_owned);
        let deps: Vec<String> = service
            .as_deref()
            .and_then(|s| rules.dependencies.get(s))
            .cloned()
            .unwrap_or_default();
        let explainable = !triage::cascade_roots(&ctx.event.alertname, &rules.cascade).is_empty()
            || !deps.is_empty();
        if !explainable {
            return;
        }
        let settle_until =
            ctx.event.received_at + i64::try_from(rules.settle_seconds * 1000).unwrap_or(0);
        let wait = settle_until - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        if deps.is_empty() {
            return;
        }
        // Wait while a dependency is being remediated (bounded by one full remediation).
        let v = &self.config.verification;
        let limit = Duration::from_secs(
            v.max_wait_seconds + self.config.remediation.command_timeout_seconds + 30,
        );
        let started = tokio::time::Instant::now();
        let mut joined = false;
        loop {
            let local = {
                let a = self.active.lock().expect("not poisoned");
                a.remediating
                    .iter()
                    .find(|(_, (_, svc))| svc.as_ref().is_some_and(|s| deps.contains(s)))
                    .map(|(fp, (name, _))| (fp.clone(), name.clone()))
            };
            // Other replicas' remediations are in the store.
            let root = match local {
                Some(r) => Some(r),
                None => self.remote_dependency(&deps).await,
            };
            let Some((fp, name)) = root else { return };
            if !joined {
                joined = true;
                let window = i64::try_from(rules.correlation_window_seconds * 1000).unwrap_or(0);
                if let Ok(Some(r)) = self
                    .store
                    .firing_event(&name, now_ms() - window.max(0))
                    .await
                    && r.fingerprint == fp
                {
                    self.join_incident(&r, ctx, "dependency").await;
                }
                self.set_state(
                    ctx,
                    AlertState::Received,
                    &format!("waiting for {name} (a dependency) to be remediated"),
                )
                .await;
            }
            if started.elapsed() > limit {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A dependency being remediated by another process: (fingerprint, alert name).
    async fn remote_dependency(&self, deps: &[String]) -> Option<(String, String)> {
        let held = self.store.in_remediation(now_ms()).await.ok()?;
        held.into_iter().find_map(|e| {
            let labels: LabelSet = serde_json::from_str(&e.labels).unwrap_or_default();
            triage::service_of(&labels)
                .is_some_and(|s| deps.iter().any(|d| d == s))
                .then_some((e.fingerprint, e.alertname))
        })
    }

    // ---- planning ----

    async fn known_failure(&self, ctx: &Ctx<'_>, commands: &[String]) -> bool {
        let sig = library::commands_sig(commands);
        match self.store.failures_since_success(&ctx.symptom, &sig).await {
            Ok(n) => n >= KNOWN_FAILURE_AFTER,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read failure memory; treating the fix as unknown.");
                false
            }
        }
    }

    /// The first plan that applies; `Err` says why there is none.
    async fn plan(&self, ctx: &Ctx<'_>) -> Result<Plan, String> {
        let c = &self.config;
        let rows = self
            .store
            .patterns_for(&ctx.event.alertname)
            .await
            .map_err(|e| e.to_string())?;
        let learned: Vec<PatternRow> = rows
            .iter()
            .filter(|r| {
                r.origin == "learned" && !library::usable(r, c.remediation.pattern_min_confidence)
            })
            .cloned()
            .collect();
        let mut skipped_known = Vec::new();
        for cand in library::candidates(
            &ctx.event.alertname,
            &ctx.labels,
            rows,
            c.remediation.pattern_min_confidence,
        ) {
            if self.known_failure(ctx, &cand.commands).await {
                skipped_known.push(cand.row.id.clone());
                continue;
            }
            self.metrics.pattern_match(true);
            return Ok(Plan {
                source: PlanSource::Pattern,
                host: cand.host,
                learned: cand.row.origin == "learned",
                pattern_id: Some(cand.row.id.clone()),
                description: cand.row.description.clone(),
                commands: cand.commands,
                ran: Vec::new(),
                seen_firing_before: false,
            });
        }
        self.metrics.pattern_match(false);
        match hints::plan(
            &ctx.labels,
            &ctx.annotations,
            &c.rules.hints,
            c.remediation.execute_alert_hints,
        ) {
            Ok(Some(h)) if !self.known_failure(ctx, &h.commands).await => {
                return Ok(Plan {
                    source: PlanSource::Hint,
                    host: h.host,
                    commands: h.commands,
                    pattern_id: None,
                    learned: false,
                    ran: Vec::new(),
                    seen_firing_before: false,
                    description: match h.origin {
                        hints::HintOrigin::Rule(i) => format!("routing rule rules.hints[{i}]"),
                        hints::HintOrigin::Alert => "the alert's remediation_commands".into(),
                    },
                });
            }
            Ok(Some(_)) => skipped_known.push("hint".into()),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, alert = %ctx.event.alertname, "Hint cannot be applied.")
            }
        }
        let failures = self
            .store
            .list_failures(&ctx.symptom, 20)
            .await
            .map_err(|e| e.to_string())?;
        let pctx = PlanContext {
            event: ctx.event,
            labels: &ctx.labels,
            annotations: &ctx.annotations,
            host: ctx.host.as_deref(),
            failures: &failures,
            learned: &learned,
        };
        let firing_before = self.planner.runs_commands()
            && self.config.verification.enabled
            && matches!(
                self.presence(&ctx.labels).await,
                Some(Presence::Firing | Presence::Pending)
            );
        if let Some(mut p) = self.planner.plan(&pctx).await? {
            p.seen_firing_before = firing_before;
            if !p.commands.is_empty() && self.known_failure(ctx, &p.commands).await {
                skipped_known.push(self.planner.name().into());
            } else {
                return Ok(p);
            }
        }
        if skipped_known.is_empty() {
            Err(format!(
                "no remediation known: no pattern or hint matches{}",
                if self.planner.name() == "none" {
                    " and no LLM is configured"
                } else {
                    ", and the LLM proposed nothing"
                }
            ))
        } else {
            Err(format!(
                "the known fixes keep failing for this alert ({})",
                skipped_known.join(", ")
            ))
        }
    }

    // ---- one attempt ----

    async fn snapshot(&self, row: &RemediationRow, host: &str, command: &str, event_id: &str) {
        let Some(t) = triage::snapshot_target(command) else {
            return;
        };
        let out = self
            .runner
            .submit(RunRequest {
                host: host.to_owned(),
                command: t.command.clone(),
                source: Source::Operator,
                previously_verified: false,
                requested_by: "pipeline:snapshot".into(),
                alert_event_id: Some(event_id.to_owned()),
                target: None,
            })
            .await;
        let output = match out {
            Ok(RunOutcome::Completed {
                stdout,
                stderr,
                exit_code,
                ..
            }) => {
                format!(
                    "exit {}\n{stdout}{stderr}",
                    exit_code.map_or("?".into(), |c| c.to_string())
                )
            }
            Ok(other) => format!(
                "not taken: {}",
                serde_json::to_string(&other).unwrap_or_default()
            ),
            Err(e) => format!("not taken: {e}"),
        };
        let snap = SnapshotRow {
            id: new_id(),
            remediation_id: row.id.clone(),
            host: host.to_owned(),
            target: t.target,
            kind: t.kind.into(),
            command: t.command,
            output,
            taken_at: now_ms(),
        };
        if let Err(e) = self.store.insert_snapshot(&snap).await {
            tracing::warn!(error = %e, "Cannot store the state snapshot.");
        }
    }

    /// Waits for a person to decide an approval; `Ok(exit code, output)` once the
    /// approved command has run, `Err(why)` when it was not approved.
    async fn await_approval(&self, id: &str) -> Result<(Option<i64>, String), String> {
        loop {
            match self.store.get_approval(id).await {
                Ok(Some(a)) => match a.status.as_str() {
                    "pending" => {}
                    "approved" if a.output.is_some() => {
                        return Ok((a.exit_code, a.output.unwrap_or_default()));
                    }
                    "approved" => {}
                    other => {
                        return Err(format!(
                            "approval {id} {other}{}",
                            a.decided_by.map(|b| format!(" by {b}")).unwrap_or_default()
                        ));
                    }
                },
                Ok(None) => return Err(format!("approval {id} disappeared")),
                Err(e) => tracing::debug!(error = %e, "Cannot read the approval yet."),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Is the alert firing in Prometheus right now?
    async fn presence(&self, labels: &LabelSet) -> Option<Presence> {
        let p = self.prometheus.as_ref()?;
        match p.alerts().await {
            Ok(a) => Some(verify::presence(labels, &a)),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read alerts from Prometheus.");
                None
            }
        }
    }

    async fn verify(&self, ctx: &Ctx<'_>, mut tracker: Tracker) -> (Outcome, String) {
        let v = &self.config.verification;
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(v.max_wait_seconds);
        let signal = self.resolved_signal(&ctx.event.fingerprint);
        loop {
            let woken = signal.notified();
            if matches!(
                self.store
                    .resolved_event_exists(&ctx.event.fingerprint, ctx.event.starts_at)
                    .await,
                Ok(true)
            ) {
                return (
                    Outcome::Resolved,
                    format!(
                        "resolved (Alertmanager) after {}s",
                        started.elapsed().as_secs()
                    ),
                );
            }
            if let Some(p) = self.presence(&ctx.labels).await
                && let Some(o) = tracker.observe(p)
            {
                return (
                    o,
                    format!(
                        "resolved in Prometheus after {}s",
                        started.elapsed().as_secs()
                    ),
                );
            }
            if tokio::time::Instant::now() >= deadline {
                let o = tracker.timed_out();
                let msg = match o {
                    Outcome::StillFiring => format!("still firing after {}s", v.max_wait_seconds),
                    _ => format!(
                        "unverifiable: the alert was never found in Prometheus within {}s (do its labels match?)",
                        v.max_wait_seconds
                    ),
                };
                return (o, msg);
            }
            let nap = Duration::from_secs(v.poll_interval_seconds.max(1))
                .min(deadline - tokio::time::Instant::now());
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn attempt(&self, ctx: &mut Ctx<'_>, plan: &Plan) -> AttemptEnd {
        let started = now_ms();
        let host = match plan.host.as_deref().or(ctx.host.as_deref()) {
            Some(h) => h.to_owned(),
            None => {
                return AttemptEnd::Stop {
                    state: AlertState::Escalated,
                    reason: format!(
                        "a {} plan exists but no host could be determined (set remediation_host or [[hosts]] match_instances)",
                        plan.source.as_str()
                    ),
                };
            }
        };
        let mut row = RemediationRow {
            id: new_id(),
            alert_event_id: ctx.event.id.clone(),
            fingerprint: ctx.event.fingerprint.clone(),
            alert_name: ctx.event.alertname.clone(),
            alert_instance: ctx.event.instance.clone().unwrap_or_default(),
            host: host.clone(),
            source: plan.source.as_str().into(),
            pattern_id: plan.pattern_id.clone(),
            symptom: ctx.symptom.clone(),
            commands_sig: library::commands_sig(&plan.changes()),
            commands_executed: "[]".into(),
            output: String::new(),
            status: "running".into(),
            counts_as_attempt: true,
            success: false,
            verified: false,
            verification_message: String::new(),
            error_message: String::new(),
            started_at: started,
            finished_at: None,
            duration_seconds: 0.0,
        };
        if let Err(e) = self.store.insert_remediation(&row).await {
            return AttemptEnd::Failed(format!("cannot record the attempt: {e}"));
        }
        self.set_state(
            ctx,
            AlertState::Remediating,
            &format!("{}: {}", plan.source.as_str(), plan.description),
        )
        .await;
        // Seen firing before the fix, so a quick resolution is recognised as one.
        let mut tracker = Tracker::default();
        if plan.seen_firing_before {
            tracker.observe(Presence::Firing);
        }
        if self.config.verification.enabled
            && let Some(p) = self.presence(&ctx.labels).await
        {
            tracker.observe(p);
        }
        let source = match plan.source {
            PlanSource::Pattern if plan.learned => Source::Learned,
            PlanSource::Pattern | PlanSource::Hint => Source::Operator,
            PlanSource::Llm => Source::Llm,
        };
        let mut executed: Vec<String> = Vec::new();
        let mut outputs = String::new();
        let mut all_diagnostic = true;
        let mut failure: Option<String> = None;
        let mut stop: Option<(AlertState, String)> = None;
        // What the planner already ran: recorded, waited on if a person must decide,
        // never run again.
        let mut last_change_failed: Option<String> = None;
        for ran in &plan.ran {
            let command = &ran.command;
            if !matches!(ran.outcome, RanOutcome::NotRun { .. }) {
                executed.push(command.clone());
            }
            match &ran.outcome {
                RanOutcome::Completed {
                    diagnostic,
                    exit_code,
                    timed_out,
                    output,
                } => {
                    outputs.push_str(&format!("$ {command}\n{}\n", short(output, 800)));
                    if !diagnostic {
                        all_diagnostic = false;
                        last_change_failed = (*timed_out || *exit_code != Some(0)).then(|| {
                            if *timed_out {
                                format!("`{command}` timed out")
                            } else {
                                format!("`{command}` {}", exited(*exit_code))
                            }
                        });
                    }
                }
                RanOutcome::NotRun { reason } => {
                    outputs.push_str(&format!("$ {command} (not run: {})\n", short(reason, 200)));
                }
                RanOutcome::AwaitingApproval {
                    approval_id,
                    reason,
                } => {
                    all_diagnostic = false;
                    match self
                        .pause_for_approval(
                            ctx,
                            &mut row,
                            &executed,
                            (&host, command),
                            approval_id,
                            reason,
                        )
                        .await
                    {
                        Ok((out, failed)) => {
                            outputs.push_str(&out);
                            last_change_failed = failed;
                        }
                        Err(why) => {
                            stop = Some((AlertState::Escalated, why));
                            break;
                        }
                    }
                }
            }
        }
        failure = failure.or(last_change_failed);
        let commands = if stop.is_none() {
            &plan.commands[..]
        } else {
            &[]
        };
        for command in commands {
            self.snapshot(&row, &host, command, &ctx.event.id).await;
            let req = RunRequest {
                host: host.clone(),
                command: command.clone(),
                source,
                previously_verified: plan.learned,
                requested_by: "pipeline".into(),
                alert_event_id: Some(ctx.event.id.clone()),
                target: triage::snapshot_target(command).map(|t| t.target),
            };
            let outcome = match self.runner.submit(req).await {
                Ok(o) => o,
                Err(e) => {
                    failure = Some(format!("`{command}`: {e}"));
                    break;
                }
            };
            executed.push(command.clone());
            match outcome {
                RunOutcome::Completed {
                    judgement,
                    exit_code,
                    stdout,
                    stderr,
                    timed_out,
                    ..
                } => {
                    if judgement.verdict != Verdict::Diagnostic {
                        all_diagnostic = false;
                    }
                    outputs.push_str(&format!(
                        "$ {command}\n{}\n",
                        short(&format!("{stdout}{stderr}"), 800)
                    ));
                    if timed_out {
                        failure = Some(format!("`{command}` timed out"));
                    } else if exit_code != Some(0) {
                        failure = Some(format!(
                            "`{command}` {}: {}",
                            exited(exit_code),
                            short(&stderr, 300)
                        ));
                    }
                }
                RunOutcome::AwaitingApproval {
                    approval_id,
                    judgement,
                } => {
                    all_diagnostic = false;
                    match self
                        .pause_for_approval(
                            ctx,
                            &mut row,
                            &executed,
                            (&host, command),
                            &approval_id,
                            &judgement.reason,
                        )
                        .await
                    {
                        Ok((out, failed)) => {
                            outputs.push_str(&out);
                            failure = failed;
                        }
                        Err(why) => stop = Some((AlertState::Escalated, why)),
                    }
                }
                RunOutcome::Blocked { judgement } => {
                    all_diagnostic = false;
                    failure = Some(format!(
                        "`{command}` blocked by {}: {}",
                        judgement.rule, judgement.reason
                    ));
                }
                RunOutcome::RateLimited {
                    action,
                    retry_after_seconds,
                    ..
                } => {
                    failure = Some(format!(
                        "`{command}` rate limited ({action}); retry in {retry_after_seconds}s"
                    ));
                }
                RunOutcome::CircuitOpen {
                    action,
                    retry_after_seconds,
                    ..
                } => {
                    failure = Some(format!(
                        "`{command}`: circuit open for {action} on {host}; retry in {retry_after_seconds}s"
                    ));
                }
                RunOutcome::HostOffline { .. } => {
                    stop = Some((AlertState::Suppressed, "host_offline".into()));
                }
                RunOutcome::Failed { error, .. } => failure = Some(format!("`{command}`: {error}")),
            }
            if failure.is_some() || stop.is_some() {
                break;
            }
        }
        row.commands_executed = serde_json::to_string(&executed).unwrap_or_default();
        row.output = short(&outputs, 4000);
        let finish = |row: &mut RemediationRow, status: &str| {
            row.status = status.into();
            let now = now_ms();
            row.finished_at = Some(now);
            row.duration_seconds = (now - started) as f64 / 1000.0;
        };
        if let Some((state, reason)) = stop {
            row.error_message = reason.clone();
            // A person said no, or the host went away: nothing was tried to the end.
            row.counts_as_attempt = state != AlertState::Suppressed;
            finish(&mut row, "failure");
            self.record(ctx, &row, plan).await;
            return AttemptEnd::Stop { state, reason };
        }
        if let Some(f) = failure {
            row.error_message = f.clone();
            finish(&mut row, "failure");
            self.record(ctx, &row, plan).await;
            return AttemptEnd::Failed(f);
        }
        if all_diagnostic {
            row.counts_as_attempt = false;
            row.success = true;
            finish(&mut row, "diagnostic");
            self.record(ctx, &row, plan).await;
            return AttemptEnd::Stop {
                state: AlertState::Escalated,
                reason: format!(
                    "only diagnostics apply; what they showed:\n{}",
                    short(&outputs, 1500)
                ),
            };
        }
        // Verify.
        let prometheus_ok = self.prometheus.is_some() && self.config.verification.enabled;
        if !prometheus_ok {
            row.success = true;
            row.verification_message =
                "not verified: Prometheus is not configured (success by exit status)".into();
            finish(&mut row, "success");
            self.record(ctx, &row, plan).await;
            return AttemptEnd::Fixed {
                verified: false,
                message: row.verification_message.clone(),
            };
        }
        row.status = "verifying".into();
        let _ = self.store.update_remediation(&row).await;
        self.set_state(
            ctx,
            AlertState::Verifying,
            "waiting for the alert to resolve",
        )
        .await;
        let (outcome, message) = self.verify(ctx, tracker).await;
        row.verification_message = message.clone();
        match outcome {
            Outcome::Resolved => {
                row.success = true;
                row.verified = true;
                finish(&mut row, "success");
                self.record(ctx, &row, plan).await;
                AttemptEnd::Fixed {
                    verified: true,
                    message,
                }
            }
            Outcome::StillFiring => {
                row.error_message = message.clone();
                finish(&mut row, "failure");
                self.record(ctx, &row, plan).await;
                AttemptEnd::Failed(message)
            }
            Outcome::Unverifiable => {
                finish(&mut row, "unverifiable");
                self.record(ctx, &row, plan).await;
                AttemptEnd::Stop {
                    state: AlertState::Failed,
                    reason: format!("the fix ran but {message}"),
                }
            }
        }
    }

    /// Pauses the alert in `awaiting_approval`, asks people, and waits for the
    /// decision. Once approved and run: `Ok` with its output for the log and, if it
    /// failed, why. `Err` with why it did not run.
    async fn pause_for_approval(
        &self,
        ctx: &mut Ctx<'_>,
        row: &mut RemediationRow,
        executed: &[String],
        (host, command): (&str, &str),
        approval_id: &str,
        reason: &str,
    ) -> Result<(String, Option<String>), String> {
        row.status = "awaiting_approval".into();
        row.commands_executed = serde_json::to_string(executed).unwrap_or_default();
        let _ = self.store.update_remediation(row).await;
        self.set_state(
            ctx,
            AlertState::AwaitingApproval,
            &format!("approval {approval_id}: `{command}`"),
        )
        .await;
        self.notify.send(
            Message::new(
                Kind::ApprovalNeeded,
                format!("Approval needed: {} on {host}", ctx.event.alertname),
                format!("`{command}`\n{reason}"),
            )
            .field("Approve", format!("POST /approvals/{approval_id}/approve"))
            .url(self.notify.link("/approvals")),
        );
        let decided = self.await_approval(approval_id).await;
        row.status = "running".into();
        self.set_state(ctx, AlertState::Remediating, "approval decided")
            .await;
        let (code, out) = decided?;
        Ok((
            format!("$ {command} (approved)\n{}\n", short(&out, 800)),
            (code != Some(0)).then(|| format!("`{command}` (approved) {}", exited(code))),
        ))
    }

    /// Stores the attempt's end and learns from it.
    async fn record(&self, ctx: &mut Ctx<'_>, row: &RemediationRow, plan: &Plan) {
        if let Err(e) = self.store.update_remediation(row).await {
            tracing::error!(error = %e, "Cannot record the remediation outcome.");
        }
        self.metrics
            .remediation_duration(&row.alert_name, row.duration_seconds);
        ctx.attempts.push(row.clone());
        let now = now_ms();
        let learnable =
            matches!(row.status.as_str(), "success" | "failure") && row.counts_as_attempt;
        if !learnable {
            return;
        }
        let executed: Vec<String> =
            serde_json::from_str(&row.commands_executed).unwrap_or_default();
        if let Some(id) = &plan.pattern_id
            && let Err(e) = self
                .store
                .record_pattern_outcome(id, row.success, row.verified, now)
                .await
        {
            tracing::warn!(error = %e, "Cannot update the pattern's record.");
        }
        if row.success && row.verified && !plan.learned {
            // Remember the verified fix for exactly this symptom.
            let def = crate::learn::patterns::PatternDef {
                alert_name: row.alert_name.clone(),
                matchers: library::identifying(&ctx.labels),
                host: row.host.clone(),
                commands: plan.changes(),
                confidence: LEARNED_PRIOR,
                description: format!("learned from a verified {} fix", row.source),
            };
            let id = library::learned_id(&row.symptom, &row.commands_sig);
            let learned = library::row_from_def(id.clone(), "learned", &def, now);
            if let Err(e) = async {
                self.store.upsert_pattern(&learned).await?;
                self.store
                    .record_pattern_outcome(&id, true, true, now)
                    .await
            }
            .await
            {
                tracing::warn!(error = %e, "Cannot store the learned pattern.");
            }
        }
        if !row.success {
            let f = FailureRow {
                id: new_id(),
                symptom: row.symptom.clone(),
                commands_sig: row.commands_sig.clone(),
                alert_name: row.alert_name.clone(),
                commands: serde_json::to_string(if executed.is_empty() {
                    &plan.commands
                } else {
                    &executed
                })
                .unwrap_or_default(),
                reason: short(&row.error_message, 500),
                remediation_id: row.id.clone(),
                failed_at: now,
            };
            if let Err(e) = self.store.insert_failure(&f).await {
                tracing::warn!(error = %e, "Cannot store failure memory.");
            }
        }
    }

    // ---- endings ----

    fn attempts_summary(ctx: &Ctx<'_>) -> Vec<(String, String)> {
        ctx.attempts
            .iter()
            .filter(|a| a.status != "diagnostic" || !a.output.is_empty())
            .take(10)
            .map(|a| {
                let cmds: Vec<String> =
                    serde_json::from_str(&a.commands_executed).unwrap_or_default();
                (
                    format!(
                        "{} on {}: {}",
                        a.source,
                        a.host,
                        short(&cmds.join("; "), 200)
                    ),
                    short(
                        &format!(
                            "{} {}\n{}",
                            a.status,
                            if a.error_message.is_empty() {
                                &a.verification_message
                            } else {
                                &a.error_message
                            },
                            a.output
                        ),
                        1000,
                    ),
                )
            })
            .collect()
    }

    async fn escalate(&self, ctx: &Ctx<'_>, state: AlertState, reason: String) -> Disposition {
        let now = now_ms();
        let c = &self.config.remediation;
        let until = now + i64::from(c.escalation_cooldown_hours) * 3_600_000;
        if let Err(e) = self
            .store
            .set_escalation_cooldown(
                &ctx.event.fingerprint,
                &ctx.event.alertname,
                now,
                until,
                &reason,
            )
            .await
        {
            tracing::warn!(error = %e, "Cannot record the escalation cooldown.");
        }
        self.metrics
            .remediation(&ctx.event.alertname, RemediationStatus::Escalated);
        let kind = if state == AlertState::Failed {
            Kind::Failed
        } else {
            Kind::Escalated
        };
        let mut m = Message::new(
            kind,
            format!(
                "{}: {}{}",
                if kind == Kind::Failed {
                    "Failed"
                } else {
                    "Escalated"
                },
                ctx.event.alertname,
                ctx.event
                    .instance
                    .as_deref()
                    .map(|i| format!(" on {i}"))
                    .unwrap_or_default()
            ),
            reason.clone(),
        )
        .url(
            self.notify
                .link(&format!("/remediations?alert_name={}", ctx.event.alertname)),
        );
        for (k, v) in Self::attempts_summary(ctx) {
            m = m.field(k, v);
        }
        self.notify.send(m);
        tracing::warn!(alert = %ctx.event.alertname, fingerprint = %ctx.event.fingerprint, %reason, "Escalated to a person.");
        // A review for the person, in the background (the planner may call an LLM).
        let (planner, id, name, why) = (
            self.planner.clone(),
            ctx.event.id.clone(),
            ctx.event.alertname.clone(),
            reason.clone(),
        );
        tokio::spawn(async move { planner.after_escalation(&id, &name, &why).await });
        Disposition {
            state,
            reason: Some(reason),
        }
    }

    fn suppressed(&self, ctx: &Ctx<'_>, reason: String) -> Disposition {
        self.metrics.alert_suppressed(&reason);
        self.metrics
            .remediation(&ctx.event.alertname, RemediationStatus::Skipped);
        let root = match reason.as_str() {
            "host_offline" => format!("host {} offline", ctx.host.as_deref().unwrap_or("?")),
            "maintenance" => format!(
                "maintenance{}",
                ctx.host
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            ),
            r => r.to_owned(),
        };
        if reason != "escalation_cooldown" {
            self.notify.suppressed(&root, &ctx.event.alertname);
        }
        Disposition {
            state: AlertState::Suppressed,
            reason: Some(reason),
        }
    }

    async fn fixed(&self, ctx: &Ctx<'_>, verified: bool, message: String) -> Disposition {
        let _ = self
            .store
            .close_incidents(&ctx.event.fingerprint, now_ms())
            .await;
        self.metrics
            .remediation(&ctx.event.alertname, RemediationStatus::Success);
        let last = ctx.attempts.last();
        let cmds: Vec<String> = last
            .map(|a| serde_json::from_str(&a.commands_executed).unwrap_or_default())
            .unwrap_or_default();
        self.notify.send(
            Message::new(
                Kind::Fixed,
                format!(
                    "{}: {}{}",
                    if verified {
                        "Fixed and verified"
                    } else {
                        "Fixed (not verified)"
                    },
                    ctx.event.alertname,
                    ctx.event
                        .instance
                        .as_deref()
                        .map(|i| format!(" on {i}"))
                        .unwrap_or_default()
                ),
                message.clone(),
            )
            .field("Commands", short(&cmds.join("\n"), 1000))
            .field("Host", last.map(|a| a.host.clone()).unwrap_or_default())
            .field("Source", last.map(|a| a.source.clone()).unwrap_or_default()),
        );
        Disposition {
            state: AlertState::Resolved,
            reason: Some(if verified {
                format!("fixed: {message}")
            } else {
                format!("fixed ({message})")
            }),
        }
    }

    // ---- the whole flow ----

    async fn remediate(&self, ctx: &mut Ctx<'_>) -> Disposition {
        let event = ctx.event;
        // Resumed after a crash or takeover: settle what the last owner left.
        if (event.state != AlertState::Received.as_str() || event.reason.is_some())
            && let Some(d) = self.resume(ctx).await
        {
            return d;
        }
        self.settle(ctx).await;
        if matches!(
            self.store
                .resolved_event_exists(&event.fingerprint, event.starts_at)
                .await,
            Ok(true)
        ) {
            return Disposition {
                state: AlertState::Resolved,
                reason: Some("resolved by Alertmanager before remediation".into()),
            };
        }
        let facts = match self.facts(ctx).await {
            Ok(f) => f,
            Err(e) => {
                // Without the store nothing can be decided safely; leave it for later.
                tracing::warn!(error = %e, "Cannot triage yet.");
                return Disposition {
                    state: AlertState::Received,
                    reason: Some(format!("triage postponed: {e}")),
                };
            }
        };
        match triage::triage(&facts, &self.config.remediation) {
            Triage::Proceed => {}
            Triage::Suppress(reason) => return self.suppressed(ctx, reason),
            Triage::Deduplicate(reason) => {
                self.metrics
                    .remediation(&event.alertname, RemediationStatus::Skipped);
                return Disposition {
                    state: AlertState::Deduplicated,
                    reason: Some(reason),
                };
            }
            Triage::Escalate(reason) => {
                return self.escalate(ctx, AlertState::Escalated, reason).await;
            }
        }
        let _active = self.metrics.active_remediation();
        self.active
            .lock()
            .expect("not poisoned")
            .remediating
            .insert(
                event.fingerprint.clone(),
                (
                    event.alertname.clone(),
                    triage::service_of(&ctx.labels).map(str::to_owned),
                ),
            );
        let d = self.attempts(ctx, facts.attempts_in_window).await;
        self.active
            .lock()
            .expect("not poisoned")
            .remediating
            .remove(&event.fingerprint);
        d
    }

    async fn attempts(&self, ctx: &mut Ctx<'_>, mut used: i64) -> Disposition {
        let max = i64::from(self.config.remediation.max_attempts_per_alert);
        let mut last_failure = None;
        loop {
            if used >= max {
                return self
                    .escalate(
                        ctx,
                        AlertState::Escalated,
                        format!(
                            "attempts exhausted: {used} of {max} in the last {} h{}",
                            self.config.remediation.attempt_window_hours,
                            last_failure
                                .map(|f| format!("; last: {f}"))
                                .unwrap_or_default()
                        ),
                    )
                    .await;
            }
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
            match self.attempt(ctx, &plan).await {
                AttemptEnd::Fixed { verified, message } => {
                    return self.fixed(ctx, verified, message).await;
                }
                AttemptEnd::Failed(f) => {
                    self.metrics
                        .remediation(&ctx.event.alertname, RemediationStatus::Failure);
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

    /// Picks up an event a previous owner left unfinished. `Some` ends it here.
    async fn resume(&self, ctx: &mut Ctx<'_>) -> Option<Disposition> {
        let now = now_ms();
        let interrupted = self
            .store
            .interrupt_unfinished(&ctx.event.id, now)
            .await
            .unwrap_or_default();
        // An approval asked for before the restart is replaced by the one the next
        // attempt asks for, so nothing runs twice.
        if let Ok(pending) = self.store.list_approvals(Some("pending"), 1000).await {
            for a in pending
                .iter()
                .filter(|a| a.alert_event_id.as_deref() == Some(&ctx.event.id))
            {
                let _ = self
                    .store
                    .decide_approval(&a.id, "superseded", "jarvis", now)
                    .await;
            }
        }
        tracing::info!(alert = %ctx.event.alertname, state = %ctx.event.state, interrupted = interrupted.len(), "Resuming an alert event.");
        if interrupted.is_empty() {
            return None;
        }
        if self.prometheus.is_some() {
            // A command may have run: look before running anything again.
            match self.presence(&ctx.labels).await {
                Some(Presence::Absent) => {
                    return Some(Disposition {
                        state: AlertState::Resolved,
                        reason: Some("not firing in Prometheus after the restart; the interrupted fix is not re-run".into()),
                    });
                }
                Some(_) => return None,
                None => {}
            }
        }
        Some(
            self.escalate(
                ctx,
                AlertState::Escalated,
                "a remediation was interrupted by a restart and its effect cannot be checked (Prometheus unavailable); not re-running it".into(),
            )
            .await,
        )
    }
}

#[async_trait]
impl Pipeline for Remediator {
    async fn process(&self, event: &AlertEventRow) -> Disposition {
        if event.status == "resolved" {
            return self.on_resolved(event).await;
        }
        let lock = self.lock_for(&event.fingerprint);
        let _one_at_a_time = lock.lock().await;
        let labels: LabelSet = serde_json::from_str(&event.labels).unwrap_or_default();
        let annotations: LabelSet = serde_json::from_str(&event.annotations).unwrap_or_default();
        let host = resolve_host(&labels, &self.config.hosts)
            .ok()
            .map(|h| h.name.clone());
        let mut ctx = Ctx {
            event,
            owner: event.claimed_by.clone().unwrap_or_default(),
            symptom: library::symptom(&event.alertname, &labels),
            labels,
            annotations,
            host,
            attempts: Vec::new(),
        };
        self.remediate(&mut ctx).await
    }
}
