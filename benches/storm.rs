//! Alert storm benchmark (not a test: numbers, not assertions).
//!
//! 10,000 firing alerts from 300 alert rules arrive in one burst (batches of 100 per
//! webhook, as Alertmanager groups them) at the real application on SQLite with the
//! remediation pipeline and no hosts, so every alert is triaged and escalated. Reports
//! how long until every alert is in a final state, whether any was lost, and how many
//! notifications a generic webhook sink received.
//!
//!     cargo bench --bench storm

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jarvis::app::Application;
use jarvis::config::{Config, DatabaseUrl, Secret};
use jarvis::domain::alert::AlertState;
use jarvis::store::{AlertFilter, SqlStore, Store};

const ALERTS: usize = 10_000;
const RULES: usize = 300;
const BATCH: usize = 100;

async fn non_final(s: &SqlStore) -> usize {
    let mut n = 0;
    for state in [
        AlertState::Received,
        AlertState::Remediating,
        AlertState::Verifying,
        AlertState::AwaitingApproval,
    ] {
        n += s
            .list_alert_events(&AlertFilter {
                limit: 100_000,
                state: Some(state),
                alertname: None,
            })
            .await
            .unwrap()
            .len();
    }
    n
}

fn main() {
    jarvis::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    // The notification sink: counts POSTs.
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    let sink = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let r = r2.clone();
            async move {
                r.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(sink_listener, sink).await });

    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/storm.db", dir.path().display());
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.database.url = DatabaseUrl::new(&db_url);
    c.database.spool_dir = dir.path().join("spool").display().to_string();
    c.webhook.password = Secret::new("bench");
    c.worker.poll_interval_ms = 50;
    c.notify.webhook.url = format!("http://{sink_addr}/hook");
    let app = Application::build(c).await.unwrap();
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));

    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut accepted = 0u64;
    for batch in 0..ALERTS / BATCH {
        let alerts: Vec<serde_json::Value> = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                serde_json::json!({
                    "status": "firing",
                    "labels": {"alertname": format!("StormRule{}", n % RULES), "instance": format!("node{n}:9100")},
                    "annotations": {},
                    "startsAt": "2026-11-23T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                })
            })
            .collect();
        let body = serde_json::json!({
            "version": "4", "groupKey": format!("storm{batch}"), "status": "firing", "receiver": "jarvis",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": alerts,
        });
        let resp: serde_json::Value = client
            .post(format!("http://{addr}/webhook"))
            .basic_auth("alertmanager", Some("bench"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        accepted += resp["accepted"].as_u64().unwrap_or(0);
    }
    let intake = started.elapsed();
    let store = SqlStore::open_url(&DatabaseUrl::new(&db_url), 2, Duration::from_secs(5)).unwrap();
    while non_final(&store).await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = started.elapsed();
    let all = store
        .list_alert_events(&AlertFilter {
            limit: 100_000,
            state: None,
            alertname: None,
        })
        .await
        .unwrap();
    let _ = tx.send(());
    server.await.unwrap().unwrap();
    let mut by_state = std::collections::BTreeMap::new();
    for e in &all {
        *by_state.entry(e.state.to_string()).or_insert(0usize) += 1;
    }
    println!(
        "# Alert storm: {ALERTS} alerts from {RULES} rules, batches of {BATCH}, SQLite, no hosts"
    );
    println!("| accepted | stored | intake s | all final s | final states | notifications |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {accepted} | {} | {:.1} | {:.1} | {:?} | {} |",
        all.len(),
        intake.as_secs_f64(),
        done.as_secs_f64(),
        by_state,
        received.load(Ordering::Relaxed)
    );
}
