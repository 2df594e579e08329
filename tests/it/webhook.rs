//! The webhook and read API over a real socket, on both backends.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, PASSWORD, TestApp, TestEnv, USER, eventually, fixture, payload};

both_backends! {
    async fn health_and_metrics_are_open(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = TestApp::start(env.config()).await;
        let h = app.health().await;
        assert_eq!(h["status"], "healthy");
        assert_eq!(h["database_connected"], true);
        assert_eq!(h["spooled_alerts"], 0);
        assert_eq!(h["llm"], "none");
        assert_eq!(h["maintenance_mode"], false);
        assert_eq!(h["database"], if b == Backend::Sqlite { "sqlite" } else { "postgres" });
        let m = app.metrics().await;
        assert!(m.contains("jarvis_database_connected 1"), "{m}");
        assert!(m.contains("jarvis_spooled_alerts 0"), "{m}");
        app.stop().await;
    }

    async fn everything_else_requires_credentials(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let mut config = env.config();
        config.api.token = jarvis::config::Secret::new("api-token-1");
        let app = TestApp::start(config).await;
        let body = payload(&["AuthCheck"]);
        for path in ["/webhook", "/webhook/alertmanager"] {
            for auth in [None, Some((USER, "wrong")), Some(("someone", PASSWORD))] {
                let resp = app.post(path, body.clone(), Some("application/json"), auth).await;
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path} {auth:?}");
                assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"jarvis\"");
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["error"], "unauthorized");
            }
        }
        for path in [
            "/alerts", "/version", "/hosts", "/approvals", "/audit", "/remediations", "/incidents",
            "/patterns", "/analytics", "/statistics", "/maintenance/status", "/runbooks",
            "/runbooks/ContainerDown", "/feedback",
        ] {
            let resp = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
            let resp = app.client.get(app.url(path)).bearer_auth("wrong").send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
            let resp = app.client.get(app.url(path)).bearer_auth("api-token-1").send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
        }
        for path in [
            "/runbooks/reload", "/maintenance/start", "/maintenance/end", "/commands",
            "/approvals/any/approve", "/approvals/any/deny",
        ] {
            let resp = app.client.post(app.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        assert!(app.alerts("").await.is_empty(), "a refused webhook stored something");
        // The original path works with valid credentials.
        let resp = app.post("/webhook/alertmanager", body, Some("application/json"), Some((USER, PASSWORD))).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (_, v) = app.get("/version").await;
        assert_eq!(v["name"], "jarvis");
        assert!(v["commit"].as_str().is_some());
        app.stop().await;
    }

    async fn malformed_input_is_rejected_and_stores_nothing(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = TestApp::start(env.config()).await;
        let cases: &[(&str, &str)] = &[
            ("{not json", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"status": "firing"}"#, "missing field \"alerts\""),
            (r#"{"alerts": {"a": 1}}"#, "alerts must be a list"),
            (r#"{"alerts": [{"labels": {"instance": "x"}}]}"#, "alerts[0].labels.alertname is missing"),
            (r#"{"alerts": [{"labels": {"alertname": 7}}]}"#, "alerts[0].labels.alertname must be a string"),
            (r#"{"alerts": [{"labels": {"alertname": "A", "n": 1}}]}"#, "alerts[0].labels.n must be a string"),
            (r#"{"alerts": [{"labels": {"alertname": "A"}, "annotations": {"s": []}}]}"#, "alerts[0].annotations.s must be a string"),
            (r#"{"alerts": [{"labels": {"alertname": "A"}, "status": "pending"}]}"#, "status \"pending\""),
            // A valid alert before a bad one: nothing of the payload is stored.
            (r#"{"alerts": [{"labels": {"alertname": "Good"}}, {"labels": {"alertname": "Bad", "x": null}}]}"#, "alerts[1].labels.x"),
        ];
        for (body, expected) in cases {
            let (status, v) = app.post_webhook(body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(v["error"], "bad_request");
            assert!(v["message"].as_str().unwrap().contains(expected), "{body}: {v}");
        }
        for ct in [Some("text/plain"), None, Some("application/x-www-form-urlencoded")] {
            let resp = app.post("/webhook", payload(&["A"]), ct, Some((USER, PASSWORD))).await;
            assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"], "unsupported_media_type");
        }
        assert!(app.alerts("").await.is_empty(), "malformed input was stored");
        let m = app.metrics().await;
        assert!(m.contains("jarvis_webhook_requests_total{outcome=\"malformed\"} 10"), "{m}");
        app.stop().await;
    }

    async fn the_body_limit_is_enforced(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let mut config = env.config();
        config.webhook.max_body_bytes = 2048;
        let app = TestApp::start(config).await;
        let names: Vec<String> = (0..100).map(|i| format!("Alert{i}")).collect();
        let big = payload(&names.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(big.len() > 2048);
        let resp = app.post("/webhook", big, Some("application/json"), Some((USER, PASSWORD))).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "payload_too_large");
        assert!(v["message"].as_str().unwrap().contains("2048"));
        assert!(app.alerts("").await.is_empty());
        let (status, _) = app.post_webhook(&payload(&["Small"])).await;
        assert_eq!(status, StatusCode::OK);
        app.stop().await;
    }

    /// A hand-made payload's fingerprint (`"manual-smoke-1"`, as the original Jarvis's
    /// test scripts and n8n flows send) is kept as given and deduplicates like any.
    async fn an_opaque_fingerprint_is_accepted_and_deduplicated(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = TestApp::start(env.config()).await;
        let body = json!({"alerts": [{
            "status": "firing",
            "labels": {"alertname": "SmokeTest", "instance": "nexus:9100"},
            "startsAt": "2026-11-25T10:00:00Z",
            "fingerprint": "manual-smoke-1",
        }]})
        .to_string();
        assert_eq!(app.post_webhook(&body).await, (StatusCode::OK, json!({"accepted": 1, "duplicates": 0})));
        assert_eq!(app.post_webhook(&body).await, (StatusCode::OK, json!({"accepted": 0, "duplicates": 1})));
        let stored = app.alerts("&alertname=SmokeTest").await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0]["fingerprint"], "manual-smoke-1");
        let bad = body.replace("manual-smoke-1", &"x".repeat(129));
        let (status, v) = app.post_webhook(&bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["message"].as_str().unwrap().contains("longer than 128"), "{v}");
        app.stop().await;
    }

    async fn fixtures_are_stored_once_and_repeats_counted(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = TestApp::start(env.config()).await;
        let firing = fixture("container_down_firing.json");
        assert_eq!(app.post_webhook(&firing).await, (StatusCode::OK, json!({"accepted": 1, "duplicates": 0})));
        // Alertmanager retry, and the same alert from an HA peer with another externalURL.
        assert_eq!(app.post_webhook(&firing).await, (StatusCode::OK, json!({"accepted": 0, "duplicates": 1})));
        let peer = firing.replace("http://alertmanager.lan:9093", "http://alertmanager-2.lan:9093");
        assert_eq!(app.post_webhook(&peer).await, (StatusCode::OK, json!({"accepted": 0, "duplicates": 1})));
        // Resolved is a new event for the same fingerprint.
        let resolved = fixture("container_down_resolved.json");
        assert_eq!(app.post_webhook(&resolved).await.1["accepted"], 1);
        assert_eq!(app.post_webhook(&fixture("grouped_three_firing.json")).await.1["accepted"], 3);
        // The same alert twice inside one payload.
        let v: Value = serde_json::from_str(&fixture("with_remediation_hints.json")).unwrap();
        let mut doubled = v.clone();
        let a = v["alerts"][0].clone();
        doubled["alerts"] = json!([a, a]);
        assert_eq!(app.post_webhook(&doubled.to_string()).await.1, json!({"accepted": 1, "duplicates": 1}));

        let all = app.alerts("").await;
        assert_eq!(all.len(), 6);
        let cd: Vec<&Value> = all.iter().filter(|a| a["alertname"] == "ContainerDown").collect();
        assert_eq!(cd.len(), 2);
        // Newest first.
        assert_eq!(all[0]["alertname"], "WireGuardVPNDown");
        assert_eq!(cd[0]["status"], "resolved");
        assert_eq!(cd[1]["fingerprint"], "6f1d2c7a9b3e4d10");
        assert_eq!(cd[1]["labels"]["container"], "frigate");
        assert_eq!(cd[1]["annotations"]["summary"], "Container frigate is down");
        assert_eq!(cd[1]["starts_at"], "2026-11-20T03:12:45.123Z");
        assert_eq!(cd[1]["instance"], "10.0.0.11:9100");
        let m = app.metrics().await;
        assert!(m.contains("jarvis_alerts_received_total{status=\"firing\"} 5"), "{m}");
        assert!(m.contains("jarvis_alerts_received_total{status=\"resolved\"} 1"), "{m}");
        assert!(m.contains("jarvis_alerts_duplicate_total 3"), "{m}");
        app.stop().await;
    }

    async fn handwritten_payloads_get_alertmanagers_fingerprint(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = TestApp::start(env.config()).await;
        let (status, v) = app.post_webhook(&fixture("handwritten_minimal.json")).await;
        assert_eq!((status, v["accepted"].as_u64()), (StatusCode::OK, Some(1)));
        let all = app.alerts("").await;
        // What a real Alertmanager 0.25 computes for these labels.
        assert_eq!(all[0]["fingerprint"], "e63590747e2a29b2");
        assert_eq!(all[0]["status"], "firing");
        app.stop().await;
    }

    async fn filters_and_their_errors(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = TestApp::start(env.config()).await;
        app.post_webhook(&payload(&["A", "B", "C"])).await;
        app.post_webhook(&fixture("container_down_resolved.json")).await;
        // Let the worker bring every event to its final state.
        eventually("events processed", Duration::from_secs(10), || async {
            let left = app.alerts("&state=received").await;
            left.is_empty().then_some(())
        })
        .await;
        assert_eq!(app.alerts("&alertname=B").await.len(), 1);
        assert_eq!(app.alerts("&state=escalated").await.len(), 3);
        let resolved = app.alerts("&state=resolved").await;
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0]["alertname"], "ContainerDown");
        let (_, v) = app.get("/alerts?limit=2").await;
        assert_eq!(v["alerts"].as_array().unwrap().len(), 2);
        for (q, expected) in [("?limit=0", "limit"), ("?limit=abc", "limit"), ("?limit=5000", "limit"), ("?state=done", "state")] {
            let (status, v) = app.get(&format!("/alerts{q}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
            assert!(v["message"].as_str().unwrap().contains(expected), "{q}: {v}");
        }
        let (status, v) = app.get("/nonexistent").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v["error"], "not_found");
        app.stop().await;
    }

    async fn concurrent_repeats_are_stored_exactly_once(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = std::sync::Arc::new(TestApp::start(env.config()).await);
        let body = fixture("grouped_three_firing.json");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, body) = (app.clone(), body.clone());
            tasks.push(tokio::spawn(async move { app.post_webhook(&body).await }));
        }
        let (mut accepted, mut dups) = (0, 0);
        for t in tasks {
            let (status, v) = t.await.unwrap();
            assert_eq!(status, StatusCode::OK);
            accepted += v["accepted"].as_u64().unwrap();
            dups += v["duplicates"].as_u64().unwrap();
        }
        assert_eq!((accepted, dups), (3, 57));
        assert_eq!(app.alerts("").await.len(), 3);
        std::sync::Arc::into_inner(app).unwrap().stop().await;
    }
}
