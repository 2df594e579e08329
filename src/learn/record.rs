//! What an attempt teaches: a pattern's track record, a newly learned pattern from a
//! verified fix, and failure memory for a fix that did not work.

use super::library::{self, LEARNED_PRIOR};
use super::patterns::PatternDef;
use crate::domain::alert::LabelSet;
use crate::domain::ids::new_id;
use crate::pipeline::plan::Plan;
use crate::store::{AttemptStatus, FailureRow, RemediationRow, Store};

fn short(s: &str, max: usize) -> String {
    crate::notify::sinks::truncate(s.trim(), max)
}

/// Learns from a finished attempt. Only attempts that tried something to the end
/// (`success`/`failure` and counted) teach anything; store errors are logged, since
/// learning must never stop a remediation.
pub async fn learn(
    store: &dyn Store,
    row: &RemediationRow,
    plan: &Plan,
    labels: &LabelSet,
    now: i64,
) {
    let learnable = matches!(row.status, AttemptStatus::Success | AttemptStatus::Failure)
        && row.counts_as_attempt;
    if !learnable {
        return;
    }
    if let Some(id) = &plan.pattern_id
        && let Err(e) = store
            .record_pattern_outcome(id, row.success, row.verified, now)
            .await
    {
        tracing::warn!(error = %e, "Cannot update the pattern's record.");
    }
    if row.success && row.verified && !plan.learned {
        // Remember the verified fix for exactly this symptom.
        let def = PatternDef {
            alert_name: row.alert_name.clone(),
            matchers: library::identifying(labels),
            host: row.host.clone(),
            commands: plan.changes(),
            confidence: LEARNED_PRIOR,
            description: format!("learned from a verified {} fix", row.source),
        };
        let id = library::learned_id(&row.symptom, &row.commands_sig);
        let learned = library::row_from_def(id.clone(), "learned", &def, now);
        if let Err(e) = async {
            store.upsert_pattern(&learned).await?;
            store.record_pattern_outcome(&id, true, true, now).await
        }
        .await
        {
            tracing::warn!(error = %e, "Cannot store the learned pattern.");
        }
    }
    if !row.success {
        let executed: Vec<String> =
            serde_json::from_str(&row.commands_executed).unwrap_or_default();
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
        if let Err(e) = store.insert_failure(&f).await {
            tracing::warn!(error = %e, "Cannot store failure memory.");
        }
    }
}
