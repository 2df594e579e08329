//! Issue 11 §2: three `jarvis serve` processes on one PostgreSQL take a storm of
//! 2,000 alerts — 1,800 distinct ones and 20 alerts fired 10 times each, whose hint
//! runs a script on the local host — while one replica is `kill -9`ed and started
//! again. Afterwards: every alert is final, no fingerprint was ever remediated by two
//! owners at once, the rate limit held for the cluster, and no alert was notified
//! twice except in the one batch a crash may cut off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use serde_json::{Value, json};

use crate::cli::{Served, serve_cmd, write_config};
use crate::support::{PASSWORD, USER, eventually, fresh_postgres_url};

const RATE_LIMIT: usize = 10;

/// Everything the webhook sink received (bodies).
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Value>>>);

async fn receive(State(inbox): State<Inbox>, body: String) -> &'static str {
    inbox
        .0
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap_or(Value::Null));
    "ok"
}

async fn inbox() -> (String, Inbox) {
    let inbox = Inbox::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), inbox)
}

/// A fix that logs when it starts and ends, and which fingerprint label it served.
fn fix_script(dir: &Path) -> (String, PathBuf) {
    let log = dir.join("fixes.log");
    let script = dir.join("fix.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"start $1 $(date +%s%N)\" >> {log}\nsleep 0.3\necho \"end $1 $(date +%s%N)\" >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    (script.display().to_string(), log)
}

/// One replica's folder and configuration.
fn replica(root: &Path, i: usize, db: &str, script: &str, sink: &str) -> (PathBuf, PathBuf) {
    let dir = root.join(format!("replica-{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let extra = format!(
        "[cluster]\nreplica_id = \"replica-{i}\"\n\
         [worker]\nconcurrency = 4\nclaim_lease_seconds = 3\npoll_interval_ms = 100\n\
         [rules]\nsettle_seconds = 0\n\
         [safety]\nrate_limit_per_minute = {RATE_LIMIT}\n\
         [[safety.rules]]\nverdict = \"allowed\"\ncommand = \"{script}\"\nargs = [\"*\"]\n\
         [notify]\nmin_interval_ms = 0\nburst = 1000\n\
         [notify.webhook]\nurl = \"{sink}\"\n\
         [[hosts]]\nname = \"here\"\naddress = \"local\"\n"
    );
    let config = write_config(&dir, db, &extra);
    (dir, config)
}

/// `n` alerts from `from`: the re-fired ones (`Refire{k}`, one per 10th alert, with a
/// hint) and distinct ones (`Storm{i}`, no hint: escalated).
fn storm(from: usize, n: usize, script: &str) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            if i % 10 == 0 {
                let (k, r) = ((i / 10) % 20, i / 200);
                json!({
                    "status": "firing",
                    "labels": {"alertname": format!("Refire{k}"), "instance": "here:9100", "remediation_host": "here"},
                    "annotations": {"remediation_commands": format!("{script} refire{k}")},
                    "startsAt": format!("2026-11-25T04:00:{r:02}.000Z"),
                })
            } else {
                json!({
                    "status": "firing",
                    "labels": {"alertname": format!("Storm{i}"), "instance": "host:9100"},
                    "annotations": {},
                    "startsAt": "2026-11-25T04:00:00.000Z",
                })
            }
        })
        .collect()
}

async fn post(client: &reqwest::Client, served: &Served, alerts: &[Value]) {
    let body = json!({"receiver": "jarvis", "status": "firing", "alerts": alerts, "version": "4"});
    let resp = client
        .post(served.url("/webhook"))
        .basic_auth(USER, Some(PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// (start, end) of each run of the fix, by fingerprint label.
fn runs(log: &Path) -> HashMap<String, Vec<(u128, u128)>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut open: HashMap<String, Vec<u128>> = HashMap::new();
    let mut out: HashMap<String, Vec<(u128, u128)>> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (what, label, at) = (f[0], f[1].to_owned(), f[2].parse::<u128>().unwrap());
        match what {
            "start" => open.entry(label).or_default().push(at),
            _ => {
                let starts = open.entry(label.clone()).or_default();
                // Runs of one label never interleave if the claim is right; pair each
                // end with the earliest open start.
                starts.sort();
                let start = starts.remove(0);
                out.entry(label).or_default().push((start, at));
            }
        }
    }
    for (label, starts) in open {
        // A run cut off by the kill has no end: it lasts until the end of the test.
        for s in starts {
            out.entry(label.clone()).or_default().push((s, u128::MAX));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_a_storm_and_a_kill_9() {
    let Some(db) = fresh_postgres_url().await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (script, log) = fix_script(root.path());
    let (sink, inbox) = inbox().await;
    let configs: Vec<(PathBuf, PathBuf)> = (0..3)
        .map(|i| replica(root.path(), i, &db, &script, &sink))
        .collect();
    let start = |i: usize| Served::start(serve_cmd(&configs[i].0, &configs[i].1));
    let mut replicas: Vec<Option<Served>> = (0..3).map(|i| Some(start(i))).collect();
    let client = reqwest::Client::new();
    let began = Instant::now();

    // The first half, spread over the three replicas, 100 alerts per webhook.
    for (n, from) in (0..1000).step_by(100).enumerate() {
        let r = replicas[n % 3].as_ref().unwrap();
        post(&client, r, &storm(from, 100, &script)).await;
    }
    // One replica dies mid-storm; the others take the rest.
    replicas[1].take().unwrap().kill9();
    for (n, from) in (1000..2000).step_by(100).enumerate() {
        let r = replicas[[0, 2][n % 2]].as_ref().unwrap();
        post(&client, r, &storm(from, 100, &script)).await;
    }
    replicas[1] = Some(start(1));

    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let (events, unfinished) = eventually(
        "every alert reaches a final state",
        Duration::from_secs(240),
        || {
            let pool = pool.clone();
            async move {
                let (total, open): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE state IN ('received', 'remediating', \
                     'awaiting_approval', 'waiting_dependency', 'verifying')) FROM alert_events",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                (total == 2000 && open == 0).then_some((total, open))
            }
        },
    )
    .await;
    let elapsed = began.elapsed();
    assert_eq!((events, unfinished), (2000, 0));

    // No fingerprint had two owners at once.
    let runs = runs(&log);
    let total: usize = runs.values().map(Vec::len).sum();
    assert!(total >= 1, "some fixes ran");
    for (label, mut spans) in runs {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "{label} was fixed twice at once: {spans:?}"
            );
        }
    }
    // The rate limit held for the cluster (the whole storm is well within a minute's
    // worth of windows: at most one window's limit per started minute).
    let minutes = elapsed.as_secs() as usize / 60 + 1;
    assert!(
        total <= RATE_LIMIT * minutes,
        "{total} fixes in {elapsed:?} with a limit of {RATE_LIMIT}/min"
    );

    // Every escalation is stored once, and delivered.
    let per_event: Vec<(String, i64)> = sqlx::query_as(
        "SELECT alert_event_id, COUNT(*) FROM notifications WHERE kind = 'escalated' \
         GROUP BY alert_event_id HAVING COUNT(*) > 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(per_event.is_empty(), "notified twice: {per_event:?}");
    let escalations: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM notifications WHERE kind = 'escalated'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(escalations.len() >= 1800, "{}", escalations.len());
    // Each message names the notifications it carries (itself, or a digest's list).
    let received = eventually(
        "every escalation reaches the sink",
        Duration::from_secs(60),
        || async {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for body in inbox.0.lock().unwrap().iter() {
                let ids: Vec<String> = match body["carries"].as_array() {
                    Some(c) => c.iter().map(|i| i.as_str().unwrap().to_owned()).collect(),
                    None => vec![body["id"].as_str().unwrap().to_owned()],
                };
                for id in ids {
                    *seen.entry(id).or_default() += 1;
                }
            }
            escalations
                .iter()
                .all(|(id,)| seen.contains_key(id))
                .then_some(seen)
        },
    )
    .await;
    // A notification is sent again only when a crash cut its delivery short: at most
    // the one batch in flight at the kill, and under the same notification id.
    let twice = received.values().filter(|&&n| n > 1).count();
    assert!(
        twice <= 50,
        "{twice} notifications delivered more than once"
    );
    eprintln!(
        "chaos: 2000 alerts final in {elapsed:?} on 3 replicas (one kill -9ed); {total} fixes; {twice} resent"
    );
    for r in replicas.into_iter().flatten() {
        r.terminate();
    }
}
