//! Plans: what to try for an alert, where the candidates come from (the pattern
//! library, the alert's hints, the planner — the LLM agent), and the failure memory
//! that keeps a fix that keeps failing from being tried again.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::hints;
use super::remediate::{Ctx, Remediator};
use super::step::StepOutcome;
use super::verify::Presence;
use crate::domain::alert::LabelSet;
use crate::learn::library::{self, KNOWN_FAILURE_AFTER};
use crate::store::{AlertEventRow, FailureRow, PatternRow};

/// Where a plan came from (remediation_log.source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanSource {
    Pattern,
    Hint,
    Llm,
}

crate::text_enum!(PlanSource, "remediation source", {
    Pattern => "pattern",
    Hint => "hint",
    Llm => "llm",
});

/// Commands to try for an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RanCommand {
    /// The host it ran on (as the planner named it).
    pub host: Option<String>,
    pub command: String,
    pub outcome: StepOutcome,
}

impl RanCommand {
    /// It ran (or waits for approval to run) and is not read-only.
    pub fn changed_something(&self) -> bool {
        self.outcome.changed_something()
    }
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

impl Remediator {
    pub(super) async fn known_failure(&self, ctx: &Ctx<'_>, commands: &[String]) -> bool {
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
    pub(super) async fn plan(&self, ctx: &Ctx<'_>) -> Result<Plan, String> {
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
}
