//! An in-process Discord webhook: accepts Execute Webhook bodies (checking the limits
//! Discord enforces) and keeps them for the test to read.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Value>>>);

impl Received {
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// Every message's embed title and description, one string each.
    pub fn texts(&self) -> Vec<String> {
        self.all()
            .iter()
            .map(|m| {
                let e = &m["embeds"][0];
                let fields: Vec<String> = e["fields"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .map(|x| format!("{} {}", x["name"], x["value"]))
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "{}\n{}\n{}",
                    e["title"].as_str().unwrap_or(""),
                    e["description"].as_str().unwrap_or(""),
                    fields.join("\n")
                )
            })
            .collect()
    }
}

async fn execute(State(r): State<Received>, Json(body): Json<Value>) -> StatusCode {
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    let ok = embeds.len() <= 10
        && embeds.iter().all(|e| {
            e["title"].as_str().is_none_or(|t| t.chars().count() <= 256)
                && e["description"]
                    .as_str()
                    .is_none_or(|d| d.chars().count() <= 4096)
                && e["fields"].as_array().is_none_or(|f| f.len() <= 25)
        });
    if !ok {
        return StatusCode::BAD_REQUEST;
    }
    r.0.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

/// Starts the receiver; returns its webhook URL and what it got.
pub async fn discord() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/api/webhooks/{id}/{token}", axum::routing::post(execute))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        format!("http://{addr}/api/webhooks/1/drill-token"),
        received,
    )
}
