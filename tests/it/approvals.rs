//! Commands through the API: the gate, approvals (decided, expired, re-judged, kept
//! across a restart), the audit log, rate limits and circuit breakers, on real sshd.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::sshd::Sshd;
use crate::support::{Backend, PASSWORD, TestApp, TestEnv, USER, json_of};

async fn post_json(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .basic_auth(USER, Some(PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

/// A script only the operator knows: from the API it needs approval.
fn fix_script(sshd: &Sshd) -> (String, std::path::PathBuf) {
    let marker = sshd.path("fixed");
    let script = sshd.script(
        "fix.sh",
        &format!("echo fixing\ntouch {}\n", marker.display()),
    );
    (script, marker)
}

async fn setup(
    tweak: impl FnOnce(&mut jarvis::config::Config),
) -> Option<(Sshd, TestEnv, TestApp)> {
    let sshd = Sshd::start()?;
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut config = env.config();
    config.hosts = vec![sshd.host("box")];
    tweak(&mut config);
    let app = TestApp::start(config).await;
    Some((sshd, env, app))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_round_trip_through_the_api() {
    let Some((sshd, _env, app)) = setup(|_| {}).await else {
        return;
    };
    let (script, marker) = fix_script(&sshd);

    let (status, v) = post_json(&app, "/commands", json!({"host": "box", "command": script})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "awaiting_approval", "{v}");
    assert_eq!(v["judgement"]["verdict"], "approval_required");
    let id = v["approval_id"].as_str().unwrap().to_owned();
    assert!(!marker.exists(), "ran before approval");

    let (_, list) = app.get("/approvals?status=pending").await;
    assert_eq!(list["approvals"][0]["id"], id);
    assert_eq!(list["approvals"][0]["command"], script);
    assert_eq!(list["approvals"][0]["source"], "manual");
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains("jarvis_commands_total{verdict=\"approval_required\",source=\"manual\"} 1"),
        "{metrics}"
    );
    // The person deciding sees why it waits: the gate's reading and the rules it tried.
    let why = list["approvals"][0]["explanation"].as_str().unwrap();
    assert!(why.contains(&format!("program \"{script}\"")), "{why}");
    assert!(
        why.contains("=> approval_required [unknown-manual]"),
        "{why}"
    );
    assert!(
        why.ends_with("no rule knows it; a person must approve it"),
        "{why}"
    );

    let (status, v) = post_json(
        &app,
        &format!("/approvals/{id}/approve"),
        json!({"by": "jordan"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["outcome"], "completed", "{v}");
    assert_eq!(v["result"]["exit_code"], 0);
    assert_eq!(v["result"]["stdout"], "fixing\n");
    assert_eq!(v["approval"]["status"], "approved");
    assert_eq!(v["approval"]["decided_by"], "jordan");
    assert_eq!(v["approval"]["exit_code"], 0);
    assert!(marker.exists(), "the approved command did not run");

    // Deciding twice is refused; nothing runs again.
    std::fs::remove_file(&marker).unwrap();
    let (status, v) = post_json(&app, &format!("/approvals/{id}/approve"), json!({})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{v}"
    );
    assert!(!marker.exists());
    let (status, _) = post_json(&app, "/approvals/nope/approve", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The audit log tells the whole story.
    let (_, audit) = app.get("/audit?host=box").await;
    let kinds: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["judged", "approval_requested", "approved", "executed"]
    );
    let executed = &audit["entries"][0];
    assert_eq!(
        (executed["actor"].as_str(), executed["exit_code"].as_i64()),
        (Some("jordan"), Some(0))
    );
    assert_eq!(executed["output_digest"].as_str().unwrap().len(), 64);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_expired_and_blocked_commands_never_run() {
    let Some((sshd, _env, app)) = setup(|c| c.safety.approval_ttl_seconds = 1).await else {
        return;
    };
    let (script, marker) = fix_script(&sshd);

    let (_, v) = post_json(&app, "/commands", json!({"host": "box", "command": script})).await;
    let id = v["approval_id"].as_str().unwrap().to_owned();
    let (status, v) = app
        .post(
            &format!("/approvals/{id}/deny?by=sam"),
            "",
            None,
            Some((USER, PASSWORD)),
        )
        .await
        .json::<Value>()
        .await
        .map(|v| (StatusCode::OK, v))
        .unwrap();
    assert_eq!(
        (
            status,
            v["approval"]["status"].as_str(),
            v["approval"]["decided_by"].as_str()
        ),
        (StatusCode::OK, Some("denied"), Some("sam")),
        "{v}"
    );
    let (status, _) = post_json(&app, &format!("/approvals/{id}/approve"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (_, v) = post_json(&app, "/commands", json!({"host": "box", "command": script})).await;
    let id = v["approval_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, v) = post_json(&app, &format!("/approvals/{id}/approve"), json!({})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::GONE, Some("expired")),
        "{v}"
    );
    let (_, list) = app.get("/approvals?status=expired").await;
    assert_eq!(list["approvals"][0]["id"], id);

    let (status, v) = post_json(
        &app,
        "/commands",
        json!({"host": "box", "command": format!("rm -rf / ; {script}")}),
    )
    .await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (StatusCode::OK, Some("blocked")),
        "{v}"
    );
    assert_eq!(v["judgement"]["rule"], "rm-recursive");
    assert!(!marker.exists());

    // Bad input changes nothing and says what is wrong.
    let (status, v) = post_json(
        &app,
        "/commands",
        json!({"host": "nowhere", "command": "true"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown host \"nowhere\"; configured hosts: box"),
        "{v}"
    );
    let (status, _) = post_json(&app, "/commands", json!({"command": "true"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.get("/approvals?status=whatever").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_survive_a_restart_and_are_judged_again_on_approval() {
    let Some((sshd, env, app)) = setup(|_| {}).await else {
        return;
    };
    let (script, marker) = fix_script(&sshd);
    let (_, v) = post_json(
        &app,
        "/commands",
        json!({"host": "box", "command": script.clone()}),
    )
    .await;
    let first = v["approval_id"].as_str().unwrap().to_owned();
    let (_, v) = post_json(
        &app,
        "/commands",
        json!({"host": "box", "command": format!("{script} --again")}),
    )
    .await;
    let second = v["approval_id"].as_str().unwrap().to_owned();
    app.stop().await;

    // After the restart the operator has blocked the second form by rule.
    let mut config = env.config();
    config.hosts = vec![sshd.host("box")];
    config.safety.rules.push(jarvis::config::SafetyRuleConfig {
        verdict: "blocked".into(),
        command: "fix.sh".into(),
        args: vec!["--again".into()],
        hosts: vec![],
        options: None,
    });
    let app = TestApp::start(config).await;
    let (status, v) = post_json(&app, &format!("/approvals/{first}/approve"), json!({})).await;
    assert_eq!(
        (status, v["result"]["outcome"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{v}"
    );
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    let (status, v) = post_json(&app, &format!("/approvals/{second}/approve"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["outcome"], "blocked", "{v}");
    assert_eq!(v["approval"]["status"], "blocked");
    assert!(
        !marker.exists(),
        "a command blocked by current policy ran on approval"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_circuit_breakers() {
    let Some((_sshd, _env, app)) = setup(|c| c.safety.rate_limit_per_minute = 3).await else {
        return;
    };
    for i in 0..3 {
        let (_, v) = post_json(
            &app,
            "/commands",
            json!({"host": "box", "command": "uname"}),
        )
        .await;
        assert_eq!(v["outcome"], "completed", "run {i}: {v}");
    }
    let (_, v) = post_json(
        &app,
        "/commands",
        json!({"host": "box", "command": "uptime"}),
    )
    .await;
    assert_eq!(v["outcome"], "rate_limited", "{v}");
    assert_eq!(v["action"], "read-only");
    assert!(v["retry_after_seconds"].as_u64().unwrap() >= 1);
    app.stop().await;

    let Some((_sshd, _env, app)) = setup(|_| {}).await else {
        return;
    };
    for i in 0..5 {
        let (_, v) = post_json(
            &app,
            "/commands",
            json!({"host": "box", "command": "test -f /nonexistent"}),
        )
        .await;
        assert_eq!(
            (v["outcome"].as_str(), v["exit_code"].as_i64()),
            (Some("completed"), Some(1)),
            "run {i}: {v}"
        );
    }
    let (_, v) = post_json(
        &app,
        "/commands",
        json!({"host": "box", "command": "test -f /nonexistent"}),
    )
    .await;
    assert_eq!(v["outcome"], "circuit_open", "{v}");
    let (_, hosts) = app.get("/hosts").await;
    let open = &hosts["hosts"][0]["open_circuit_breakers"][0];
    assert_eq!(
        (open["action"].as_str(), open["failures"].as_u64()),
        (Some("read-only"), Some(5)),
        "{hosts}"
    );
    // Other actions on the host are unaffected.
    let (_, v) = post_json(
        &app,
        "/commands",
        json!({"host": "box", "command": "docker ps || true"}),
    )
    .await;
    assert_ne!(v["outcome"], "circuit_open", "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_host_runs_commands_without_ssh() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut config = env.config();
    config.hosts = vec![jarvis::config::HostConfig {
        name: "here".into(),
        address: "local".into(),
        ..jarvis::config::HostConfig::default()
    }];
    let app = TestApp::start(config).await;
    let (_, v) = post_json(
        &app,
        "/commands",
        json!({"host": "here", "command": "echo hello from $(hostname) | tr a-z A-Z"}),
    )
    .await;
    assert_eq!(
        (v["outcome"].as_str(), v["exit_code"].as_i64()),
        (Some("completed"), Some(0)),
        "{v}"
    );
    assert!(
        v["stdout"].as_str().unwrap().starts_with("HELLO FROM "),
        "{v}"
    );
    let (_, hosts) = app.get("/hosts").await;
    assert_eq!(hosts["hosts"][0]["status"], "online");
    assert_eq!(hosts["hosts"][0]["host_key_verification"], "local");
    app.stop().await;
}
