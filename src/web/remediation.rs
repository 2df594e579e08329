//! The remediation side of the API: the remediation log, incidents, patterns,
//! analytics and statistics, and maintenance windows (INTERFACE §3).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequireAuth, parse_limit};
use crate::domain::ids::now_ms;
use crate::domain::time::rfc3339;
use crate::learn::library;
use crate::pipeline::maintenance::MaintenanceError;
use crate::store::{MaintenanceRow, PatternRow, RemediationFilter, RemediationRow};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RemediationQuery {
    limit: Option<String>,
    alert_name: Option<String>,
    fingerprint: Option<String>,
    alert_event_id: Option<String>,
}

fn remediation_json(r: &RemediationRow) -> Value {
    let commands: Value = serde_json::from_str(&r.commands_executed).unwrap_or(json!([]));
    json!({
        "id": r.id,
        "timestamp": rfc3339(r.started_at),
        "alert_event_id": r.alert_event_id,
        "fingerprint": r.fingerprint,
        "alert_name": r.alert_name,
        "alert_instance": r.alert_instance,
        "host": r.host,
        "source": r.source,
        "pattern_id": r.pattern_id,
        "commands_executed": commands,
        "status": r.status,
        "counts_as_attempt": r.counts_as_attempt,
        "success": r.success,
        "verified": r.verified,
        "verification_message": r.verification_message,
        "duration_seconds": r.duration_seconds,
        "error_message": r.error_message,
        "output": r.output,
    })
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

pub(super) async fn list_remediations(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<RemediationQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = s
        .store
        .list_remediations(&RemediationFilter {
            limit: parse_limit(q.limit.as_deref())?,
            alert_name: nonempty(&q.alert_name),
            fingerprint: nonempty(&q.fingerprint),
            alert_event_id: nonempty(&q.alert_event_id),
        })
        .await?;
    let items: Vec<Value> = rows.iter().map(remediation_json).collect();
    Ok(Json(json!({"count": items.len(), "remediations": items})))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LimitQuery {
    limit: Option<String>,
    days: Option<String>,
}

pub(super) async fn list_incidents(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = s
        .store
        .list_incidents(parse_limit(q.limit.as_deref())?)
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "root_cause_alert": i.root_cause_alert,
                "root_fingerprint": i.root_fingerprint,
                "related_alerts": serde_json::from_str::<Value>(&i.related_alerts).unwrap_or(json!([])),
                "correlation_type": i.correlation_type,
                "state": i.state,
                "opened_at": rfc3339(i.opened_at),
                "closed_at": i.closed_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(json!({"count": items.len(), "incidents": items})))
}

fn pattern_json(p: &PatternRow) -> Value {
    json!({
        "id": p.id,
        "alert_name": p.alert_name,
        "match": serde_json::from_str::<Value>(&p.matchers).unwrap_or(json!({})),
        "host": p.host,
        "commands": serde_json::from_str::<Value>(&p.commands).unwrap_or(json!([])),
        "description": p.description,
        "origin": p.origin,
        "prior": p.prior,
        "confidence": library::row_confidence(p),
        "success_count": p.success_count,
        "verified_successes": p.verified_successes,
        "failure_count": p.failure_count,
        "last_used_at": p.last_used_at.map(rfc3339),
    })
}

pub(super) async fn list_patterns(
    _auth: RequireAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let rows = s.store.list_patterns().await?;
    let items: Vec<Value> = rows.iter().map(pattern_json).collect();
    Ok(Json(json!({"count": items.len(), "patterns": items})))
}

pub(super) async fn get_pattern(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = s.store.get_pattern(&id).await?.ok_or_else(|| {
        ApiError::NotFound(format!("no pattern {id:?}; GET /patterns lists them"))
    })?;
    let mut history: Vec<Value> = s
        .store
        .list_remediations(&RemediationFilter {
            limit: 1000,
            alert_name: Some(p.alert_name.clone()),
            ..RemediationFilter::default()
        })
        .await?
        .iter()
        .filter(|r| r.pattern_id.as_deref() == Some(&p.id))
        .map(remediation_json)
        .collect();
    history.truncate(100);
    let mut v = pattern_json(&p);
    v["history"] = json!(history);
    Ok(Json(v))
}

fn parse_days(d: Option<&str>, default: u32) -> Result<u32, ApiError> {
    match d {
        None | Some("") => Ok(default),
        Some(d) => d
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=3650).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("days {d:?} must be a whole number from 1 to 3650"))
            }),
    }
}

fn pct(n: i64, of: i64) -> f64 {
    if of == 0 {
        0.0
    } else {
        (n as f64 * 10_000.0 / of as f64).round() / 100.0
    }
}

pub(super) async fn analytics(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = parse_days(q.days.as_deref(), 30)?;
    let t = s
        .store
        .totals(now_ms() - i64::from(days) * 86_400_000)
        .await?;
    let without_llm = t.remediations - t.llm_remediations;
    let llm = s
        .store
        .llm_totals(now_ms() - i64::from(days) * 86_400_000)
        .await?;
    Ok(Json(json!({
        "days": days,
        "alerts": t.alerts,
        "unique_alerts": t.unique_alerts,
        "remediations": t.remediations,
        "successful": t.successful,
        "verified": t.verified,
        "escalated": t.escalated,
        "success_rate": pct(t.successful, t.remediations),
        "escalation_rate": pct(t.escalated, t.alerts),
        "mttr_seconds": t.mttr_seconds,
        "avg_duration_seconds": t.avg_duration_seconds,
        "pattern_remediations": t.pattern_remediations,
        "llm_remediations": t.llm_remediations,
        "llm_calls": llm.calls,
        // Remediations that needed no LLM (patterns and hints), as a share of all.
        "api_calls_saved_pct": pct(without_llm, t.remediations),
        "tokens": llm.tokens,
        "cost_usd": (llm.cost_usd * 10_000.0).round() / 10_000.0,
    })))
}

/// The original Jarvis's `/statistics?days=7`.
pub(super) async fn statistics(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = parse_days(q.days.as_deref(), 7)?;
    let t = s
        .store
        .totals(now_ms() - i64::from(days) * 86_400_000)
        .await?;
    Ok(Json(json!({
        "period_days": days,
        "total_attempts": t.remediations,
        "successful": t.successful,
        "escalated": t.escalated,
        "avg_duration": t.avg_duration_seconds,
        "unique_alerts": t.unique_alerts,
        "success_rate": pct(t.successful, t.remediations),
    })))
}

fn window_json(w: &MaintenanceRow) -> Value {
    json!({
        "id": w.id,
        "host": w.host,
        "scope": if w.host.is_some() { "host" } else { "global" },
        "reason": w.reason,
        "created_by": w.created_by,
        "started_at": rfc3339(w.starts_at),
        "ends_at": rfc3339(w.ends_at),
        "ended_at": w.ended_at.map(rfc3339),
        "silence_id": w.silence_id,
    })
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MaintenanceQuery {
    host: Option<String>,
    reason: Option<String>,
    created_by: Option<String>,
    duration_minutes: Option<String>,
}

impl From<MaintenanceError> for ApiError {
    fn from(e: MaintenanceError) -> Self {
        match e {
            MaintenanceError::Invalid(m) => Self::BadRequest(m),
            MaintenanceError::Store(e) => e.into(),
        }
    }
}

pub(super) async fn maintenance_start(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<MaintenanceQuery>,
) -> Result<Json<Value>, ApiError> {
    let minutes = match q.duration_minutes.as_deref() {
        None | Some("") => 60,
        Some(m) => m.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "duration_minutes {m:?} must be a whole number of minutes"
            ))
        })?,
    };
    let w = s
        .maintenance
        .start(
            nonempty(&q.host).as_deref(),
            q.reason.as_deref().unwrap_or(""),
            q.created_by.as_deref().unwrap_or("api"),
            minutes,
        )
        .await?;
    Ok(Json(
        json!({"status": "started", "window": window_json(&w)}),
    ))
}

pub(super) async fn maintenance_end(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<MaintenanceQuery>,
) -> Result<Json<Value>, ApiError> {
    let ended = s.maintenance.end(nonempty(&q.host).as_deref()).await?;
    let items: Vec<Value> = ended.iter().map(window_json).collect();
    Ok(Json(
        json!({"status": "ended", "count": items.len(), "windows": items}),
    ))
}

pub(super) async fn maintenance_status(
    _auth: RequireAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let active = s.maintenance.active().await?;
    let items: Vec<Value> = active.iter().map(window_json).collect();
    Ok(Json(json!({
        "maintenance_mode": !items.is_empty(),
        "global": active.iter().any(|w| w.host.is_none()),
        "count": items.len(),
        "windows": items,
    })))
}

pub(super) async fn list_runbooks(_auth: RequireAuth, State(s): State<AppState>) -> Json<Value> {
    let books: Vec<Value> = s
        .runbooks
        .list()
        .into_iter()
        .map(|rb| {
            json!({
                "alert_name": rb.alert_name,
                "title": rb.title,
                "investigation_steps": rb.investigation_steps.len(),
                "common_causes": rb.common_causes.len(),
                "remediation": rb.remediation.len(),
                "commands": rb.commands.len(),
            })
        })
        .collect();
    Json(json!({"dir": s.config.runbooks.dir, "count": books.len(), "runbooks": books}))
}

/// Exact name first, then a partial match (as the agent looks them up).
pub(super) async fn get_runbook(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rb = s.runbooks.find(&name).ok_or_else(|| {
        ApiError::NotFound(format!("no runbook for {name:?}; GET /runbooks lists them"))
    })?;
    Ok(Json(serde_json::to_value(rb).unwrap_or_default()))
}

pub(super) async fn reload_runbooks(_auth: RequireAuth, State(s): State<AppState>) -> Json<Value> {
    let r = s.runbooks.clone();
    let n = tokio::task::spawn_blocking(move || r.reload())
        .await
        .unwrap_or(0);
    Json(json!({"reloaded": n}))
}

/// The LLM's reviews of escalated alerts, for a person (never executed).
pub(super) async fn list_feedback(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = parse_limit(q.limit.as_deref())?;
    let rows = s.store.list_feedback(limit).await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|f| {
            json!({
                "id": f.id,
                "alert_event_id": f.alert_event_id,
                "alert_name": f.alert_name,
                "root_cause": f.root_cause,
                "suggested_commands": serde_json::from_str::<Value>(&f.suggested_commands).unwrap_or(Value::Null),
                "reviewed": f.reviewed,
                "created_at": rfc3339(f.created_at),
            })
        })
        .collect();
    Ok(Json(json!({"feedback": items})))
}

/// The notification outbox, newest first, with each sink's delivery state.
pub(super) async fn list_notifications(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = parse_limit(q.limit.as_deref())?;
    let rows = s.store.list_notifications(limit).await?;
    let time = crate::domain::time::rfc3339;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(n, deliveries)| {
            let message: Value = serde_json::from_str(&n.message).unwrap_or(Value::Null);
            let deliveries: Vec<Value> = deliveries
                .into_iter()
                .map(|d| {
                    json!({
                        "sink": d.sink,
                        "state": d.state,
                        "attempts": d.attempts,
                        "next_attempt_at": time(d.next_attempt_at),
                        "last_error": d.last_error,
                        "delivered_at": d.delivered_at.map(time),
                    })
                })
                .collect();
            json!({
                "id": n.id,
                "created_at": time(n.created_at),
                "kind": n.kind,
                "title": n.title,
                "body": message["body"],
                "alert_event_id": n.alert_event_id,
                "deliveries": deliveries,
            })
        })
        .collect();
    Ok(Json(json!({"count": items.len(), "notifications": items})))
}
