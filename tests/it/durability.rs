//! Nothing accepted is lost: restarts, database outages (PostgreSQL cut off by a
//! proxy, SQLite locked by another process), and claims that outlive their owner.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jarvis::config::DatabaseUrl;
use jarvis::domain::alert::AlertState;
use jarvis::pipeline::{Disposition, Pipeline};
use jarvis::store::AlertEventRow;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;

use crate::both_backends;
use crate::support::proxy::{DbProxy, target_of};
use crate::support::{Backend, TestApp, TestEnv, eventually, fresh_postgres_url, payload};

/// Names of the stored alerts, sorted.
async fn stored_names(app: &TestApp) -> Vec<String> {
    let mut names: Vec<String> = app
        .alerts("")
        .await
        .iter()
        .map(|a| a["alertname"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

both_backends! {
    async fn a_restart_keeps_every_alert(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let app = TestApp::start(env.config()).await;
        assert_eq!(app.post_webhook(&payload(&["A", "B"])).await.1["accepted"], 2);
        app.stop().await;
        let app = TestApp::start(env.config()).await;
        assert_eq!(stored_names(&app).await, ["A", "B"]);
        assert_eq!(app.post_webhook(&payload(&["A", "B"])).await.1, json!({"accepted": 0, "duplicates": 2}));
        app.stop().await;
    }

    async fn events_in_progress_at_shutdown_resume_after_restart(b: Backend) {
        let Some(env) = TestEnv::new(b).await else { return };
        let mut config = env.config();
        config.server.shutdown_grace_seconds = 1;
        config.worker.claim_lease_seconds = 1;
        let stuck = Arc::new(Stuck::default());
        let app = TestApp::start_with(config.clone(), stuck.clone()).await;
        app.post_webhook(&payload(&["Slow"])).await;
        eventually("the worker picks the event up", Duration::from_secs(10), || async {
            (stuck.started.load(Ordering::SeqCst) > 0).then_some(())
        })
        .await;
        app.stop().await;
        assert_eq!(app_state_of(&env, "Slow").await, "received", "an unfinished event must not look final");

        let app = TestApp::start(config).await;
        eventually("the event is processed after the restart", Duration::from_secs(15), || async {
            let a = app.alerts("&alertname=Slow").await;
            (a[0]["state"] == "escalated").then_some(())
        })
        .await;
        app.stop().await;
    }
}

/// The state of the named alert, read with a fresh app-independent store handle.
async fn app_state_of(env: &TestEnv, name: &str) -> String {
    use jarvis::store::{AlertFilter, SqlStore, Store};
    let store =
        SqlStore::open_url(&DatabaseUrl::new(&env.db_url), 2, Duration::from_secs(5)).unwrap();
    let rows = store
        .list_alert_events(&AlertFilter {
            limit: 10,
            state: None,
            alertname: Some(name.into()),
        })
        .await
        .unwrap();
    store.close().await;
    rows[0].state.to_string()
}

/// A pipeline that never finishes.
#[derive(Default)]
struct Stuck {
    started: AtomicUsize,
}

#[async_trait]
impl Pipeline for Stuck {
    async fn process(&self, _event: &AlertEventRow) -> Disposition {
        self.started.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

/// Counts how often each event is processed.
#[derive(Default)]
struct Counting {
    seen: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Pipeline for Counting {
    async fn process(&self, event: &AlertEventRow) -> Disposition {
        self.seen.lock().unwrap().push(event.id.clone());
        tokio::time::sleep(Duration::from_millis(2)).await;
        Disposition {
            state: AlertState::Resolved,
            reason: None,
            park: None,
            notes: Vec::new(),
            cooldown: None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_process_each_event_exactly_once() {
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let counting = Arc::new(Counting::default());
    let a = TestApp::start_with(env.config(), counting.clone()).await;
    let b = TestApp::start_with(env.config(), counting.clone()).await;
    let names: Vec<String> = (0..200).map(|i| format!("R{i}")).collect();
    for (i, chunk) in names.chunks(20).enumerate() {
        let body = payload(&chunk.iter().map(String::as_str).collect::<Vec<_>>());
        // Alternate replicas, as HA Alertmanager pairs would.
        let target = if i % 2 == 0 { &a } else { &b };
        assert_eq!(target.post_webhook(&body).await.0, StatusCode::OK);
    }
    eventually("all 200 processed", Duration::from_secs(30), || async {
        (a.alerts("&state=resolved").await.len() == 200).then_some(())
    })
    .await;
    let seen = counting.seen.lock().unwrap().clone();
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(
        (seen.len(), unique.len()),
        (200, 200),
        "an event was processed twice"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_spools_then_drains_in_order_with_nothing_lost() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let proxy = DbProxy::start(target_of(&url).await, true).await;
    let env = TestEnv::new(Backend::Sqlite).await.unwrap(); // for its temp dir
    let mut config = env.config();
    config.database.url = DatabaseUrl::new(proxy.rewrite(&url));
    let app = TestApp::start(config).await;

    assert_eq!(
        app.post_webhook(&payload(&["Before"])).await.1,
        json!({"accepted": 1, "duplicates": 0})
    );
    proxy.set_up(false);
    let (status, v) = app.post_webhook(&payload(&["During1", "During2"])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 2, "duplicates": 0, "spooled": true}));
    let (status, v) = app.post_webhook(&payload(&["During3"])).await;
    assert_eq!(
        (status, v["spooled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let h = app.health().await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["database_connected"], false);
    assert_eq!(h["spooled_alerts"], 3);
    let m = app.metrics().await;
    assert!(
        m.contains("jarvis_spooled_alerts 3") && m.contains("jarvis_database_connected 0"),
        "{m}"
    );
    let (status, v) = app.get("/alerts").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "reads fail plainly while the database is down: {v}"
    );

    proxy.set_up(true);
    eventually("the spool drains", Duration::from_secs(30), || async {
        let h = app.health().await;
        (h["status"] == "healthy" && h["spooled_alerts"] == 0).then_some(())
    })
    .await;
    assert_eq!(
        stored_names(&app).await,
        ["Before", "During1", "During2", "During3"]
    );
    // Spooled alerts keep their place in arrival order.
    let ordered: Vec<String> = app
        .alerts("")
        .await
        .iter()
        .rev()
        .map(|a| a["alertname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ordered, ["Before", "During1", "During2", "During3"]);
    // Replayed events are known: a retry of them is a duplicate.
    assert_eq!(
        app.post_webhook(&payload(&["During1"])).await.1,
        json!({"accepted": 0, "duplicates": 1})
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_serves_degraded_and_migrates_when_it_returns() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let proxy = DbProxy::start(target_of(&url).await, false).await;
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut config = env.config();
    config.database.url = DatabaseUrl::new(proxy.rewrite(&url));
    let app = TestApp::start(config).await;
    assert_eq!(app.health().await["status"], "degraded");
    let (status, v) = app.post_webhook(&payload(&["EarlyBird"])).await;
    assert_eq!(
        (status, v["spooled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    proxy.set_up(true);
    eventually("migrated and drained", Duration::from_secs(30), || async {
        let h = app.health().await;
        (h["status"] == "healthy" && h["spooled_alerts"] == 0).then_some(())
    })
    .await;
    assert_eq!(stored_names(&app).await, ["EarlyBird"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_spools_then_drains() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::start(env.config()).await;
    assert_eq!(
        app.post_webhook(&payload(&["Before"])).await.1["accepted"],
        1
    );

    // Another process (a backup tool, an sqlite3 shell) holds the write lock.
    let path = env.db_url.trim_start_matches("sqlite://").to_owned();
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let (status, v) = app.post_webhook(&payload(&["Locked"])).await;
    assert_eq!(
        (status, v["spooled"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    assert_eq!(app.health().await["status"], "degraded");

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    locker.close().await.unwrap();
    eventually("the spool drains", Duration::from_secs(30), || async {
        let h = app.health().await;
        (h["status"] == "healthy" && h["spooled_alerts"] == 0).then_some(())
    })
    .await;
    assert_eq!(stored_names(&app).await, ["Before", "Locked"]);
    app.stop().await;
}

/// Two replicas on one PostgreSQL: while another replica remediates PostgreSQL (its
/// claim is in the database), an alert about n8n (which depends on it) waits here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_wait_for_a_root_another_replica_is_remediating() {
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let mut config = env.config();
    config.rules.settle_seconds = 0;
    let app = TestApp::start_remediating(config).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut conn = sqlx::PgConnection::connect(&env.db_url).await.unwrap();
    sqlx::query(
        "INSERT INTO alert_events (id, fingerprint, status, starts_at, alertname, labels, annotations, \
         state, received_at, updated_at, claimed_by, claim_expires_at) \
         VALUES ('root1', 'fproot', 'firing', $1, 'PostgresDown', \
         '{\"alertname\":\"PostgresDown\",\"service\":\"postgres\"}', '{}', 'remediating', $1, $1, 'replica-b', $2)",
    )
    .bind(now)
    .bind(now + 120_000)
    .execute(&mut conn)
    .await
    .unwrap();
    let body = json!({"receiver": "jarvis", "status": "firing", "version": "4", "alerts": [{
        "status": "firing", "labels": {"alertname": "N8nDown", "service": "n8n"}, "annotations": {},
        "startsAt": "2026-11-23T03:12:45Z", "endsAt": "0001-01-01T00:00:00Z"}]});
    app.post_webhook(&body.to_string()).await;
    eventually(
        "n8n waits for PostgreSQL",
        Duration::from_secs(15),
        || async {
            let a = app.alerts("&alertname=N8nDown").await;
            a[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("waiting for PostgresDown"))
                .then_some(())
        },
    )
    .await;
    // The other replica finishes; n8n goes on (and, with nothing known, is escalated).
    sqlx::query("UPDATE alert_events SET state = 'resolved', claimed_by = NULL WHERE id = 'root1'")
        .execute(&mut conn)
        .await
        .unwrap();
    eventually("n8n is handled", Duration::from_secs(15), || async {
        let a = app.alerts("&alertname=N8nDown").await;
        (a[0]["state"] == "escalated").then_some(())
    })
    .await;
    app.stop().await;
}

/// A planner with nothing to propose whose escalation review takes a while.
#[derive(Default)]
struct SlowReview {
    reviewed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl jarvis::pipeline::plan::Planner for SlowReview {
    fn name(&self) -> &'static str {
        "slow-review"
    }
    async fn plan(
        &self,
        _ctx: &jarvis::pipeline::plan::PlanContext<'_>,
    ) -> Result<Option<jarvis::pipeline::plan::Plan>, String> {
        Ok(None)
    }
    async fn after_escalation(&self, _event_id: &str, _alert_name: &str, _reason: &str) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.reviewed.store(true, Ordering::SeqCst);
    }
}

/// Issue 11 §8: shutdown joins what the pipeline started in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_escalation_review_in_progress() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let planner = Arc::new(SlowReview::default());
    let app =
        TestApp::start_work(env.config(), jarvis::app::Work::Remediate(planner.clone())).await;
    assert_eq!(
        app.post_webhook(&payload(&["NoFixKnown"])).await.0,
        StatusCode::OK
    );
    eventually(
        "the alert is escalated",
        Duration::from_secs(20),
        || async { app.alerts("&state=escalated").await.into_iter().next() },
    )
    .await;
    assert!(
        !planner.reviewed.load(Ordering::SeqCst),
        "the review is still running"
    );
    app.stop().await;
    assert!(
        planner.reviewed.load(Ordering::SeqCst),
        "stop returned before the review finished"
    );
}

/// Issue 11 §5: a stored event whose labels cannot be read fails with a reason that
/// names the row; it is not remediated as an alert without labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_unreadable_labels_fails_naming_the_row() {
    use jarvis::store::{SqlStore, Store};
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let store =
        SqlStore::open_url(&DatabaseUrl::new(&env.db_url), 2, Duration::from_secs(5)).unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let path = env.db_url.trim_start_matches("sqlite://").to_owned();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO alert_events (id, fingerprint, status, starts_at, alertname, labels, annotations, \
         state, received_at, updated_at) VALUES ('ev-1', 'fp-1', 'firing', 1, 'Broken', '{not json', '{}', \
         'received', 1, 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let app = TestApp::start_remediating(env.config()).await;
    let event = eventually("the event fails", Duration::from_secs(20), || async {
        app.alerts("&alertname=Broken")
            .await
            .into_iter()
            .find(|a| a["state"] == "failed")
    })
    .await;
    let reason = event["reason"].as_str().unwrap();
    assert!(
        reason.contains("alert event ev-1") && reason.contains("labels"),
        "{reason}"
    );
    // The API says the row cannot be read instead of showing no labels.
    assert!(
        event["labels"]["error"].as_str().unwrap().contains("ev-1"),
        "{event}"
    );
    let (_, r) = app.get("/remediations?alert_name=Broken").await;
    assert_eq!(r["count"], 0, "nothing was tried: {r}");
    app.stop().await;
}
