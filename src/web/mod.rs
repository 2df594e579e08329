//! HTTP API (INTERFACE §3). Handlers are small: they authenticate (the [`RequireAuth`]
//! extractor), translate HTTP to calls on intake and the store, and map every failure
//! to `{"error": code, "message": text}` in one place ([`ApiError`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::domain::alert::AlertState;
use crate::domain::ids::now_ms;
use crate::intake::auth::Credentials;
use crate::intake::payload::parse_payload;
use crate::intake::{Intake, IntakeError, StorageStatus};
use crate::metrics::{Metrics, WebhookOutcome};
use crate::store::{AlertEventRow, AlertFilter, Store};

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub intake: Intake,
    pub storage: Arc<StorageStatus>,
    pub metrics: Arc<Metrics>,
    pub credentials: Arc<Credentials>,
    pub hosts: Arc<crate::exec::monitor::HostMonitor>,
    pub runner: Arc<crate::exec::runner::CommandRunner>,
    pub maintenance: Arc<crate::pipeline::maintenance::Maintenance>,
    pub notify: Arc<crate::notify::Notifications>,
    pub runbooks: crate::runbooks::Runbooks,
    pub llm: crate::agent::LlmHealth,
}

mod remediation;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .route("/webhook", post(webhook))
        // The original Jarvis's path, kept so existing Alertmanager configs work.
        .route("/webhook/alertmanager", post(webhook))
        .route("/alerts", get(list_alerts))
        .route("/hosts", get(list_hosts))
        .route("/commands", post(run_command))
        .route("/approvals", get(list_approvals))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/audit", get(list_audit))
        .route("/remediations", get(remediation::list_remediations))
        .route("/incidents", get(remediation::list_incidents))
        .route("/patterns", get(remediation::list_patterns))
        .route("/patterns/{id}", get(remediation::get_pattern))
        .route("/analytics", get(remediation::analytics))
        .route("/statistics", get(remediation::statistics))
        .route("/maintenance/start", post(remediation::maintenance_start))
        .route("/maintenance/end", post(remediation::maintenance_end))
        .route("/maintenance/status", get(remediation::maintenance_status))
        .route("/runbooks", get(remediation::list_runbooks))
        .route("/runbooks/reload", post(remediation::reload_runbooks))
        .route("/runbooks/{alert_name}", get(remediation::get_runbook))
        .route("/feedback", get(remediation::list_feedback))
        .route("/notifications", get(remediation::list_notifications))
        .fallback(not_found)
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::Internal("the request handler failed unexpectedly; see the log".into())
                .into_response()
        }))
}

/// An API failure, rendered as `{"error", "message"}` with a fitting status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "valid credentials are required (HTTP Basic with the webhook credentials, or a Bearer API token)"
    )]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Gone(_) => (StatusCode::GONE, "expired"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut resp = (
            status,
            Json(json!({"error": code, "message": self.to_string()})),
        )
            .into_response();
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"jarvis\""),
            );
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %e, "Store query failed.");
        Self::Unavailable("the database is unreachable right now; try again shortly".into())
    }
}

/// Proof that the request carried valid credentials.
pub struct RequireAuth;

impl FromRequestParts<AppState> for RequireAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if state.credentials.check(header) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see INTERFACE §3 for the API".into())
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    let db = s.storage.db_connected();
    let maintenance = db && matches!(s.maintenance.active().await, Ok(w) if !w.is_empty());
    // Limits live in the database: with it away, /health answers at once without them.
    // Bounded: /health answers fast even when the pool is busy (a storm).
    let quick = std::time::Duration::from_millis(500);
    let limit = s.config.safety.rate_limit_per_minute;
    let usage = match db {
        true => tokio::time::timeout(quick, s.runner.rate_usage())
            .await
            .map(|(_, u)| u)
            .unwrap_or_default(),
        false => Default::default(),
    };
    let open_breakers = match db {
        true => tokio::time::timeout(quick, s.runner.open_breakers())
            .await
            .map(|b| b.len())
            .unwrap_or(0),
        false => 0,
    };
    let offline: Vec<String> = s
        .hosts
        .snapshot()
        .into_iter()
        .filter(|(_, h)| h.status == crate::exec::monitor::HostState::Offline)
        .map(|(name, _)| name)
        .collect();
    Json(json!({
        "status": if db { "healthy" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": s.store.backend().as_str(),
        "database_connected": db,
        "maintenance_mode": maintenance,
        "llm": s.config.llm.provider,
        "llm_state": if s.config.llm.provider == "none" { json!({"state": "disabled"}) } else { s.llm.snapshot() },
        "spooled_alerts": s.storage.spooled_events(),
        "hosts_offline": offline,
        "open_circuit_breakers": open_breakers,
        "rate_limit_per_minute": limit,
        "commands_last_minute": usage,
    }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn version(_auth: RequireAuth) -> Json<Value> {
    Json(crate::version_info())
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes ([webhook] max_body_bytes)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let limited = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if limited {
            too_large()
        } else {
            ApiError::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

async fn webhook(
    State(s): State<AppState>,
    auth: Result<RequireAuth, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let outcome = webhook_inner(&s, auth, &headers, body).await;
    s.metrics.webhook_request(match &outcome {
        Ok((_, true)) => WebhookOutcome::spooled,
        Ok((_, false)) => WebhookOutcome::stored,
        Err(ApiError::Unauthorized) => WebhookOutcome::unauthorized,
        Err(ApiError::PayloadTooLarge(_)) => WebhookOutcome::too_large,
        Err(ApiError::UnsupportedMediaType(_)) => WebhookOutcome::unsupported_media_type,
        Err(ApiError::BadRequest(_)) => WebhookOutcome::malformed,
        Err(_) => WebhookOutcome::unavailable,
    });
    outcome.map(|(v, _)| Json(v))
}

async fn webhook_inner(
    s: &AppState,
    auth: Result<RequireAuth, ApiError>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Value, bool), ApiError> {
    auth?;
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType(
            "send the Alertmanager payload with Content-Type: application/json".into(),
        ));
    }
    let bytes = read_limited(body, headers, s.config.webhook.max_body_bytes).await?;
    let events = parse_payload(&bytes, now_ms()).map_err(|e| ApiError::BadRequest(e.0))?;
    let count = events.len();
    match s.intake.submit(events).await {
        Ok(a) => {
            tracing::debug!(
                alerts = count,
                accepted = a.accepted,
                duplicates = a.duplicates,
                spooled = a.spooled,
                "Webhook stored."
            );
            let mut body = json!({"accepted": a.accepted, "duplicates": a.duplicates});
            if a.spooled {
                body["spooled"] = json!(true);
            }
            Ok((body, a.spooled))
        }
        // 503 is what Alertmanager retries; it is only used when nothing could store the alerts.
        Err(e @ (IntakeError::Unavailable(_) | IntakeError::ShuttingDown)) => {
            Err(ApiError::Unavailable(e.to_string()))
        }
    }
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    limit: Option<String>,
    state: Option<String>,
    alertname: Option<String>,
}

/// An alert event as the API shows it: labels and annotations as objects.
fn alert_json(r: AlertEventRow) -> Value {
    // A row that cannot be read says so instead of showing no labels.
    let shown = |set: Result<crate::domain::alert::LabelSet, String>| match set {
        Ok(s) => json!(s),
        Err(e) => json!({"error": e}),
    };
    let (labels, annotations) = (shown(r.label_set()), shown(r.annotation_set()));
    json!({
        "id": r.id,
        "fingerprint": r.fingerprint,
        "alertname": r.alertname,
        "instance": r.instance,
        "status": r.status,
        "state": r.state,
        "reason": r.reason,
        "labels": labels,
        "annotations": annotations,
        "starts_at": crate::domain::time::rfc3339(r.starts_at),
        "ends_at": r.ends_at.map(crate::domain::time::rfc3339),
        "received_at": crate::domain::time::rfc3339(r.received_at),
        "updated_at": crate::domain::time::rfc3339(r.updated_at),
        "generator_url": r.generator_url,
        "receiver": r.receiver,
        "group_key": r.group_key,
        // Which replica's worker holds it now (`<replica id>/<worker>`), if any.
        "claimed_by": r.claimed_by,
        // Parked: when it is looked at again at the latest.
        "resume_at": r.resume_at.map(crate::domain::time::rfc3339),
    })
}

async fn list_alerts(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<AlertsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = parse_limit(q.limit.as_deref())?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(st) => {
            Some(AlertState::parse(st).map_err(|e| ApiError::BadRequest(format!("state: {e}")))?)
        }
    };
    let filter = AlertFilter {
        limit,
        state,
        alertname: q.alertname.filter(|a| !a.is_empty()),
    };
    let rows = s.store.list_alert_events(&filter).await?;
    let alerts: Vec<Value> = rows.into_iter().map(alert_json).collect();
    Ok(Json(json!({"count": alerts.len(), "alerts": alerts})))
}

async fn list_hosts(_auth: RequireAuth, State(s): State<AppState>) -> Json<Value> {
    let health = s.hosts.snapshot();
    let breakers = s.runner.open_breakers().await;
    let hosts: Vec<Value> = s
        .config
        .hosts
        .iter()
        .map(|h| {
            let st = health.get(&h.name);
            json!({
                "name": h.name,
                "address": h.address,
                "port": h.port,
                "user": h.user,
                "aliases": h.aliases,
                "status": st.map_or("checking", |x| x.status.as_str()),
                "consecutive_failures": st.map_or(0, |x| x.consecutive_failures),
                "last_change": st.map(|x| crate::domain::time::rfc3339(x.last_change)),
                "last_error": st.and_then(|x| x.last_error.clone()),
                "open_circuit_breakers": breakers.iter().filter(|b| b.host == h.name).collect::<Vec<_>>(),
                "host_key_verification": if h.is_local() { "local" } else if !h.host_key.is_empty() { "pinned" } else if h.trust_on_first_use { "trust_on_first_use" } else { "known_hosts" },
            })
        })
        .collect();
    Json(json!({"count": hosts.len(), "hosts": hosts}))
}

impl From<crate::exec::runner::RunError> for ApiError {
    fn from(e: crate::exec::runner::RunError) -> Self {
        use crate::exec::runner::RunError as E;
        match e {
            E::UnknownHost(..) => Self::BadRequest(e.to_string()),
            E::NotFound(_) => Self::NotFound(e.to_string()),
            E::AlreadyDecided(..) | E::Tampered(_) => Self::Conflict(e.to_string()),
            E::Expired(_) => Self::Gone(e.to_string()),
            E::Store(s) => s.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CommandBody {
    host: String,
    command: String,
    #[serde(default)]
    target: Option<String>,
}

/// Runs a command asked for through the API (source `manual`): judged like any other;
/// unknown or dangerous commands wait for approval.
async fn run_command(
    _auth: RequireAuth,
    State(s): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: CommandBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("expected {{\"host\": ..., \"command\": ...}}: {e}"))
    })?;
    if b.command.trim().is_empty() {
        return Err(ApiError::BadRequest("command must not be empty".into()));
    }
    let outcome = s
        .runner
        .submit(crate::exec::runner::RunRequest {
            host: b.host,
            command: b.command,
            source: crate::safety::Source::Manual,
            previously_verified: false,
            requested_by: "api".into(),
            alert_event_id: None,
            target: b.target,
        })
        .await?;
    Ok(Json(serde_json::to_value(outcome).unwrap_or(Value::Null)))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    host: Option<String>,
    kind: Option<String>,
    limit: Option<String>,
}

fn parse_limit(l: Option<&str>) -> Result<u32, ApiError> {
    match l {
        None | Some("") => Ok(100),
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit {l:?} must be a whole number from 1 to 1000"
            ))),
        },
    }
}

async fn list_approvals(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = q.status.as_deref().filter(|x| !x.is_empty());
    if let Some(st) = status
        && !matches!(
            st,
            "pending" | "approved" | "denied" | "expired" | "blocked" | "superseded"
        )
    {
        return Err(ApiError::BadRequest(format!(
            "status {st:?} is not one of pending, approved, denied, expired, blocked, superseded"
        )));
    }
    let rows = s
        .store
        .list_approvals(status, parse_limit(q.limit.as_deref())?)
        .await?;
    Ok(Json(json!({"count": rows.len(), "approvals": rows})))
}

#[derive(Debug, Default, Deserialize)]
struct DecisionBody {
    #[serde(default)]
    by: Option<String>,
}

/// Who decided: `{"by": "..."}` in the body, else `?by=`, else "api".
fn decider(
    body: &Bytes,
    query: &std::collections::HashMap<String, String>,
) -> Result<String, ApiError> {
    let from_body = if body.is_empty() {
        None
    } else {
        serde_json::from_slice::<DecisionBody>(body)
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "expected {{\"by\": \"name\"}} or an empty body: {e}"
                ))
            })?
            .by
    };
    Ok(from_body
        .or_else(|| query.get("by").cloned())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "api".into()))
}

async fn approve(
    _auth: RequireAuth,
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let by = decider(&body, &q)?;
    let (approval, outcome) = s.runner.approve(&id, &by).await?;
    Ok(Json(json!({"approval": approval, "result": outcome})))
}

async fn deny(
    _auth: RequireAuth,
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let by = decider(&body, &q)?;
    let approval = s.runner.deny(&id, &by).await?;
    Ok(Json(json!({"approval": approval})))
}

async fn list_audit(
    _auth: RequireAuth,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = s
        .store
        .list_audit(
            q.host.as_deref().filter(|x| !x.is_empty()),
            q.kind.as_deref().filter(|x| !x.is_empty()),
            parse_limit(q.limit.as_deref())?,
        )
        .await?;
    Ok(Json(json!({"count": rows.len(), "entries": rows})))
}
