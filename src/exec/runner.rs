//! The one way a command runs: judged by the safety gate, audited, held for approval
//! when policy says so, rate limited per action, stopped by a circuit breaker when an
//! action keeps failing on a host, serialised per host and target when it changes
//! state, and only then executed (SSH or local).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::action::{self, Action, ActionKind, ActionPolicy};
use super::monitor::{HostMonitor, HostState};
use super::ssh::SshExecutor;
use super::{CommandOutput, ExecError, local};
use crate::config::{Config, HostConfig};
use crate::domain::ids::{new_id, now_ms};
use crate::safety::{self, Context, Judgement, Policy, Source, Verdict};
use crate::store::{ApprovalRow, ApprovalStatus, AuditRow, Store, StoreError};

/// Longest a judgement may take (they take microseconds).
const JUDGE_DEADLINE: Duration = Duration::from_secs(2);

pub use super::limits::OpenBreaker;

/// A command someone wants run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// A configured host name or alias.
    pub host: String,
    pub command: String,
    pub source: Source,
    /// For learned commands: this exact command was verified to work before.
    pub previously_verified: bool,
    /// Who asked (for the audit log): "pipeline", "api", ...
    pub requested_by: String,
    pub alert_event_id: Option<String>,
    /// What the command acts on (a container, a unit). Mutating commands on the same
    /// host and target run one at a time; without one, the whole host is the target.
    pub target: Option<String>,
}

/// What happened to a request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RunOutcome {
    Completed {
        judgement: Judgement,
        exit_code: Option<i32>,
        stdout: String,
        stderr: String,
        timed_out: bool,
        duration_ms: u64,
    },
    Blocked {
        judgement: Judgement,
    },
    AwaitingApproval {
        judgement: Judgement,
        approval_id: String,
    },
    RateLimited {
        judgement: Judgement,
        action: String,
        retry_after_seconds: u64,
    },
    CircuitOpen {
        judgement: Judgement,
        action: String,
        retry_after_seconds: u64,
    },
    HostOffline {
        judgement: Judgement,
    },
    Failed {
        judgement: Judgement,
        error: String,
    },
}

impl RunOutcome {
    /// True when the command ran and exited 0.
    pub fn succeeded(&self) -> bool {
        matches!(
            self,
            Self::Completed {
                exit_code: Some(0),
                timed_out: false,
                ..
            }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown host {0:?}; configured hosts: {1}")]
    UnknownHost(String, String),
    #[error("no approval {0:?}")]
    NotFound(String),
    #[error("approval {0} is already {1}")]
    AlreadyDecided(String, String),
    #[error("approval {0} expired before it was decided")]
    Expired(String),
    #[error("approval {0} does not match its digest; refusing to run it")]
    Tampered(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// (host, target) of a state-changing command.
type HostTarget = (String, String);

pub struct CommandRunner {
    policy: Arc<Policy>,
    hosts: Vec<HostConfig>,
    ssh: Arc<SshExecutor>,
    store: Arc<dyn Store>,
    monitor: Arc<HostMonitor>,
    command_timeout: Duration,
    rate_limit_per_minute: u32,
    approval_ttl: Duration,
    target_locks: Mutex<HashMap<HostTarget, Arc<tokio::sync::Mutex<()>>>>,
    /// `jarvis_commands_total{verdict,source}`, when the service has metrics.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Pokes the worker when a decision wakes a parked alert.
    wake: Option<Arc<crate::intake::StorageStatus>>,
    /// The integrations typed actions go through.
    homeassistant: Option<crate::integrations::homeassistant::HomeAssistant>,
    n8n: Option<crate::integrations::n8n::N8n>,
    allow_services: Vec<String>,
    allow_apps: Vec<String>,
}

/// What an approved request runs on.
enum Target {
    Host(HostConfig),
    Action(Action),
}

/// SHA-256 of host and command: what an approval promises to run.
pub fn approval_digest(host: &str, command: &str) -> String {
    let mut h = Sha256::new();
    h.update(host.as_bytes());
    h.update([0]);
    h.update(command.as_bytes());
    format!("{:x}", h.finalize())
}

fn output_digest(o: &CommandOutput) -> String {
    let mut h = Sha256::new();
    h.update(o.stdout.as_bytes());
    h.update([0]);
    h.update(o.stderr.as_bytes());
    format!("{:x}", h.finalize())
}

impl CommandRunner {
    pub fn new(
        config: &Config,
        ssh: Arc<SshExecutor>,
        store: Arc<dyn Store>,
        monitor: Arc<HostMonitor>,
    ) -> Result<Self, String> {
        Ok(Self {
            policy: Arc::new(Policy::for_config(config)?),
            hosts: config.hosts.clone(),
            ssh,
            store,
            monitor,
            command_timeout: Duration::from_secs(config.remediation.command_timeout_seconds),
            rate_limit_per_minute: config.safety.rate_limit_per_minute,
            approval_ttl: Duration::from_secs(config.safety.approval_ttl_seconds),
            target_locks: Mutex::new(HashMap::new()),
            metrics: None,
            wake: None,
            homeassistant: crate::integrations::homeassistant::HomeAssistant::from_config(
                &config.homeassistant,
            )
            .map_err(|e| format!("homeassistant: {e}"))?,
            n8n: crate::integrations::n8n::N8n::from_config(&config.n8n)
                .map_err(|e| format!("n8n: {e}"))?,
            allow_services: config.homeassistant.allow_services.clone(),
            allow_apps: config.homeassistant.allow_apps.clone(),
        })
    }

    /// Counts every judgement in `jarvis_commands_total`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Decisions wake the alert parked on them through `status` (the worker listens).
    pub fn with_wake(mut self, status: Arc<crate::intake::StorageStatus>) -> Self {
        self.wake = Some(status);
        self
    }

    /// The alert parked on approval `a` may go on: make it due now and tell the
    /// worker (any replica's worker finds it due at its next poll).
    async fn wake_for(&self, a: &ApprovalRow) {
        let Some(event) = &a.alert_event_id else {
            return;
        };
        match self.store.wake_alert_event(event, now_ms()).await {
            Ok(true) => {
                if let Some(s) = &self.wake {
                    s.new_events.notify_waiters();
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, approval = %a.id, "Cannot wake the alert waiting for this approval; it resumes when its wait ends.")
            }
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn host(&self, name: &str) -> Result<&HostConfig, RunError> {
        self.hosts
            .iter()
            .find(|h| h.name == name || h.aliases.iter().any(|a| a == name))
            .ok_or_else(|| {
                let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
                RunError::UnknownHost(
                    name.to_owned(),
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                )
            })
    }

    /// An audit entry about an approval.
    fn approval_audit(
        kind: &str,
        a: &ApprovalRow,
        verdict: &str,
        rule: &str,
        actor: &str,
        detail: String,
    ) -> AuditRow {
        AuditRow {
            kind: kind.into(),
            source: a.source.as_str().into(),
            verdict: verdict.into(),
            rule: rule.into(),
            host: a.host.clone(),
            command: a.command.clone(),
            actor: actor.into(),
            detail,
            ..AuditRow::default()
        }
    }

    async fn audit(&self, row: AuditRow) {
        if let Err(e) = self
            .store
            .insert_audit(&AuditRow {
                id: new_id(),
                at: now_ms(),
                ..row
            })
            .await
        {
            // The audit log matters, but a database outage must not stop remediation.
            tracing::error!(error = %e, "Cannot write the audit log.");
        }
    }

    /// Judges on a blocking thread with a deadline: should the shell parser ever hang or
    /// panic on some input, the command is blocked and the caller carries on. Returns
    /// the gate's explanation too (kept with approvals, so a person sees why).
    async fn judge_bounded(
        &self,
        command: &str,
        host: &str,
        source: Source,
        previously_verified: bool,
    ) -> (Judgement, Vec<String>) {
        let (policy, command, host) = (self.policy.clone(), command.to_owned(), host.to_owned());
        let task = tokio::task::spawn_blocking(move || {
            let ctx = Context {
                host: Some(&host),
                source,
                previously_verified,
            };
            safety::explain(&command, &ctx, &policy)
        });
        let failed = |why: &str| Judgement {
            verdict: Verdict::Blocked,
            reason: why.to_owned(),
            rule: "gate-failure".into(),
        };
        match tokio::time::timeout(JUDGE_DEADLINE, task).await {
            Ok(Ok(j)) => j,
            Ok(Err(_)) => (failed("the safety gate failed on this command"), Vec::new()),
            Err(_) => {
                tracing::error!("The safety gate took too long on a command; it is blocked.");
                (
                    failed("the safety gate took too long on this command"),
                    Vec::new(),
                )
            }
        }
    }

    /// The Home Assistant client, when configured (the agent reads states with it).
    pub fn homeassistant(&self) -> Option<&crate::integrations::homeassistant::HomeAssistant> {
        self.homeassistant.as_ref()
    }

    fn action_policy(&self) -> ActionPolicy<'_> {
        ActionPolicy {
            homeassistant: self.homeassistant.is_some(),
            n8n: self.n8n.is_some(),
            allow_services: &self.allow_services,
            allow_apps: &self.allow_apps,
        }
    }

    /// Judges and, when policy allows, runs a command, or a typed action (a step
    /// starting with `@`, see `exec::action`): the same verdicts, audit, approvals,
    /// rate limits and breakers.
    pub async fn submit(&self, req: RunRequest) -> Result<RunOutcome, RunError> {
        let (target, j, explanation) = if Action::is_step(&req.command) {
            let j = match Action::parse(&req.command) {
                Ok(a) => {
                    let j = action::judge(&a, req.source, &self.action_policy());
                    (Target::Action(a), j)
                }
                Err(why) => {
                    let j = Judgement {
                        verdict: Verdict::Blocked,
                        rule: "action-unreadable".into(),
                        reason: why,
                    };
                    let written = crate::notify::sinks::truncate(&req.command, 500);
                    self.judged(&req, action::APPROVAL_HOST, &written, &j).await;
                    return Ok(RunOutcome::Blocked { judgement: j });
                }
            };
            let (target, j) = j;
            (target, j, Vec::new())
        } else {
            let host = self.host(&req.host)?.clone();
            let (j, explanation) = self
                .judge_bounded(
                    &req.command,
                    &host.name,
                    req.source,
                    req.previously_verified,
                )
                .await;
            (Target::Host(host), j, explanation)
        };
        // Approvals and audits name the host, or the action's pseudo-host.
        let (host_name, command) = match &target {
            Target::Host(h) => (h.name.clone(), req.command.clone()),
            Target::Action(a) => (action::APPROVAL_HOST.to_owned(), a.text()),
        };
        self.judged(&req, &host_name, &command, &j).await;
        match j.verdict {
            Verdict::Blocked => Ok(RunOutcome::Blocked { judgement: j }),
            Verdict::ApprovalRequired => {
                let now = now_ms();
                let row = ApprovalRow {
                    id: new_id(),
                    host: host_name.clone(),
                    command: command.clone(),
                    source: req.source,
                    verdict: j.verdict.as_str().into(),
                    rule: j.rule.clone(),
                    reason: j.reason.clone(),
                    digest: approval_digest(&host_name, &command),
                    status: ApprovalStatus::Pending,
                    requested_by: req.requested_by.clone(),
                    alert_event_id: req.alert_event_id.clone(),
                    requested_at: now,
                    expires_at: now
                        + i64::try_from(self.approval_ttl.as_millis()).unwrap_or(i64::MAX),
                    decided_by: None,
                    decided_at: None,
                    exit_code: None,
                    output: None,
                    explanation: explanation.join("\n"),
                };
                self.store.insert_approval(&row).await?;
                self.audit(Self::approval_audit(
                    "approval_requested",
                    &row,
                    &row.verdict,
                    &row.rule,
                    &req.requested_by,
                    format!("approval {}", row.id),
                ))
                .await;
                Ok(RunOutcome::AwaitingApproval {
                    judgement: j,
                    approval_id: row.id,
                })
            }
            Verdict::Diagnostic | Verdict::Allowed => Ok(match &target {
                Target::Host(host) => {
                    self.execute(
                        host,
                        &req.command,
                        req.source,
                        j,
                        &req.requested_by,
                        req.target.as_deref(),
                    )
                    .await
                }
                Target::Action(a) => {
                    self.execute_action(a, req.source, j, &req.requested_by)
                        .await
                }
            }),
        }
    }

    /// Tells what the gate (or the action policy) decided: the event and the audit row.
    async fn judged(&self, req: &RunRequest, host: &str, command: &str, j: &Judgement) {
        crate::events::CommandJudged {
            host,
            source: req.source,
            verdict: j.verdict,
            rule: &j.rule,
        }
        .emit(self.metrics.as_deref());
        self.audit(AuditRow {
            kind: "judged".into(),
            source: req.source.as_str().into(),
            verdict: j.verdict.as_str().into(),
            rule: j.rule.clone(),
            host: host.into(),
            command: command.into(),
            actor: req.requested_by.clone(),
            detail: j.reason.clone(),
            ..AuditRow::default()
        })
        .await;
    }

    /// Takes a slot in the rule's rate limit and checks the breaker of `(host,
    /// target)`; `Err` is the outcome that refuses the run. Limits and breakers are
    /// shared by the replicas through the database: when it cannot be read, nothing
    /// runs.
    async fn admit(
        &self,
        j: Judgement,
        host: &str,
        target: &str,
    ) -> Result<(Judgement, super::limits::Breaker), RunOutcome> {
        let now = now_ms();
        let limits = async {
            let slot = self
                .store
                .take_rate_slot(&j.rule, self.rate_limit_per_minute, now)
                .await?;
            let breaker = self.store.breaker(host, target).await?;
            Ok::<_, StoreError>((slot, breaker))
        };
        match limits.await {
            Ok((Err(retry_after_seconds), _)) => Err(RunOutcome::RateLimited {
                action: j.rule.clone(),
                judgement: j,
                retry_after_seconds,
            }),
            Ok((Ok(()), b)) => match b.allows(now) {
                Err(retry_after_seconds) => Err(RunOutcome::CircuitOpen {
                    action: j.rule.clone(),
                    judgement: j,
                    retry_after_seconds,
                }),
                Ok(()) => Ok((j, b)),
            },
            Err(e) => Err(RunOutcome::Failed {
                judgement: j,
                error: format!("cannot check the rate limit and circuit breaker ({e}); not run"),
            }),
        }
    }

    /// Runs an allowed action through its integration, within the same rate limits
    /// and breakers as commands (the breaker is per action kind and target). A failed
    /// call is a completed run that exited 1, with the integration's error as stderr.
    async fn execute_action(
        &self,
        a: &Action,
        source: Source,
        j: Judgement,
        actor: &str,
    ) -> RunOutcome {
        let breaker_host = format!("{}{}", action::PREFIX, a.kind);
        let (j, breaker) = match self.admit(j, &breaker_host, a.target()).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        // One action per kind and target at a time (two restarts of one app would
        // overlap), as state-changing commands per host and target.
        let lock = self.target_lock(&breaker_host, a.target());
        let _one_at_a_time = lock.lock().await;
        let started = std::time::Instant::now();
        let data = |skip: &str| -> serde_json::Value {
            a.args
                .iter()
                .filter(|(k, _)| k.as_str() != skip)
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let not_configured = || format!("{} is not configured", a.kind);
        let result: Result<String, String> = match a.kind {
            ActionKind::HaRestartApp => match &self.homeassistant {
                Some(ha) => ha
                    .restart_app(a.target())
                    .await
                    .map(|service| format!("{} restarted with {service}", a.target()))
                    .map_err(|e| e.to_string()),
                None => Err(not_configured()),
            },
            ActionKind::HaCallService => match (&self.homeassistant, a.target().split_once('.')) {
                (Some(ha), Some((domain, service))) => ha
                    .call_service(domain, service, &data("service"), false)
                    .await
                    // The changed states can carry tokens (cameras, media players):
                    // say how many, not what.
                    .map(|v| {
                        let n = v.as_array().map_or(0, Vec::len);
                        format!("{} called; {n} state(s) changed", a.target())
                    })
                    .map_err(|e| e.to_string()),
                (Some(_), None) => Err(format!("{} is not domain.service", a.target())),
                (None, _) => Err(not_configured()),
            },
            ActionKind::N8nTrigger => match &self.n8n {
                Some(n) => n
                    .run(
                        a.target(),
                        &data("workflow"),
                        Duration::from_secs(2),
                        self.command_timeout,
                    )
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|e| {
                        let text = format!("n8n execution {}: {}", e.id, e.status);
                        if e.succeeded() { Ok(text) } else { Err(text) }
                    }),
                None => Err(not_configured()),
            },
        };
        let ok = result.is_ok();
        if !(ok && breaker == super::limits::Breaker::default()) {
            self.breaker_record(&breaker_host, a.target(), ok).await;
        }
        let cut = |s: String| crate::notify::sinks::truncate(&s, 1000);
        let (stdout, stderr) = match result {
            Ok(s) => (cut(s), String::new()),
            Err(e) => (String::new(), cut(e)),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(action = %a.text(), ok, duration_ms, "Action executed.");
        self.audit(AuditRow {
            kind: "executed".into(),
            source: source.as_str().into(),
            verdict: j.verdict.as_str().into(),
            rule: j.rule.clone(),
            host: action::APPROVAL_HOST.into(),
            command: a.text(),
            actor: actor.into(),
            exit_code: Some(if ok { 0 } else { 1 }),
            duration_ms: Some(i64::try_from(duration_ms).unwrap_or(i64::MAX)),
            detail: if ok { stdout.clone() } else { stderr.clone() },
            ..AuditRow::default()
        })
        .await;
        RunOutcome::Completed {
            judgement: j,
            exit_code: Some(if ok { 0 } else { 1 }),
            timed_out: false,
            duration_ms,
            stdout,
            stderr,
        }
    }

    /// Approves and runs a pending approval after judging it again under the current
    /// policy (rules may have changed since it was requested).
    pub async fn approve(
        &self,
        id: &str,
        approver: &str,
    ) -> Result<(ApprovalRow, RunOutcome), RunError> {
        let a = self.pending(id).await?;
        if approval_digest(&a.host, &a.command) != a.digest {
            return Err(RunError::Tampered(id.into()));
        }
        let source = a.source;
        let (target, j) = if a.host == action::APPROVAL_HOST {
            let act = Action::parse(&a.command).map_err(|_| RunError::Tampered(id.into()))?;
            let j = action::judge(&act, source, &self.action_policy());
            (Target::Action(act), j)
        } else {
            let host = self.host(&a.host)?.clone();
            let (j, _) = self
                .judge_bounded(&a.command, &host.name, source, false)
                .await;
            (Target::Host(host), j)
        };
        if j.verdict == Verdict::Blocked {
            let detail = format!("approval {id} now blocked by policy: {}", j.reason);
            self.decide(
                &a,
                "blocked",
                approver,
                "refused",
                j.verdict.as_str(),
                &j.rule,
                detail,
            )
            .await?;
            let a = self.store.get_approval(id).await?.unwrap_or(a);
            self.wake_for(&a).await;
            return Ok((a, RunOutcome::Blocked { judgement: j }));
        }
        let detail = format!("approval {id}");
        self.decide(
            &a,
            "approved",
            approver,
            "approved",
            j.verdict.as_str(),
            &j.rule,
            detail,
        )
        .await?;
        let outcome = match &target {
            Target::Host(host) => {
                self.execute(host, &a.command, source, j, approver, None)
                    .await
            }
            Target::Action(act) => self.execute_action(act, source, j, approver).await,
        };
        let (code, text) = match &outcome {
            RunOutcome::Completed {
                exit_code,
                stdout,
                stderr,
                ..
            } => (
                exit_code.map(i64::from),
                format!(
                    "{stdout}{}{stderr}",
                    if stderr.is_empty() { "" } else { "\n" }
                ),
            ),
            other => (None, serde_json::to_string(other).unwrap_or_default()),
        };
        self.store.finish_approval(id, code, &text).await?;
        let a = self.store.get_approval(id).await?.unwrap_or(a);
        self.wake_for(&a).await;
        Ok((a, outcome))
    }

    pub async fn deny(&self, id: &str, who: &str) -> Result<ApprovalRow, RunError> {
        let a = self.pending(id).await?;
        let (verdict, rule) = (a.verdict.clone(), a.rule.clone());
        self.decide(
            &a,
            "denied",
            who,
            "denied",
            &verdict,
            &rule,
            format!("approval {id}"),
        )
        .await?;
        let a = self.store.get_approval(id).await?.unwrap_or(a);
        self.wake_for(&a).await;
        Ok(a)
    }

    /// Moves a pending approval to `status` (once: a lost race is an error, and nothing
    /// runs twice) and audits the decision.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        a: &ApprovalRow,
        status: &str,
        by: &str,
        kind: &str,
        verdict: &str,
        rule: &str,
        detail: String,
    ) -> Result<(), RunError> {
        if !self
            .store
            .decide_approval(&a.id, status, by, now_ms())
            .await?
        {
            return Err(self.why_not_pending(&a.id).await);
        }
        self.audit(Self::approval_audit(kind, a, verdict, rule, by, detail))
            .await;
        Ok(())
    }

    /// Marks overdue approvals expired (they never run) and audits each.
    pub async fn expire_overdue(&self) -> Result<usize, RunError> {
        let expired = self.store.expire_approvals(now_ms()).await?;
        for a in &expired {
            self.audit(Self::approval_audit(
                "expired",
                a,
                &a.verdict,
                &a.rule,
                "jarvis",
                format!("approval {} expired undecided", a.id),
            ))
            .await;
            self.wake_for(a).await;
        }
        Ok(expired.len())
    }

    async fn pending(&self, id: &str) -> Result<ApprovalRow, RunError> {
        let a = self
            .store
            .get_approval(id)
            .await?
            .ok_or_else(|| RunError::NotFound(id.into()))?;
        if a.status != ApprovalStatus::Pending {
            return Err(RunError::AlreadyDecided(id.into(), a.status.to_string()));
        }
        if a.expires_at <= now_ms() {
            self.expire_overdue().await?;
            return Err(RunError::Expired(id.into()));
        }
        Ok(a)
    }

    async fn why_not_pending(&self, id: &str) -> RunError {
        match self.store.get_approval(id).await {
            Ok(Some(a)) if a.status == ApprovalStatus::Pending => RunError::Expired(id.into()),
            Ok(Some(a)) => RunError::AlreadyDecided(id.into(), a.status.to_string()),
            Ok(None) => RunError::NotFound(id.into()),
            Err(e) => e.into(),
        }
    }

    /// Commands run per action in the last minute (across replicas), and the limit
    /// (for /health).
    pub async fn rate_usage(&self) -> (u32, std::collections::BTreeMap<String, usize>) {
        let usage = self.store.rate_usage(now_ms()).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Cannot read rate-limit usage.");
            Default::default()
        });
        (self.rate_limit_per_minute, usage)
    }

    /// Open circuit breakers (across replicas), for /hosts and /health.
    pub async fn open_breakers(&self) -> Vec<OpenBreaker> {
        self.store
            .open_breakers(now_ms())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "Cannot read circuit breakers.");
                Vec::new()
            })
    }

    async fn breaker_record(&self, host: &str, action: &str, ok: bool) {
        match self.store.record_breaker(host, action, ok, now_ms()).await {
            Ok(true) => tracing::warn!(host, action, "Circuit breaker open."),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, host, action, "Cannot record the outcome for the circuit breaker.")
            }
        }
    }

    fn target_lock(&self, host: &str, target: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.target_locks
            .lock()
            .expect("not poisoned")
            .entry((host.to_owned(), target.to_owned()))
            .or_default()
            .clone()
    }

    async fn execute(
        &self,
        host: &HostConfig,
        command: &str,
        source: Source,
        j: Judgement,
        actor: &str,
        target: Option<&str>,
    ) -> RunOutcome {
        let action = j.rule.clone();
        if !host.is_local() && self.monitor.state(&host.name) == Some(HostState::Offline) {
            return RunOutcome::HostOffline { judgement: j };
        }
        let (j, breaker) = match self.admit(j, &host.name, &action).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        // One state-changing command per host and target at a time.
        let lock = (j.verdict == Verdict::Allowed)
            .then(|| self.target_lock(&host.name, target.unwrap_or("*")));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let result: Result<CommandOutput, ExecError> = if host.is_local() {
            local::run(command, self.command_timeout).await
        } else {
            let r = self
                .ssh
                .run(&host.name, command, self.command_timeout)
                .await;
            match &r {
                Err(e) if e.is_connection_failure() => {
                    self.monitor.observe(&host.name, Err(&e.to_string())).await;
                }
                Err(_) => {}
                Ok(_) => {
                    self.monitor.observe(&host.name, Ok(())).await;
                }
            }
            r
        };
        let executed = AuditRow {
            kind: "executed".into(),
            source: source.as_str().into(),
            verdict: j.verdict.as_str().into(),
            rule: j.rule.clone(),
            host: host.name.clone(),
            command: command.into(),
            actor: actor.into(),
            ..AuditRow::default()
        };
        match result {
            Ok(o) => {
                // A success on a closed breaker changes nothing: no write.
                if !(o.success() && breaker == super::limits::Breaker::default()) {
                    self.breaker_record(&host.name, &action, o.success()).await;
                }
                tracing::info!(host = %host.name, rule = %j.rule, exit_code = ?o.exit_code, timed_out = o.timed_out, duration_ms = o.duration.as_millis() as u64, "Command executed.");
                self.audit(AuditRow {
                    exit_code: o.exit_code.map(i64::from),
                    duration_ms: Some(i64::try_from(o.duration.as_millis()).unwrap_or(i64::MAX)),
                    output_digest: Some(output_digest(&o)),
                    detail: if o.timed_out {
                        "timed out".into()
                    } else {
                        String::new()
                    },
                    ..executed
                })
                .await;
                RunOutcome::Completed {
                    judgement: j,
                    exit_code: o.exit_code,
                    timed_out: o.timed_out,
                    duration_ms: u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
            Err(e) => {
                self.breaker_record(&host.name, &action, false).await;
                self.audit(AuditRow {
                    detail: format!("failed: {e}"),
                    ..executed
                })
                .await;
                RunOutcome::Failed {
                    judgement: j,
                    error: e.to_string(),
                }
            }
        }
    }
}
