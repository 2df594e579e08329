//! Issue 11 §3: the notification outbox. A notification is stored with the state
//! change that causes it, each sink has its own sender, a sink that fails never
//! delays another, and what was not delivered before a stop is sent after the restart
//! under the same id.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

use crate::both_backends;
use crate::support::{Backend, TestApp, TestEnv, eventually, payload};

/// What a sink got: the `Idempotency-Key` header and the body.
type Got = Vec<(Option<String>, Value)>;

/// A webhook endpoint that answers with a status the test sets, keeping what arrives
/// while it answers 2xx (body and `Idempotency-Key`).
#[derive(Clone, Default)]
struct Sink {
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Got>>,
}

impl Sink {
    async fn start(status: u16) -> (String, Self) {
        let sink = Self::default();
        sink.status.store(status, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), sink)
    }

    fn got(&self) -> Got {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(State(s): State<Sink>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let status = StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap();
    if status.is_success() {
        let key = headers
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned());
        s.got
            .lock()
            .unwrap()
            .push((key, serde_json::from_str(&body).unwrap_or(Value::Null)));
    }
    // Discord's 429 body: wait a minute.
    (status, r#"{"retry_after": 60.0, "global": false}"#)
}

/// The outbox as the API shows it.
async fn outbox(app: &TestApp) -> Vec<Value> {
    let (code, body) = app.get("/notifications").await;
    assert_eq!(code, 200, "{body}");
    body["notifications"].as_array().unwrap().clone()
}

fn delivery<'a>(n: &'a Value, sink: &str) -> &'a Value {
    n["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["sink"] == sink)
        .unwrap_or_else(|| panic!("no {sink} delivery: {n}"))
}

both_backends! {
    async fn an_undelivered_escalation_is_sent_after_a_restart_under_the_same_id(b: Backend) {
        let Some(env) = TestEnv::new(b).await else {
            return;
        };
        let (url, sink) = Sink::start(503).await;
        let mut c = env.config();
        c.notify.webhook.url = url;
        c.notify.min_interval_ms = 0;
        let mut app = TestApp::start_remediating(c.clone()).await;
        // No host, no hint, no LLM: escalated, and the escalation is in the outbox.
        assert_eq!(app.post_webhook(&payload(&["NobodyKnows"])).await.0, 200);
        let pending = eventually(
            "the escalation is tried",
            Duration::from_secs(20),
            || async {
                outbox(&app).await.into_iter().find(|n| {
                    n["kind"] == "escalated" && delivery(n, "webhook")["attempts"].as_i64() >= Some(1)
                })
            },
        )
        .await;
        let id = pending["id"].as_str().unwrap().to_owned();
        assert_eq!(
            delivery(&pending, "webhook")["state"],
            "pending",
            "{pending}"
        );
        assert!(
            delivery(&pending, "webhook")["last_error"]
                .as_str()
                .unwrap()
                .contains("503"),
            "{pending}"
        );
        let (_, alerts) = app.get("/alerts?alertname=NobodyKnows").await;
        assert_eq!(alerts["alerts"][0]["state"], "escalated");
        assert_eq!(pending["alert_event_id"], alerts["alerts"][0]["id"]);
        app.stop_in_place().await;
        assert!(sink.got().is_empty());

        // The sink is back; the restarted Jarvis delivers it, once, with the same id.
        sink.status.store(200, Ordering::SeqCst);
        let app = TestApp::start_remediating(c).await;
        let sent = eventually(
            "the escalation is delivered",
            Duration::from_secs(30),
            || async {
                let got = sink.got();
                (!got.is_empty()).then_some(got)
            },
        )
        .await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0.as_deref(), Some(id.as_str()));
        assert_eq!(sent[0].1["id"], id);
        assert!(
            sent[0].1["title"].as_str().unwrap().contains("NobodyKnows"),
            "{sent:?}"
        );
        let n = eventually("delivery is recorded", Duration::from_secs(10), || async {
            outbox(&app)
                .await
                .into_iter()
                .find(|n| n["id"] == id && delivery(n, "webhook")["state"] == "delivered")
        })
        .await;
        assert!(delivery(&n, "webhook")["delivered_at"].is_string());
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_sink_does_not_delay_the_others() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let (slow_url, slow) = Sink::start(429).await;
    let (url, fast) = Sink::start(200).await;
    let mut c = env.config();
    c.notify.discord.webhook_url = jarvis::config::Secret::new(&slow_url);
    c.notify.webhook.url = url;
    c.notify.min_interval_ms = 0;
    let app = TestApp::start_remediating(c).await;
    assert_eq!(app.post_webhook(&payload(&["NobodyKnows"])).await.0, 200);
    eventually(
        "the webhook sink has it",
        Duration::from_secs(20),
        || async { (!fast.got().is_empty()).then_some(()) },
    )
    .await;
    let n = eventually(
        "discord waits its minute",
        Duration::from_secs(20),
        || async {
            outbox(&app)
                .await
                .into_iter()
                .find(|n| delivery(n, "discord")["last_error"] == "rate limited")
        },
    )
    .await;
    assert_eq!(delivery(&n, "webhook")["state"], "delivered", "{n}");
    let discord = delivery(&n, "discord");
    assert_eq!(discord["state"], "pending", "{n}");
    assert_eq!(discord["last_error"], "rate limited", "{n}");
    let next = chrono_ms(discord["next_attempt_at"].as_str().unwrap());
    let tried = chrono_ms(n["created_at"].as_str().unwrap());
    assert!(next - tried >= 55_000, "retry_after is honoured: {n}");
    // A 429 is not a failed try, and it pauses the whole sink: the next alert's
    // message waits too, untried, while the other sink delivers it.
    assert_eq!(discord["attempts"], 0, "{n}");
    assert_eq!(app.post_webhook(&payload(&["SecondAlert"])).await.0, 200);
    let second = eventually(
        "the webhook sink has the second",
        Duration::from_secs(20),
        || async {
            outbox(&app).await.into_iter().find(|n| {
                n["title"].as_str().unwrap_or("").contains("SecondAlert")
                    && delivery(n, "webhook")["state"] == "delivered"
            })
        },
    )
    .await;
    let paused = delivery(&second, "discord");
    assert_eq!(
        (paused["state"].as_str(), paused["last_error"].as_str()),
        (Some("pending"), None),
        "{second}"
    );
    assert!(slow.got().is_empty());
    app.stop().await;
}

/// Epoch milliseconds of an RFC 3339 time as the API prints it.
fn chrono_ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .timestamp_millis()
}
