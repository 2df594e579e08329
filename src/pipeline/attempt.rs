//! One attempt: run a plan's steps through the gate, park for approvals, conclude, and
//! hand the change to verification.
//!
//! The attempt's state is a [`Running`]: plain data, stored with the event while it is
//! parked, so the attempt resumes exactly after the step it stopped at (on any
//! replica, after any restart) and never runs a step twice.

use serde::{Deserialize, Serialize};

use super::plan::{Plan, PlanSource};
use super::remediate::{Ctx, Remediator, Waiting};
use super::step::{AttemptLog, By, Ending, Next, Refusal, Step, StepOutcome, short};
use super::triage;
use super::verify::{Presence, Tracker};
use super::{Disposition, Park};
use crate::domain::alert::AlertState;
use crate::domain::ids::{new_id, now_ms};
use crate::exec::runner::{RunOutcome, RunRequest};
use crate::learn::library;
use crate::notify::{Kind, Message};
use crate::safety::Source;
use crate::store::{ApprovalRow, ApprovalStatus, AttemptStatus, RemediationRow, SnapshotRow};

/// An attempt in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    /// Its remediation_log row.
    pub remediation_id: String,
    pub plan: Plan,
    pub host: String,
    pub log: AttemptLog,
    /// The next step: the planner's commands (`plan.ran`) first, then the plan's.
    pub next: usize,
    /// What verification has seen of the alert in Prometheus so far.
    pub tracker: Tracker,
    /// Attempts used in the window before this one began, and the last failure: the
    /// attempt loop's state, so it goes on after a park.
    pub used: i64,
    pub last_failure: Option<String>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Commands succeeded and the alert resolved (or, without Prometheus, exit status).
    Fixed { verified: bool, message: String },
    /// Worth another attempt.
    Failed(String),
    /// Stop and tell a person.
    Stop { state: AlertState, reason: String },
}

/// Where an attempt is after running as far as it can now.
pub enum Flow {
    /// The event leaves the worker with this disposition: parked (its slot is freed
    /// and it resumes later) or done.
    Leave(Disposition),
    End(AttemptEnd, Box<Running>),
}

/// What a decided (or undecided) approval means for the step it holds. `None`: not
/// decided yet, look again at `resume_at`. Pure: `now` is passed in.
pub fn approval_step(
    id: &str,
    a: Option<&ApprovalRow>,
    now: i64,
    result_grace_ms: i64,
) -> Result<StepOutcome, i64> {
    let Some(a) = a else {
        return Ok(StepOutcome::NotApproved {
            why: format!("approval {id} disappeared"),
        });
    };
    let by = a
        .decided_by
        .as_deref()
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    match a.status {
        ApprovalStatus::Pending if now >= a.expires_at => Ok(StepOutcome::NotApproved {
            why: format!("approval {id} expired undecided"),
        }),
        ApprovalStatus::Pending => Err(a.expires_at),
        ApprovalStatus::Approved => match &a.output {
            Some(output) => Ok(StepOutcome::Approved {
                exit_code: a.exit_code,
                output: output.clone(),
            }),
            // Approved and running now: its result is recorded when it ends.
            None => {
                let by = a.decided_at.unwrap_or(now) + result_grace_ms;
                if now < by {
                    Err((now + 1_000).min(by))
                } else {
                    Ok(StepOutcome::NotApproved {
                        why: format!(
                            "approval {id} was approved but its result was never recorded"
                        ),
                    })
                }
            }
        },
        other => Ok(StepOutcome::NotApproved {
            why: format!("approval {id} {other}{by}"),
        }),
    }
}

impl Remediator {
    /// Starts an attempt at `plan`.
    pub(super) async fn attempt(
        &self,
        ctx: &Ctx<'_>,
        plan: Plan,
        used: i64,
        last_failure: Option<String>,
    ) -> Flow {
        // A plan of typed actions only needs no host: the integration is the target.
        let only_actions = !plan.commands.is_empty()
            && plan
                .commands
                .iter()
                .all(|c| crate::exec::action::Action::is_step(c));
        let host = match plan.host.as_deref().or(ctx.host.as_deref()) {
            Some(h) => h.to_owned(),
            None if only_actions => crate::exec::action::APPROVAL_HOST.to_owned(),
            None => {
                let reason = format!(
                    "a {} plan exists but no host could be determined (set remediation_host or [[hosts]] match_instances)",
                    plan.source.as_str()
                );
                return self.end(
                    AttemptEnd::Stop {
                        state: AlertState::Escalated,
                        reason,
                    },
                    plan,
                    String::new(),
                    used,
                    last_failure,
                );
            }
        };
        let row = RemediationRow {
            id: new_id(),
            alert_event_id: ctx.event.id.clone(),
            fingerprint: ctx.event.fingerprint.clone(),
            alert_name: ctx.event.alertname.clone(),
            alert_instance: ctx.event.instance.clone().unwrap_or_default(),
            host: host.clone(),
            source: plan.source,
            pattern_id: plan.pattern_id.clone(),
            symptom: ctx.symptom.clone(),
            commands_sig: library::commands_sig(&plan.changes()),
            commands_executed: "[]".into(),
            output: String::new(),
            status: AttemptStatus::Running,
            counts_as_attempt: true,
            success: false,
            verified: false,
            verification_message: String::new(),
            error_message: String::new(),
            started_at: now_ms(),
            finished_at: None,
            duration_seconds: 0.0,
        };
        if let Err(e) = self.store.insert_remediation(&row).await {
            let end = AttemptEnd::Failed(format!("cannot record the attempt: {e}"));
            return self.end(end, plan, host, used, last_failure);
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
            tracker.observe(super::verify::Presence::Firing);
        }
        if self.config.verification.enabled
            && let Some(p) = self.presence(&ctx.labels).await
        {
            tracker.observe(p);
        }
        let run = Running {
            remediation_id: row.id,
            plan,
            host,
            log: AttemptLog::default(),
            next: 0,
            tracker,
            used,
            last_failure,
        };
        self.drive(ctx, run).await
    }

    fn end(
        &self,
        end: AttemptEnd,
        plan: Plan,
        host: String,
        used: i64,
        last_failure: Option<String>,
    ) -> Flow {
        Flow::End(
            end,
            Box::new(Running {
                remediation_id: String::new(),
                plan,
                host,
                log: AttemptLog::default(),
                next: 0,
                tracker: Tracker::default(),
                used,
                last_failure,
            }),
        )
    }

    /// Runs the steps from `run.next` until one parks or stops the attempt, or none
    /// is left; then concludes.
    async fn drive(&self, ctx: &Ctx<'_>, mut run: Running) -> Flow {
        let source = match run.plan.source {
            PlanSource::Pattern if run.plan.learned => Source::Learned,
            PlanSource::Pattern | PlanSource::Hint => Source::Operator,
            PlanSource::Llm => Source::Llm,
        };
        let planned = run.plan.ran.len();
        loop {
            let i = run.next;
            let (command, by, outcome) = if let Some(ran) = run.plan.ran.get(i) {
                (ran.command.clone(), By::Planner, ran.outcome.clone())
            } else if let Some(command) = run.plan.commands.get(i - planned) {
                let command = command.clone();
                let outcome = self.run_step(ctx, &run, &command, source).await;
                (command, By::Pipeline, outcome)
            } else {
                break;
            };
            run.next += 1;
            match run.log.apply(Step {
                command: &command,
                by,
                outcome,
            }) {
                Next::Continue => {}
                Next::Stop => break,
                Next::AwaitApproval {
                    approval_id,
                    reason,
                } => {
                    return self
                        .park_for_approval(ctx, run, approval_id, reason, command, by)
                        .await;
                }
            }
        }
        self.conclude(ctx, run).await
    }

    async fn run_step(
        &self,
        ctx: &Ctx<'_>,
        run: &Running,
        command: &str,
        source: Source,
    ) -> StepOutcome {
        self.snapshot(&run.remediation_id, &run.host, command, &ctx.event.id)
            .await;
        let req = RunRequest {
            host: run.host.clone(),
            command: command.to_owned(),
            source,
            previously_verified: run.plan.learned,
            requested_by: "pipeline".into(),
            alert_event_id: Some(ctx.event.id.clone()),
            target: triage::snapshot_target(command).map(|t| t.target),
        };
        match self.runner.submit(req).await {
            Ok(o) => StepOutcome::from(o),
            Err(e) => StepOutcome::Refused {
                refusal: Refusal::CouldNotRun,
                why: e.to_string(),
            },
        }
    }

    /// Parks the attempt until a person decides, and asks people.
    async fn park_for_approval(
        &self,
        ctx: &Ctx<'_>,
        run: Running,
        approval_id: String,
        reason: String,
        command: String,
        by: By,
    ) -> Flow {
        if let Ok(Some(mut row)) = self.store.get_remediation(&run.remediation_id).await {
            row.status = AttemptStatus::AwaitingApproval;
            row.commands_executed = serde_json::to_string(&run.log.executed).unwrap_or_default();
            let _ = self.store.update_remediation(&row).await;
        }
        let m = Message::new(
            Kind::ApprovalNeeded,
            format!("Approval needed: {} on {}", ctx.event.alertname, run.host),
            format!("`{command}`\n{reason}"),
        )
        .field("Approve", format!("POST /approvals/{approval_id}/approve"))
        .url(self.notify.link("/approvals"));
        let note = self.notify.outbox(&m, Some(&ctx.event.id));
        let ttl = i64::try_from(self.config.safety.approval_ttl_seconds * 1000).unwrap_or(0);
        match self.park_approval(run, approval_id, command, by, now_ms() + ttl + 1_000) {
            Flow::Leave(d) => Flow::Leave(d.note(note)),
            end => end,
        }
    }

    fn park_approval(
        &self,
        run: Running,
        approval_id: String,
        command: String,
        by: By,
        resume_at: i64,
    ) -> Flow {
        let reason = format!("approval {approval_id}: `{command}`");
        let mut park = Park::until(
            resume_at,
            &Waiting::Approval {
                approval_id: approval_id.clone(),
                command,
                by,
                attempt: run,
            },
        );
        park.approval_id = Some(approval_id);
        Flow::Leave(Disposition::parked(
            AlertState::AwaitingApproval,
            reason,
            park,
        ))
    }

    /// Resumes a parked attempt once its approval may have been decided.
    pub(super) async fn after_approval(
        &self,
        ctx: &Ctx<'_>,
        approval_id: &str,
        command: &str,
        by: By,
        mut run: Running,
    ) -> Flow {
        let now = now_ms();
        let approval = match self.store.get_approval(approval_id).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "Cannot read the approval yet.");
                return self.park_approval(
                    run,
                    approval_id.into(),
                    command.into(),
                    by,
                    now + 5_000,
                );
            }
        };
        let grace = i64::try_from(self.config.remediation.command_timeout_seconds * 1000 + 60_000)
            .unwrap_or(i64::MAX);
        let outcome = match approval_step(approval_id, approval.as_ref(), now, grace) {
            Ok(o) => o,
            // Not decided. If the alert resolved meanwhile, the fix is not needed: the
            // attempt ends without counting, teaching or escalating anything.
            Err(resume_at) => {
                if self.resolved_meanwhile(ctx.event).await
                    && let Ok(true) = self
                        .store
                        .decide_approval(approval_id, "superseded", "jarvis", now)
                        .await
                {
                    if let Ok(Some(mut row)) = self.store.get_remediation(&run.remediation_id).await
                    {
                        row.counts_as_attempt = false;
                        row.error_message =
                            format!("resolved before approval {approval_id} was decided");
                        self.close(ctx, &mut row, &run.plan, AttemptStatus::Superseded)
                            .await;
                    }
                    return Flow::Leave(Disposition::done(
                        AlertState::Resolved,
                        format!(
                            "resolved by Alertmanager before approval {approval_id} was decided; nothing ran"
                        ),
                    ));
                }
                return self.park_approval(run, approval_id.into(), command.into(), by, resume_at);
            }
        };
        self.set_state(ctx, AlertState::Remediating, "approval decided")
            .await;
        match run.log.apply(Step {
            command,
            by,
            outcome,
        }) {
            Next::Stop => self.conclude(ctx, run).await,
            Next::Continue | Next::AwaitApproval { .. } => {
                if let Ok(Some(mut row)) = self.store.get_remediation(&run.remediation_id).await {
                    row.status = AttemptStatus::Running;
                    let _ = self.store.update_remediation(&row).await;
                }
                self.drive(ctx, run).await
            }
        }
    }

    /// Records how the steps ended; a change goes on to verification.
    async fn conclude(&self, ctx: &Ctx<'_>, run: Running) -> Flow {
        let Ok(Some(mut row)) = self.store.get_remediation(&run.remediation_id).await else {
            let end = AttemptEnd::Failed("the attempt's record cannot be read".into());
            return Flow::End(end, Box::new(run));
        };
        row.commands_executed = serde_json::to_string(&run.log.executed).unwrap_or_default();
        row.output = short(&run.log.output, 4000);
        let end = match run.log.ending() {
            Ending::Stopped { state, reason } => {
                row.error_message = reason.clone();
                // A person said no, or the host went away: nothing was tried to the end.
                row.counts_as_attempt = state != AlertState::Suppressed;
                self.close(ctx, &mut row, &run.plan, AttemptStatus::Failure)
                    .await;
                AttemptEnd::Stop { state, reason }
            }
            Ending::Failed(f) => {
                row.error_message = f.clone();
                self.close(ctx, &mut row, &run.plan, AttemptStatus::Failure)
                    .await;
                AttemptEnd::Failed(f)
            }
            Ending::DiagnosticOnly => {
                row.counts_as_attempt = false;
                row.success = true;
                self.close(ctx, &mut row, &run.plan, AttemptStatus::Diagnostic)
                    .await;
                AttemptEnd::Stop {
                    state: AlertState::Escalated,
                    reason: format!(
                        "only diagnostics apply; what they showed:\n{}",
                        short(&run.log.output, 1500)
                    ),
                }
            }
            Ending::Changed if self.prometheus.is_none() || !self.config.verification.enabled => {
                row.success = true;
                row.verification_message =
                    "not verified: Prometheus is not configured (success by exit status)".into();
                self.close(ctx, &mut row, &run.plan, AttemptStatus::Success)
                    .await;
                AttemptEnd::Fixed {
                    verified: false,
                    message: row.verification_message.clone(),
                }
            }
            Ending::Changed => {
                row.status = AttemptStatus::Verifying;
                let _ = self.store.update_remediation(&row).await;
                self.set_state(
                    ctx,
                    AlertState::Verifying,
                    "waiting for the alert to resolve",
                )
                .await;
                let now = now_ms();
                let wait = i64::try_from(self.config.verification.max_wait_seconds * 1000)
                    .unwrap_or(i64::MAX);
                return self.verification(ctx, run, now, now + wait).await;
            }
        };
        Flow::End(end, Box::new(run))
    }

    /// Ends the attempt's row with `status`, stores it and learns from it.
    pub(super) async fn close(
        &self,
        ctx: &Ctx<'_>,
        row: &mut RemediationRow,
        plan: &Plan,
        status: AttemptStatus,
    ) {
        if row.finished_at.is_some() {
            // Closed before a crash cut the rest short: learn from it only once.
            return;
        }
        let now = now_ms();
        row.status = status;
        row.finished_at = Some(now);
        row.duration_seconds = (now - row.started_at) as f64 / 1000.0;
        if let Err(e) = self.store.update_remediation(row).await {
            tracing::error!(error = %e, "Cannot record the remediation outcome.");
        }
        self.metrics
            .remediation_duration(&row.alert_name, row.duration_seconds);
        crate::learn::record::learn(&*self.store, row, plan, &ctx.labels, now).await;
    }

    /// Picks up an event a previous owner left unfinished while working on it (not
    /// parked). `Some` ends it here.
    pub(super) async fn resume(&self, ctx: &Ctx<'_>) -> Option<Disposition> {
        let now = now_ms();
        let interrupted = self
            .store
            .interrupt_unfinished(&ctx.event.id, now)
            .await
            .unwrap_or_default();
        // An approval asked for just before the crash (before the event was parked)
        // is replaced by the one the next attempt asks for, so nothing runs twice.
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
                    return Some(Disposition::done(
                        AlertState::Resolved,
                        "not firing in Prometheus after the restart; the interrupted fix is not re-run",
                    ));
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

    /// Keeps the state of what a command is about to change (container, unit), so a
    /// person can see what it was.
    async fn snapshot(&self, remediation_id: &str, host: &str, command: &str, event_id: &str) {
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
            remediation_id: remediation_id.to_owned(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(status: &str, output: Option<&str>, decided_at: Option<i64>) -> ApprovalRow {
        ApprovalRow {
            id: "a1".into(),
            host: "h".into(),
            command: "c".into(),
            source: Source::Operator,
            verdict: "approval_required".into(),
            rule: "r".into(),
            reason: "why".into(),
            digest: "d".into(),
            status: ApprovalStatus::parse(status).unwrap(),
            requested_by: "pipeline".into(),
            alert_event_id: Some("e".into()),
            requested_at: 0,
            expires_at: 10_000,
            decided_by: decided_at.map(|_| "jordan".into()),
            decided_at,
            exit_code: output.map(|_| 0),
            output: output.map(str::to_owned),
            explanation: String::new(),
        }
    }

    #[test]
    fn what_an_approval_means_for_its_step() {
        let not = |why: &str| Ok(StepOutcome::NotApproved { why: why.into() });
        assert_eq!(
            approval_step("a1", None, 0, 100),
            not("approval a1 disappeared")
        );
        let pending = approval("pending", None, None);
        assert_eq!(approval_step("a1", Some(&pending), 5_000, 100), Err(10_000));
        assert_eq!(
            approval_step("a1", Some(&pending), 10_000, 100),
            not("approval a1 expired undecided")
        );
        let ran = approval("approved", Some("ok"), Some(1_000));
        assert_eq!(
            approval_step("a1", Some(&ran), 2_000, 100),
            Ok(StepOutcome::Approved {
                exit_code: Some(0),
                output: "ok".into()
            })
        );
        // Approved and still running: look again soon, but not forever.
        let running = approval("approved", None, Some(1_000));
        assert_eq!(
            approval_step("a1", Some(&running), 1_000, 5_000),
            Err(2_000)
        );
        assert_eq!(
            approval_step("a1", Some(&running), 5_500, 5_000),
            Err(6_000)
        );
        assert!(matches!(
            approval_step("a1", Some(&running), 6_000, 5_000),
            Ok(StepOutcome::NotApproved { .. })
        ));
        let denied = approval("denied", None, Some(1_000));
        assert_eq!(
            approval_step("a1", Some(&denied), 2_000, 100),
            not("approval a1 denied by jordan")
        );
    }
}
