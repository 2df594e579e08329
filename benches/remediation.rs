//! Remediation latency (numbers, not assertions), on the real application with real
//! parts started by the test support code (Debian's sshd, prometheus and
//! prometheus-alertmanager, as `.ci/run` installs them):
//!
//! 1. Alert received → first command started, on the pattern path over local sshd.
//!    Sequential alerts, each with its own fingerprint. The first command is
//!    `date +%s%N` on the remote side, so the start time is read from the host's own
//!    clock (the same machine) and nothing is inferred from log timestamps.
//! 2. The drill's mean time to recovery: the service is killed, Prometheus fires,
//!    Alertmanager delivers, Jarvis runs the fix and verifies it in Prometheus, split
//!    into detection (Prometheus + Alertmanager), Jarvis's own time to the first command,
//!    and the fix plus verification.
//!
//!     cargo bench --bench remediation [-- --alerts N --drills N]

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jarvis::config::DatabaseUrl;
use jarvis::exec::ssh::SshExecutor;
use jarvis::learn::library;
use jarvis::learn::patterns::PatternDef;
use jarvis::store::{
    AlertFilter, RemediationFilter, RemediationRow, RemediationStore, SqlStore, Store,
};

use support::drill::{Drill, restart_rule};
use support::sshd::Sshd;
use support::{Backend, TestApp, TestEnv, eventually};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (p50, p99, max) of `xs` (sorted in place).
fn percentiles(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), xs[xs.len() - 1])
}

fn main() {
    jarvis::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        first_command(arg("--alerts", 200)).await;
        mttr(arg("--drills", 5)).await;
    });
}

async fn finished(store: &SqlStore, alert_name: &str) -> Vec<RemediationRow> {
    store
        .list_remediations(&RemediationFilter {
            limit: 100_000,
            alert_name: Some(alert_name.into()),
            ..RemediationFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status != jarvis::store::AttemptStatus::Running)
        .collect()
}

async fn first_command(alerts: usize) {
    let sshd = Sshd::start().expect("sshd is needed: apt-get install openssh-server");
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut c = env.config();
    c.hosts = vec![sshd.host("benchbox")];
    c.rules.settle_seconds = 0;
    // Production polling: new events wake the worker; the poll is only a fallback.
    c.worker.poll_interval_ms = 1000;
    // Latency, not the limiter: the default of 60 commands a minute would stop the run.
    c.safety.rate_limit_per_minute = 1_000_000;
    let app = TestApp::start_remediating(c).await;
    let store =
        SqlStore::open_url(&DatabaseUrl::new(&env.db_url), 2, Duration::from_secs(5)).unwrap();
    let marker = sshd.path("marker").display().to_string();
    let def = PatternDef {
        alert_name: "BenchFirstCommand".into(),
        host: "benchbox".into(),
        commands: vec!["date +%s%N".into(), format!("touch {marker}")],
        confidence: 0.95,
        description: "bench: read the clock, touch a file".into(),
        matchers: Default::default(),
    };
    let id = library::file_pattern_id("imported", &def);
    store
        .upsert_pattern(&library::row_from_def(
            id,
            "imported",
            &def,
            now_ns() / 1_000_000,
        ))
        .await
        .unwrap();

    let mut latencies = Vec::with_capacity(alerts);
    let mut cold = None;
    for i in 0..alerts {
        let body = serde_json::json!({
            "version": "4", "groupKey": format!("bench{i}"), "status": "firing", "receiver": "jarvis",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "BenchFirstCommand", "instance": format!("bench{i}:9100")},
                "annotations": {}, "startsAt": "2026-11-23T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
            }],
        })
        .to_string();
        let sent = now_ns();
        let (code, resp) = app.post_webhook(&body).await;
        assert_eq!(resp["accepted"], 1, "{code} {resp}");
        let row = eventually("the fix finishes", Duration::from_secs(30), || async {
            let rows = finished(&store, "BenchFirstCommand").await;
            (rows.len() == i + 1).then(|| rows.into_iter().next().unwrap())
        })
        .await;
        assert!(row.success, "the bench fix failed: {}", row.error_message);
        let started: i64 = row
            .output
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no clock in the output: {}", row.output));
        let ms = (started - sent) as f64 / 1e6;
        if i == 0 {
            cold = Some(ms);
        } else {
            latencies.push(ms);
        }
    }
    let (p50, p99, max) = percentiles(&mut latencies);
    // The same command straight through the SSH executor on a pooled connection: the
    // host's own cost of starting a command (sshd's session and the login shell).
    let ssh = SshExecutor::new(&[sshd.host("benchbox")], sshd.path("tofu")).unwrap();
    let mut raw = Vec::with_capacity(latencies.len());
    for _ in 0..=latencies.len() {
        let sent = now_ns();
        let out = ssh
            .run("benchbox", "date +%s%N", Duration::from_secs(10))
            .await
            .unwrap();
        let started: i64 = out.stdout.trim().parse().unwrap();
        raw.push((started - sent) as f64 / 1e6);
    }
    raw.remove(0); // the connection
    let (raw50, raw99, _) = percentiles(&mut raw);
    println!(
        "SSH executor alone, pooled connection: command started after p50 {raw50:.1} ms, p99 {raw99:.1} ms \
         → Jarvis's own share of the alert path ≈ {:.1} ms at p50",
        p50 - raw50
    );
    println!(
        "alert → first command (pattern path, local sshd, SQLite): first alert (new SSH connection) {:.1} ms; \
         next {} alerts: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        cold.unwrap_or_default(),
        latencies.len()
    );
    app.stop().await;
}

async fn mttr(drills: usize) {
    if drills == 0 {
        return;
    }
    let Some(d) = Drill::start(restart_rule, |c, _| {
        // Every round is the same alert again.
        c.remediation.fingerprint_cooldown_seconds = 0;
        c.remediation.max_attempts_per_alert = 1000;
    })
    .await
    else {
        panic!("prometheus, prometheus-alertmanager and openssh-server are needed");
    };
    let store = SqlStore::open_url(
        &DatabaseUrl::new(d.config.database.url.to_string()),
        2,
        Duration::from_secs(5),
    )
    .unwrap();
    println!(
        "| round | detection s | Jarvis to first command ms | fix + verification s | MTTR s |"
    );
    println!("|---|---|---|---|---|");
    let (mut detect, mut jarvis, mut verify, mut total) = (vec![], vec![], vec![], vec![]);
    for round in 0..drills {
        let killed = now_ns() / 1_000_000;
        d.svc.kill();
        let fix = eventually("a verified fix", Duration::from_secs(120), || async {
            finished(&store, "DrillServiceDown")
                .await
                .into_iter()
                .find(|r| r.success && r.verified && r.started_at >= killed)
        })
        .await;
        let event = store
            .list_alert_events(&AlertFilter {
                limit: 1000,
                state: None,
                alertname: Some("DrillServiceDown".into()),
            })
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.id == fix.alert_event_id)
            .unwrap();
        let finished_at = fix.finished_at.unwrap();
        let row = (
            (event.received_at - killed) as f64 / 1e3,
            (fix.started_at - event.received_at) as f64,
            (finished_at - fix.started_at) as f64 / 1e3,
            (finished_at - killed) as f64 / 1e3,
        );
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {:.2} |",
            round + 1,
            row.0,
            row.1,
            row.2,
            row.3
        );
        detect.push(row.0);
        jarvis.push(row.1);
        verify.push(row.2);
        total.push(row.3);
        // Let Prometheus see the service up and resolve before the next round.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    println!(
        "mean: detection {:.2} s, Jarvis to first command {:.0} ms, fix + verification {:.2} s, MTTR {:.2} s",
        mean(&detect),
        mean(&jarvis),
        mean(&verify),
        mean(&total)
    );
    d.app.stop().await;
}
