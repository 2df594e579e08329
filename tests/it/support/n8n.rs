//! An in-process n8n following `shared/reference/n8n-api.md`: production webhooks
//! (404 when not registered, header auth), executions that run for a few polls and
//! end, and the public API with `X-N8N-API-KEY`, `{"data", "nextCursor"}` paging and
//! `includeData`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const API_KEY: &str = "n8n-api-key";
pub const HOOK_SECRET: &str = "hook-secret";

/// A registered workflow: its webhook path, id, how it ends, whether it answers
/// with its execution id, and whether its webhook needs the header secret.
struct Workflow {
    path: &'static str,
    id: &'static str,
    ends: &'static str,
    answers_id: bool,
    auth: bool,
}

const WORKFLOWS: &[Workflow] = &[
    Workflow {
        path: "restart-mqtt",
        id: "wfRestart",
        ends: "success",
        answers_id: true,
        auth: true,
    },
    Workflow {
        path: "backup",
        id: "wfBackup",
        ends: "success",
        answers_id: false,
        auth: false,
    },
    Workflow {
        path: "broken",
        id: "wfBroken",
        ends: "error",
        answers_id: true,
        auth: false,
    },
    Workflow {
        path: "forever",
        id: "wfForever",
        ends: "waiting",
        answers_id: true,
        auth: false,
    },
];

/// One execution: its workflow, how it ends, how often it was polled, and the body it
/// was started with.
struct Exec {
    id: String,
    workflow: String,
    ends: String,
    polls: u32,
    body: Value,
}

impl Exec {
    /// Runs for two polls, then ends as its workflow does.
    fn status(&self) -> &str {
        if self.polls < 2 {
            "running"
        } else {
            &self.ends
        }
    }

    fn view(&self, data: bool) -> Value {
        let mut v = json!({
            "id": self.id.parse::<u64>().unwrap(),
            "workflowId": self.workflow,
            "mode": "webhook",
            "finished": self.status() == "success",
            "status": self.status(),
            "startedAt": "2026-11-25T10:00:01.123Z",
        });
        if data {
            v["data"] = json!({"resultData": {"runData": {"Webhook": [
                {"data": {"main": [[{"json": {"body": self.body}}]]}}
            ]}}});
        }
        v
    }
}

#[derive(Clone, Default)]
pub struct N8n {
    executions: Arc<Mutex<Vec<Exec>>>,
}

impl N8n {
    /// Executions started through a webhook (each adds three unrelated ones too).
    pub fn started(&self) -> usize {
        self.executions
            .lock()
            .unwrap()
            .iter()
            .filter(|e| !e.body.is_null())
            .count()
    }
}

async fn webhook(
    State(n): State<N8n>,
    headers: HeaderMap,
    Path(path): Path<String>,
    body: String,
) -> Response {
    let Some(w) = WORKFLOWS.iter().find(|w| w.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"code": 404, "message": format!("The requested webhook \"POST {path}\" is not registered."),
                "hint": "The workflow must be active for a production URL to run successfully."})),
        )
            .into_response();
    };
    if w.auth && headers.get("x-webhook-token").and_then(|v| v.to_str().ok()) != Some(HOOK_SECRET) {
        return (StatusCode::FORBIDDEN, "Authorization data is wrong!").into_response();
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut ex = n.executions.lock().unwrap();
    let mut push = |ends: &str, body: Value| {
        let id = (1000 + ex.len()).to_string();
        ex.push(Exec {
            id: id.clone(),
            workflow: w.id.into(),
            ends: ends.into(),
            polls: 0,
            body,
        });
        id
    };
    let id = push(w.ends, body);
    // Later runs of the same workflow, so finding the right one takes looking.
    for _ in 0..3 {
        push("success", Value::Null);
    }
    if w.answers_id {
        Json(json!({"executionId": id})).into_response()
    } else {
        Json(json!({"message": "Workflow was started"})).into_response()
    }
}

/// `None` when the API key is right, else n8n's 401.
fn refused(headers: &HeaderMap) -> Option<Response> {
    (headers.get("x-n8n-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY)).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "'X-N8N-API-KEY' header required"})),
        )
            .into_response()
    })
}

async fn executions(
    State(n): State<N8n>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let ex = n.executions.lock().unwrap();
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .min(250);
    let data = q.get("includeData").is_some_and(|d| d == "true");
    // Newest first, as n8n lists them.
    let matching: Vec<&Exec> = ex
        .iter()
        .rev()
        .filter(|e| q.get("workflowId").is_none_or(|w| *w == e.workflow))
        .collect();
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|e| e.view(data))
        .collect();
    let next = (start + limit < matching.len()).then(|| (start + limit).to_string());
    Json(json!({"data": page, "nextCursor": next})).into_response()
}

async fn execution(State(n): State<N8n>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let mut ex = n.executions.lock().unwrap();
    match ex.iter_mut().find(|e| e.id == id) {
        Some(e) => {
            let v = e.view(false);
            e.polls += 1;
            Json(v).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

/// Starts n8n; returns its base URL and a handle on what ran.
pub async fn start() -> (String, N8n) {
    let n = N8n::default();
    let app = axum::Router::new()
        .route("/webhook/{path}", axum::routing::post(webhook))
        .route("/api/v1/executions", axum::routing::get(executions))
        .route("/api/v1/executions/{id}", axum::routing::get(execution))
        .with_state(n.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), n)
}
