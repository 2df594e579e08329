//! Issue 11 §2: one owner per fingerprint at a time, across workers and replicas.
//! Re-fires of the same alerts arrive at every replica at once; a pipeline records
//! when each owner held each fingerprint, and no two of those spans may overlap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jarvis::domain::alert::AlertState;
use jarvis::pipeline::{Disposition, Pipeline};
use jarvis::store::AlertEventRow;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestApp, TestEnv, eventually};

/// When each event was held, by whom.
#[derive(Default)]
struct Spans {
    spans: Mutex<Vec<Span>>,
}

#[derive(Debug, Clone)]
struct Span {
    fingerprint: String,
    event: String,
    owner: String,
    start: Instant,
    end: Instant,
}

#[async_trait]
impl Pipeline for Spans {
    async fn process(&self, event: &AlertEventRow) -> Disposition {
        let start = Instant::now();
        // Long enough for other workers to try the same fingerprint meanwhile.
        tokio::time::sleep(Duration::from_millis(
            3 + start.elapsed().subsec_nanos() as u64 % 7,
        ))
        .await;
        self.spans.lock().unwrap().push(Span {
            fingerprint: event.fingerprint.clone(),
            event: event.id.clone(),
            owner: event.claimed_by.clone().unwrap_or_default(),
            start,
            end: Instant::now(),
        });
        Disposition::done(AlertState::Resolved, "recorded")
    }
}

/// `fingerprints` alerts, each fired `refires` times (distinct `startsAt`), the
/// re-fires of one alert side by side so that one claim sees several of them.
fn refires(fingerprints: usize, refires: usize) -> Vec<Value> {
    (0..fingerprints)
        .flat_map(|f| {
            (0..refires).map(move |r| {
                json!({
                    "status": "firing",
                    "labels": {"alertname": format!("Refire{f}"), "instance": "host:9100"},
                    "annotations": {},
                    "startsAt": format!("2026-11-25T03:{:02}:{:02}.000Z", r / 60, r % 60),
                    "endsAt": "0001-01-01T00:00:00Z",
                })
            })
        })
        .collect()
}

both_backends! {
    async fn no_fingerprint_ever_has_two_owners_at_once(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        // Three replicas on PostgreSQL; on SQLite (one process by design) one
        // replica with many workers.
        let (replicas, concurrency) = if b == Backend::Postgres { (3, 4) } else { (1, 8) };
        let spans = Arc::new(Spans::default());
        let mut apps = Vec::new();
        for i in 0..replicas {
            let mut c = env.config();
            c.worker.concurrency = concurrency;
            c.cluster.replica_id = format!("replica-{i}");
            c.server.shutdown_grace_seconds = 5;
            apps.push(TestApp::start_with(c, spans.clone()).await);
        }
        let alerts = refires(20, 10);
        for (i, chunk) in alerts.chunks(20).enumerate() {
            let body = json!({"receiver": "jarvis", "status": "firing", "alerts": chunk, "version": "4"});
            // Every replica receives every webhook, as with HA Alertmanager pairs.
            for app in &apps {
                let (code, v) = app.post_webhook(&body.to_string()).await;
                assert_eq!(code, StatusCode::OK, "{v}");
            }
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        eventually("all 200 events are final", Duration::from_secs(60), || async {
            (apps[0].alerts("&state=resolved").await.len() == 200).then_some(())
        })
        .await;
        let spans = spans.spans.lock().unwrap().clone();
        let mut by_event: HashMap<&str, usize> = HashMap::new();
        for s in &spans {
            *by_event.entry(&s.event).or_default() += 1;
        }
        assert_eq!(by_event.len(), 200);
        assert!(by_event.values().all(|&n| n == 1), "an event was processed twice");
        let owners: std::collections::HashSet<&str> =
            spans.iter().map(|s| s.owner.split('/').next().unwrap()).collect();
        assert_eq!(owners.len(), replicas, "every replica took part: {owners:?}");
        let mut by_fp: HashMap<&str, Vec<&Span>> = HashMap::new();
        for s in &spans {
            by_fp.entry(&s.fingerprint).or_default().push(s);
        }
        assert_eq!(by_fp.len(), 20);
        for (fp, mut held) in by_fp {
            held.sort_by_key(|s| s.start);
            for w in held.windows(2) {
                assert!(
                    w[1].start >= w[0].end,
                    "fingerprint {fp} held by {} and {} at once",
                    w[0].owner,
                    w[1].owner
                );
            }
        }
        for app in apps {
            app.stop().await;
        }
    }
}

/// Issue 11 §2: three replicas on one PostgreSQL share one rate limit: with a limit of
/// 4 per minute, 12 commands sent round-robin run 4 times in all, not 4 per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_for_the_cluster() {
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let mut apps = Vec::new();
    for i in 0..3 {
        let mut c = env.config();
        c.cluster.replica_id = format!("replica-{i}");
        c.safety.rate_limit_per_minute = 4;
        c.hosts = vec![jarvis::config::HostConfig {
            name: "here".into(),
            address: "local".into(),
            ..jarvis::config::HostConfig::default()
        }];
        apps.push(TestApp::start(c).await);
    }
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for i in 0..12 {
        let (code, v) = apps[i % 3]
            .api_post("/commands", r#"{"host": "here", "command": "uptime"}"#)
            .await;
        assert_eq!(code, StatusCode::OK, "{v}");
        *outcomes
            .entry(v["outcome"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(outcomes.get("completed"), Some(&4), "{outcomes:?}");
    assert_eq!(outcomes.get("rate_limited"), Some(&8), "{outcomes:?}");
    // Every replica reports the same usage.
    for app in &apps {
        let h = app.health().await;
        let usage: usize = h["commands_last_minute"]
            .as_object()
            .map(|u| u.values().map(|n| n.as_u64().unwrap() as usize).sum())
            .unwrap_or(0);
        assert_eq!(usage, 4, "{h}");
    }
    for app in apps {
        app.stop().await;
    }
}

/// Issue 11 §2: host availability is decided once for the cluster. Two replicas probe
/// a host that is down; it goes offline for both, and only one "offline" message is
/// written, however many probes failed on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_on_an_offline_host_and_announce_it_once() {
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let Some(mut sshd) = crate::support::sshd::Sshd::start() else {
        return;
    };
    let host = sshd.host("box");
    sshd.stop();
    let mut apps = Vec::new();
    for i in 0..2 {
        let mut c = env.config();
        c.cluster.replica_id = format!("replica-{i}");
        c.hosts = vec![host.clone()];
        c.monitor.online_probe_seconds = 1;
        c.monitor.offline_probe_seconds = 1;
        apps.push(TestApp::start(c).await);
    }
    for app in &apps {
        eventually("the host is offline", Duration::from_secs(30), || async {
            let (_, hosts) = app.get("/hosts").await;
            let h = hosts["hosts"][0].clone();
            // Both replicas have kept probing well past the change.
            (h["status"] == "offline" && h["consecutive_failures"].as_u64() >= Some(8))
                .then_some(())
        })
        .await;
    }
    let (_, n) = apps[0].get("/notifications").await;
    let offline: Vec<&Value> = n["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "host_offline")
        .collect();
    assert_eq!(offline.len(), 1, "{n}");
    for app in apps {
        app.stop().await;
    }
}
