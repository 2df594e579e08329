//! Prompt size per incident (numbers, not assertions): the real application with our
//! real prompts, tools and runbooks, a scripted model (Anthropic wire format) playing
//! the drill scenarios, real sshd. Reports what Jarvis sent: the stable prefix (system
//! prompt and tool definitions, cached by Anthropic after the first call), the
//! per-incident conversation, and an estimate of tokens at 4 characters a token.
//!
//!     cargo bench --bench prompt

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::Duration;

use jarvis::app::Work;
use serde_json::{Value, json};

use support::llm::{ScriptedLlm, Step, Wire, call};
use support::sshd::Sshd;
use support::{Backend, TestApp, TestEnv, eventually};

fn run(command: &str, confidence: u32) -> Step {
    call(
        "run_command",
        json!({"host": "box", "command": command, "reason": "bench", "confidence": confidence}),
    )
}

fn main() {
    jarvis::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "| scenario | calls | stable prefix chars (≈ tokens) | conversation chars, all calls (≈ tokens) | largest request chars (≈ tokens) |"
        );
        println!("|---|---|---|---|---|");
        let dir = tempfile::tempdir().unwrap();
        let fixed = dir.path().join("fixed").display().to_string();
        scenario(
            "diagnose → fix → complete (ContainerDown, with its runbook)",
            "ContainerDown",
            vec![
                run("docker ps -a --filter name=frigate", 20),
                run("cat /proc/loadavg", 20),
                run(&format!("touch {fixed}"), 80),
                call(
                    "complete_remediation",
                    json!({"summary": "restarted", "root_cause": "crashed", "confidence": 80, "expect_resolved": true}),
                ),
            ],
        )
        .await;
        scenario(
            "blocked command replaced, then complete (DiskSpaceLow)",
            "DiskSpaceLow",
            vec![
                run("df -h", 20),
                run("rm -rf /var/lib/docker", 70),
                run(&format!("touch {fixed}"), 70),
                call(
                    "complete_remediation",
                    json!({"summary": "pruned", "root_cause": "images", "confidence": 70, "expect_resolved": true}),
                ),
            ],
        )
        .await;
        scenario(
            "investigate and escalate (an alert with no runbook)",
            "SomethingOdd",
            vec![
                call("list_hosts", json!({})),
                run("uptime", 20),
                call(
                    "escalate",
                    json!({"reason": "unknown", "suggested_next_steps": ["look"]}),
                ),
            ],
        )
        .await;
    });
}

fn chars(v: &Value) -> usize {
    v.to_string().chars().count()
}

async fn scenario(name: &str, alert: &str, script: Vec<Step>) {
    let sshd = Sshd::start().expect("sshd is needed: apt-get install openssh-server");
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let llm = ScriptedLlm::start(Wire::Anthropic, script).await;
    let mut c = env.config();
    llm.configure(&mut c);
    c.hosts = vec![sshd.host("box")];
    c.rules.settle_seconds = 0;
    c.runbooks.dir = concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks").into();
    let app = TestApp::start_work(c, Work::FromConfig).await;
    let body = json!({"receiver": "jarvis", "status": "firing", "version": "4", "alerts": [{
        "status": "firing",
        "labels": {"alertname": alert, "instance": "box:9100", "remediation_host": "box", "container": "frigate", "severity": "critical"},
        "annotations": {"summary": format!("{alert} on box"), "description": "Fired by the prompt-size bench."},
        "startsAt": "2026-11-23T03:12:45Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
    }]})
    .to_string();
    app.post_webhook(&body).await;
    eventually("the alert is final", Duration::from_secs(60), || async {
        app.alerts(&format!("&alertname={alert}"))
            .await
            .into_iter()
            .find(|a| {
                ["resolved", "escalated", "failed"].contains(&a["state"].as_str().unwrap_or(""))
            })
    })
    .await;
    // The agent's calls only (not the review after an escalation).
    let reqs: Vec<Value> = llm
        .requests()
        .into_iter()
        .filter(|r| r.get("tools").is_some())
        .collect();
    let prefix = chars(&reqs[0]["system"]) + chars(&reqs[0]["tools"]);
    let conversation: usize = reqs.iter().map(|r| chars(&r["messages"])).sum();
    let largest = reqs.iter().map(chars).max().unwrap_or(0);
    println!(
        "| {name} | {} | {prefix} (≈ {}) | {conversation} (≈ {}) | {largest} (≈ {}) |",
        reqs.len(),
        prefix / 4,
        conversation / 4,
        largest / 4
    );
    app.stop().await;
}
