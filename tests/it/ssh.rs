//! The SSH executor against a real OpenSSH server.

use std::sync::Arc;
use std::time::Duration;

use jarvis::exec::ExecError;
use jarvis::exec::ssh::SshExecutor;

use crate::support::sshd::Sshd;

const LIMIT: Duration = Duration::from_secs(30);

fn executor(hosts: &[jarvis::config::HostConfig], sshd: &Sshd) -> SshExecutor {
    SshExecutor::new(hosts, sshd.path("tofu_known_hosts"))
        .unwrap()
        .with_connect_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_output_and_the_output_cap() {
    let Some(sshd) = Sshd::start() else { return };
    let ex = executor(&[sshd.host("box")], &sshd);
    let o = ex
        .run("box", "echo out; echo err >&2; exit 7", LIMIT)
        .await
        .unwrap();
    assert_eq!(o.exit_code, Some(7));
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
    assert!(!o.success() && !o.timed_out);

    // Quoting survives the trip: the remote shell sees exactly this text.
    let o = ex
        .run("box", "printf '%s|' \"a b\" 'it'\\''s' $((1+2))", LIMIT)
        .await
        .unwrap();
    assert_eq!((o.exit_code, o.stdout.as_str()), (Some(0), "a b|it's|3|"));

    let o = ex
        .run(
            "box",
            "head -c 200000 /dev/zero | tr '\\0' x; head -c 100000 /dev/zero | tr '\\0' y >&2",
            LIMIT,
        )
        .await
        .unwrap();
    assert!(o.success());
    assert!(o.stdout_truncated && o.stderr_truncated);
    assert!(o.stdout.len() < 70 * 1024 && o.stdout.ends_with("[output cut at 64 KiB]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_the_remote_process() {
    let Some(sshd) = Sshd::start() else { return };
    let ex = executor(&[sshd.host("box")], &sshd);
    let marker = sshd.path("survived");
    let o = ex
        .run(
            "box",
            &format!("sleep 3; touch {}", marker.display()),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(o.timed_out, "{o:?}");
    assert_eq!(o.exit_code, None);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !marker.exists(),
        "the remote command kept running after its timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pinned_key_is_refused_with_both_fingerprints() {
    let Some(sshd) = Sshd::start() else { return };
    let mut host = sshd.host("box");
    let other = sshd.path("other");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    host.host_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let ex = executor(&[host], &sshd);
    let err = ex.run("box", "true", LIMIT).await.unwrap_err();
    let ExecError::HostKeyMismatch {
        expected,
        presented,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(
        expected.starts_with("SHA256:")
            && presented.starts_with("SHA256:")
            && expected != presented
    );
    let text = err.to_string();
    assert!(
        text.contains(expected) && text.contains(presented),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_refused_unless_trust_on_first_use() {
    let Some(sshd) = Sshd::start() else { return };
    let empty = sshd.path("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut host = sshd.host("box");
    host.host_key.clear();
    host.known_hosts = empty.display().to_string();
    let err = executor(std::slice::from_ref(&host), &sshd)
        .run("box", "true", LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::UnknownHostKey { .. }), "{err}");
    assert!(err.to_string().contains("SHA256:"));

    // Opt in: the first key is recorded, and then required.
    let tofu = sshd.path("tofu_known_hosts");
    host.known_hosts.clear();
    host.trust_on_first_use = true;
    let ex = executor(std::slice::from_ref(&host), &sshd);
    assert!(ex.run("box", "true", LIMIT).await.unwrap().success());
    let recorded = std::fs::read_to_string(&tofu).unwrap();
    assert!(
        recorded.contains(sshd.host_key().split_whitespace().nth(1).unwrap()),
        "{recorded}"
    );

    // A recorded key that no longer matches (the host "was reinstalled") is refused.
    let forged = sshd.path("forged");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&forged)
        .status()
        .unwrap();
    let forged_pub = std::fs::read_to_string(forged.with_extension("pub")).unwrap();
    let mut parts = forged_pub.split_whitespace();
    std::fs::write(
        &tofu,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let err = executor(&[host], &sshd)
        .run("box", "true", LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::HostKeyMismatch { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_per_host_are_bounded() {
    let Some(sshd) = Sshd::start() else { return };
    let mut host = sshd.host("box");
    host.max_concurrent_commands = 2;
    let ex = Arc::new(executor(&[host], &sshd));
    let log = sshd.path("concurrency.log");
    let cmd = format!(
        "echo start >> {0}; sleep 0.5; echo end >> {0}",
        log.display()
    );
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (ex, cmd) = (ex.clone(), cmd.clone());
        tasks.push(tokio::spawn(async move {
            ex.run("box", &cmd, LIMIT).await.unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().success());
    }
    let (mut running, mut peak) = (0i32, 0i32);
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        running += if line == "start" { 1 } else { -1 };
        peak = peak.max(running);
    }
    assert_eq!(
        peak, 2,
        "at most 2 commands at once, and the bound was reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pooled_connection_is_reused_and_reconnected() {
    let Some(mut sshd) = Sshd::start() else {
        return;
    };
    let ex = executor(&[sshd.host("box")], &sshd);
    // Two commands, one connection: the parent PID of the session's shell is the same sshd.
    let a = ex.run("box", "echo $PPID", LIMIT).await.unwrap();
    assert!(a.success());
    sshd.restart();
    let err = ex.run("box", "true", LIMIT).await;
    // The old connection died with the server: the executor reconnects transparently.
    assert!(err.as_ref().is_ok_and(|o| o.success()), "{err:?}");
    sshd.stop();
    let err = ex.run("box", "true", LIMIT).await.unwrap_err();
    assert!(err.is_connection_failure(), "{err}");
    assert!(err.to_string().contains("cannot connect to box"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_and_bad_keys_are_clear_errors() {
    let Some(sshd) = Sshd::start() else { return };
    let ex = executor(&[sshd.host("box")], &sshd);
    let err = ex.run("nowhere", "true", LIMIT).await.unwrap_err();
    assert_eq!(err.to_string(), "unknown host \"nowhere\"");
    let mut host = sshd.host("box");
    host.host_key = "ssh-ed25519 not-base64!".into();
    assert!(SshExecutor::new(&[host], sshd.path("t")).is_err());
    let mut host = sshd.host("box");
    host.key_file = sshd.path("missing").display().to_string();
    let err = executor(&[host], &sshd)
        .run("box", "true", LIMIT)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot load key_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_monitor_marks_a_host_offline_after_three_failures_and_online_again() {
    use crate::support::{Backend, TestApp, TestEnv, eventually};
    let Some(mut sshd) = Sshd::start() else {
        return;
    };
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut config = env.config();
    config.hosts = vec![sshd.host("box")];
    config.monitor.online_probe_seconds = 1;
    config.monitor.offline_probe_seconds = 1;
    let app = TestApp::start(config).await;
    eventually("online", Duration::from_secs(20), || async {
        (host_status(&app).await["status"] == "online").then_some(())
    })
    .await;
    let h = host_status(&app).await;
    assert_eq!(
        (h["name"].as_str(), h["host_key_verification"].as_str()),
        (Some("box"), Some("pinned"))
    );
    assert!(
        app.metrics()
            .await
            .contains("jarvis_host_up{host=\"box\"} 1")
    );

    sshd.stop();
    let h = eventually("offline", Duration::from_secs(60), || async {
        let h = host_status(&app).await;
        (h["status"] == "offline").then_some(h)
    })
    .await;
    assert_eq!(h["consecutive_failures"], 3);
    assert!(
        h["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect to box"),
        "{h}"
    );
    assert!(
        app.metrics()
            .await
            .contains("jarvis_host_up{host=\"box\"} 0")
    );

    sshd.restart();
    eventually("back online", Duration::from_secs(30), || async {
        (host_status(&app).await["status"] == "online").then_some(())
    })
    .await;
    app.stop().await;

    // Every change was logged.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&env.db_url).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT host, status FROM host_status_log ORDER BY changed_at, id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let statuses: Vec<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses, ["online", "offline", "online"]);
}

/// The first host's entry in GET /hosts.
async fn host_status(app: &crate::support::TestApp) -> serde_json::Value {
    app.get("/hosts").await.1["hosts"][0].clone()
}
