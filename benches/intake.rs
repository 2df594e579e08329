//! Webhook intake benchmark on SQLite (not a test: numbers, not assertions).
//!
//! Runs the real application on a temporary SQLite file and drives it over loopback
//! HTTP with keep-alive connections:
//!   1. throughput: alerts/s with 1-alert and 20-alert payloads at several
//!      concurrencies (every alert new, so every one is a durable insert);
//!   2. latency at a fixed 1,000 requests/s (open loop: latency is measured from the
//!      scheduled send time, so a stall is not hidden by the sender waiting).
//!
//! After each run it checks that every accepted alert is in the database.
//!
//!     cargo bench --bench intake [-- --seconds 5]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jarvis::app::Application;
use jarvis::config::{Config, DatabaseUrl, Secret};
use jarvis::store::{AlertFilter, SqlStore, Store};

const PASSWORD: &str = "bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    jarvis::install_crypto_provider();
    // Server and load generator get separate runtimes; they share the machine's cores.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!(
        "# Jarvis webhook intake, SQLite, {} cores, {seconds} s per run",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| payload | concurrency | requests/s | alerts/s | p50 ms | p99 ms | stored = accepted |"
    );
    println!("|---|---|---|---|---|---|---|");
    for alerts_per_payload in [1usize, 20] {
        for concurrency in [1usize, 8, 32, 64] {
            let dir = tempfile::tempdir().unwrap();
            let (addr, db_url, stop) = server_rt.block_on(start(&dir));
            let r = client_rt.block_on(closed_loop(
                addr,
                alerts_per_payload,
                concurrency,
                Duration::from_secs(seconds),
            ));
            let stored = server_rt.block_on(count(&db_url));
            let _ = stop.send(());
            println!(
                "| {alerts_per_payload} alert(s) | {concurrency} | {:.0} | {:.0} | {:.2} | {:.2} | {} ({stored}/{}) |",
                r.requests as f64 / r.elapsed,
                r.alerts as f64 / r.elapsed,
                r.p(0.50),
                r.p(0.99),
                if stored == r.alerts { "yes" } else { "NO" },
                r.alerts
            );
        }
    }

    println!();
    println!(
        "| fixed rate | sent | p50 ms | p90 ms | p99 ms | max ms | errors | stored = accepted |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    let (addr, db_url, stop) = server_rt.block_on(start(&dir));
    let r = client_rt.block_on(open_loop(addr, 1000, Duration::from_secs(seconds * 2)));
    let stored = server_rt.block_on(count(&db_url));
    let _ = stop.send(());
    println!(
        "| 1,000 req/s, 1 alert each | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} ({stored}/{}) |",
        r.requests,
        r.p(0.50),
        r.p(0.90),
        r.p(0.99),
        r.p(1.0),
        r.errors,
        if stored == r.alerts { "yes" } else { "NO" },
        r.alerts
    );
}

async fn start(
    dir: &tempfile::TempDir,
) -> (
    std::net::SocketAddr,
    String,
    tokio::sync::oneshot::Sender<()>,
) {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    let db_url = format!("sqlite://{}/jarvis.db", dir.path().display());
    c.database.url = DatabaseUrl::new(&db_url);
    c.database.spool_dir = dir.path().join("spool").display().to_string();
    c.webhook.password = Secret::new(PASSWORD);
    let app = Application::build(c).await.unwrap();
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    (addr, db_url, tx)
}

async fn count(db_url: &str) -> u64 {
    let store = SqlStore::open_url(&DatabaseUrl::new(db_url), 2, Duration::from_secs(5)).unwrap();
    let rows = store
        .list_alert_events(&AlertFilter {
            limit: u32::MAX,
            state: None,
            alertname: None,
        })
        .await
        .unwrap();
    store.close().await;
    rows.len() as u64
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A payload of `n` alerts never sent before.
fn unique_payload(n: usize) -> String {
    let alerts: Vec<String> = (0..n)
        .map(|_| {
            let i = SEQ.fetch_add(1, Ordering::Relaxed);
            format!(
                r#"{{"status":"firing","labels":{{"alertname":"Bench","instance":"host-{i}:9100","job":"node","severity":"warning"}},"annotations":{{"summary":"bench alert {i}"}},"startsAt":"2026-11-20T03:12:45.123Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":""}}"#
            )
        })
        .collect();
    format!(
        r#"{{"receiver":"jarvis","status":"firing","version":"4","groupKey":"{{}}:{{alertname=\"Bench\"}}","alerts":[{}]}}"#,
        alerts.join(",")
    )
}

struct Run {
    requests: u64,
    alerts: u64,
    errors: u64,
    elapsed: f64,
    latencies_ms: Vec<f64>,
}

impl Run {
    fn p(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_ms.len() as f64 - 1.0) * q).round() as usize;
        self.latencies_ms[idx]
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> bool {
    match client
        .post(url)
        .basic_auth("alertmanager", Some(PASSWORD))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

async fn closed_loop(
    addr: std::net::SocketAddr,
    per_payload: usize,
    concurrency: usize,
    duration: Duration,
) -> Run {
    let url = Arc::new(format!("http://{addr}/webhook"));
    let client = client();
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut err, mut lat) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let body = unique_payload(per_payload);
                let t = Instant::now();
                if post(&client, &url, body).await {
                    ok += 1;
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    err += 1;
                }
            }
            (ok, err, lat)
        }));
    }
    let mut run = Run {
        requests: 0,
        alerts: 0,
        errors: 0,
        elapsed: 0.0,
        latencies_ms: Vec::new(),
    };
    for t in tasks {
        let (ok, err, lat) = t.await.unwrap();
        run.requests += ok;
        run.errors += err;
        run.latencies_ms.extend(lat);
    }
    run.elapsed = start.elapsed().as_secs_f64();
    run.alerts = run.requests * per_payload as u64;
    run.latencies_ms.sort_by(f64::total_cmp);
    run
}

async fn open_loop(addr: std::net::SocketAddr, rate: u64, duration: Duration) -> Run {
    let url = Arc::new(format!("http://{addr}/webhook"));
    let client = client();
    let total = rate * duration.as_secs();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let ok = post(&client, &url, unique_payload(1)).await;
            (ok, scheduled.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut run = Run {
        requests: 0,
        alerts: 0,
        errors: 0,
        elapsed: 0.0,
        latencies_ms: Vec::new(),
    };
    for t in tasks {
        let (ok, ms) = t.await.unwrap();
        if ok {
            run.requests += 1;
            run.latencies_ms.push(ms);
        } else {
            run.errors += 1;
        }
    }
    run.elapsed = start.elapsed().as_secs_f64();
    run.alerts = run.requests;
    run.latencies_ms.sort_by(f64::total_cmp);
    run
}
