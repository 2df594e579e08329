//! An in-process Home Assistant that follows the documented Core REST and Supervisor
//! APIs (`shared/reference/home-assistant-api.md`): bearer tokens, 401/404/400 as HA
//! answers them, `GET /api/services` for discovery, and the hassio restart services
//! in their old (`addon_restart {"addon"}`) or new (`app_restart {"app"}`) form.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const TOKEN: &str = "ha-long-lived-token";
pub const SUPERVISOR_TOKEN: &str = "supervisor-token";

/// Which restart service the installation offers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `hassio.addon_restart {"addon": slug}`.
    Addon,
    /// `hassio.app_restart {"app": slug}` (newest Home Assistant).
    App,
}

#[derive(Clone)]
pub struct Ha {
    generation: Generation,
    /// (domain.service, data) of every call that succeeded.
    pub calls: Arc<Mutex<Vec<(String, Value)>>>,
    /// Apps that are down until restarted (`/metrics`: `ha_app_up{app}` for Prometheus).
    pub down: Arc<Mutex<Vec<String>>>,
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {token}"))
}

/// Core answers a bad token with a bare 401.
fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "401: Unauthorized").into_response()
}

async fn api(headers: HeaderMap) -> Response {
    if !authorized(&headers, TOKEN) {
        return unauthorized();
    }
    Json(json!({"message": "API running."})).into_response()
}

async fn state(headers: HeaderMap, Path(entity): Path<String>) -> Response {
    if !authorized(&headers, TOKEN) {
        return unauthorized();
    }
    match entity.as_str() {
        "sensor.ups_battery" => Json(json!({
            "entity_id": "sensor.ups_battery",
            "state": "87",
            "attributes": {"unit_of_measurement": "%", "friendly_name": "UPS battery"},
            "last_changed": "2026-11-25T09:58:12.418320+00:00",
            "last_updated": "2026-11-25T10:00:12.100000+00:00",
            "context": {"id": "01HX", "parent_id": null, "user_id": null}
        }))
        .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Entity not found."})),
        )
            .into_response(),
    }
}

impl Ha {
    fn restart_service(&self) -> (&'static str, &'static str) {
        match self.generation {
            Generation::Addon => ("addon_restart", "addon"),
            Generation::App => ("app_restart", "app"),
        }
    }
}

async fn services(State(ha): State<Ha>, headers: HeaderMap) -> Response {
    if !authorized(&headers, TOKEN) {
        return unauthorized();
    }
    let (restart, field) = ha.restart_service();
    Json(json!([
        {"domain": "homeassistant", "services": {"restart": {}, "reload_config_entry": {}}},
        {"domain": "automation", "services": {"reload": {}, "trigger": {}}},
        {"domain": "hassio", "services": {restart: {"fields": {field: {"required": true}}}}},
    ]))
    .into_response()
}

async fn call(
    State(ha): State<Ha>,
    headers: HeaderMap,
    Path((domain, service)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: String,
) -> Response {
    if !authorized(&headers, TOKEN) {
        return unauthorized();
    }
    let Ok(data) = serde_json::from_str::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Data should be valid JSON."})),
        )
            .into_response();
    };
    let (restart, field) = ha.restart_service();
    let known = match (domain.as_str(), service.as_str()) {
        ("hassio", s) if s == restart => data[field].is_string(),
        ("automation", "reload") | ("homeassistant", "restart") => true,
        _ => false,
    };
    // Unknown services and invalid data: a bare aiohttp 400. No service here
    // returns data, so asking for a response is a 400 too.
    if !known || q.contains_key("return_response") {
        return (StatusCode::BAD_REQUEST, "400: Bad Request").into_response();
    }
    if domain == "hassio"
        && let Some(app) = data[field].as_str()
    {
        ha.down.lock().unwrap().retain(|a| a != app);
    }
    ha.calls
        .lock()
        .unwrap()
        .push((format!("{domain}.{service}"), data));
    Json(json!([])).into_response()
}

async fn addons(headers: HeaderMap) -> Response {
    if !authorized(&headers, SUPERVISOR_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"result": "error", "message": "Unauthorized"})),
        )
            .into_response();
    }
    Json(json!({"result": "ok", "data": {"addons": [
        {"name": "Mosquitto broker", "slug": "core_mosquitto", "state": "started", "version": "6.4.1",
         "version_latest": "6.4.1", "update_available": false},
        {"name": "Frigate", "slug": "ccab4aaf_frigate", "state": "stopped", "version": "0.14.1",
         "version_latest": "0.14.1", "update_available": false}
    ]}}))
    .into_response()
}

/// `ha_app_up{app}` for each known app: what a Prometheus exporter would show.
async fn metrics(State(ha): State<Ha>) -> String {
    let down = ha.down.lock().unwrap();
    ["core_mosquitto", "ccab4aaf_frigate"]
        .iter()
        .map(|a| {
            let up = u8::from(!down.iter().any(|d| d == a));
            format!("ha_app_up{{app=\"{a}\"}} {up}\n")
        })
        .collect()
}

/// Starts Home Assistant (Core at `/api`, the Supervisor at `/supervisor`); returns
/// its base URL, the Supervisor's, and the recorder of service calls.
pub async fn start(generation: Generation) -> (String, String, Ha) {
    start_with(generation, &[]).await
}

/// As `start`, with `down` apps down until restarted.
pub async fn start_with(generation: Generation, down: &[&str]) -> (String, String, Ha) {
    let ha = Ha {
        generation,
        calls: Arc::default(),
        down: Arc::new(Mutex::new(down.iter().map(|d| (*d).to_owned()).collect())),
    };
    let app = axum::Router::new()
        .route("/api/", axum::routing::get(api))
        .route("/api/states/{entity}", axum::routing::get(state))
        .route("/api/services", axum::routing::get(services))
        .route(
            "/api/services/{domain}/{service}",
            axum::routing::post(call),
        )
        .route("/supervisor/addons", axum::routing::get(addons))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(ha.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        format!("http://{addr}"),
        format!("http://{addr}/supervisor"),
        ha,
    )
}
