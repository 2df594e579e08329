//! The Prometheus client and verification logic against a real Prometheus scraping a
//! small service the test can break and mend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jarvis::domain::alert::LabelSet;
use jarvis::integrations::prometheus::{PromError, Prometheus as Client};
use jarvis::pipeline::verify::{Outcome, Presence, Tracker, presence};

use crate::support::eventually;
use crate::support::prometheus::Prometheus;

/// A service exposing `svc_up` (1 while healthy).
async fn service(up: Arc<AtomicBool>) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let up = up.clone();
            async move {
                format!(
                    "# TYPE svc_up gauge\nsvc_up {}\n",
                    u8::from(up.load(Ordering::SeqCst))
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

const RULES: &str = "      - alert: SvcDown\n        expr: svc_up == 0\n        for: 0s\n        labels:\n          severity: critical\n        annotations:\n          summary: service down\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_alerts_and_verification_on_real_prometheus() {
    jarvis::install_crypto_provider();
    let up = Arc::new(AtomicBool::new(true));
    let target = service(up.clone()).await;
    let t = target.clone();
    let Some(prom) = tokio::task::spawn_blocking(move || Prometheus::start(&[t], RULES))
        .await
        .unwrap()
    else {
        return;
    };
    let client = Client::new(&prom.url, Duration::from_secs(10)).unwrap();

    let samples = eventually("svc_up is scraped", Duration::from_secs(30), || async {
        client.query("svc_up").await.ok().filter(|s| !s.is_empty())
    })
    .await;
    assert_eq!(samples[0].value, 1.0);
    assert_eq!(samples[0].metric["instance"], target);
    assert_eq!(samples[0].metric["job"], "svc");
    let scalar = client.query("scalar(vector(2.5))").await.unwrap();
    assert_eq!(scalar[0].value, 2.5);
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 + 1.0;
    let series = client
        .query_range("svc_up", now - 30.0, now, 1.0)
        .await
        .unwrap();
    assert!(!series.is_empty() && series[0].points.iter().all(|(_, v)| *v == 1.0));
    match client.query("svc_up{").await {
        Err(PromError::Api {
            error_type,
            message,
        }) => assert!(error_type == "bad_data" && !message.is_empty()),
        other => panic!("expected a bad_data error, got {other:?}"),
    }

    // Break the service: the alert fires in Prometheus.
    up.store(false, Ordering::SeqCst);
    let firing = eventually("SvcDown fires", Duration::from_secs(30), || async {
        let alerts = client.alerts().await.ok()?;
        alerts
            .into_iter()
            .find(|a| a.labels["alertname"] == "SvcDown" && a.state == "firing")
    })
    .await;
    // The webhook copy carries the external label too: still the same alert.
    let mut webhook: LabelSet = firing.labels.clone();
    webhook.insert("cluster".into(), "homelab".into());
    let mut tracker = Tracker::default();
    assert_eq!(
        presence(&webhook, &client.alerts().await.unwrap()),
        Presence::Firing
    );
    assert_eq!(tracker.observe(Presence::Firing), None);
    // An alert whose labels differ is never found: unverifiable, not "resolved".
    let mut other = webhook.clone();
    other.insert("instance".into(), "elsewhere:1".into());
    let mut blind = Tracker::default();
    assert_eq!(
        blind.observe(presence(&other, &client.alerts().await.unwrap())),
        None
    );
    assert_eq!(blind.timed_out(), Outcome::Unverifiable);

    // Mend it: Prometheus resolves the alert and the tracker calls it resolved.
    up.store(true, Ordering::SeqCst);
    let outcome = eventually("SvcDown resolves", Duration::from_secs(30), || async {
        let p = presence(&webhook, &client.alerts().await.ok()?);
        tracker.clone().observe(p)
    })
    .await;
    assert_eq!(outcome, Outcome::Resolved);

    let unreachable = Client::new("http://127.0.0.1:1", Duration::from_secs(2)).unwrap();
    assert!(matches!(
        unreachable.alerts().await,
        Err(PromError::Unreachable { .. })
    ));
}
