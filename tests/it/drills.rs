//! Drills: a real service breaks, real Prometheus fires, real Alertmanager delivers,
//! Jarvis fixes it over real SSH and verifies it in Prometheus (issue 4 §10).

use std::time::Duration;

use jarvis::config::CascadeRule;
use serde_json::Value;

use crate::support::drill::{Drill, HOST, Options, down_rule, hint, restart_rule};
use crate::support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_a_a_killed_service_is_restarted_by_its_hint_and_verified() {
    let Some(d) = Drill::start(restart_rule, |_, _| {}).await else {
        return;
    };
    d.svc.kill();
    let fixed = d.successful_fix(Duration::from_secs(90)).await;
    assert_eq!(fixed["verified"], true, "{fixed}");
    assert_eq!(fixed["source"], "hint");
    assert_eq!(fixed["host"], HOST);
    assert!(d.svc.is_up(), "the service runs again");
    let event = d
        .final_event("DrillServiceDown", Duration::from_secs(10))
        .await;
    assert_eq!(event["state"], "resolved", "{event}");
    eventually("Discord got the fix", Duration::from_secs(10), || async {
        d.received
            .texts()
            .into_iter()
            .find(|t| t.contains("Fixed and verified: DrillServiceDown"))
    })
    .await;
    // The verified hint became a learned pattern.
    let (_, patterns) = d.app.get("/patterns").await;
    let learned: Vec<&Value> = patterns["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["origin"] == "learned" && p["alert_name"] == "DrillServiceDown")
        .collect();
    assert_eq!(learned.len(), 1, "{patterns}");
    assert_eq!(learned[0]["verified_successes"], 1);
    let metrics = d.app.metrics().await;
    assert!(
        metrics.contains(
            "jarvis_remediation_total{alert_name=\"DrillServiceDown\",status=\"success\"} 1"
        ),
        "{metrics}"
    );
    d.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_b_a_library_pattern_fixes_it_without_a_hint() {
    let Some(d) = Drill::start(|_| down_rule("DrillServiceDown", ""), |_, _| {}).await else {
        return;
    };
    // The operator adds a pattern to the library with the real CLI.
    let file = d.svc.dir.path().join("drill-patterns.toml");
    std::fs::write(
        &file,
        format!(
            "[[patterns]]\nalert_name = \"DrillServiceDown\"\nmatch = {{ job = \"svc\" }}\nhost = \"{{{{ remediation_host }}}}\"\n\
             commands = [\"{} start\"]\nconfidence = 0.9\ndescription = \"Start the drill service\"\n",
            d.svc.script().display()
        ),
    )
    .unwrap();
    let db = d._env.db_url.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jarvis"))
        .args(["patterns", "import"])
        .arg(&file)
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.svc.kill();
    let fixed = d.successful_fix(Duration::from_secs(90)).await;
    assert_eq!(
        (fixed["source"].as_str(), fixed["verified"].as_bool()),
        (Some("pattern"), Some(true)),
        "{fixed}"
    );
    let id = fixed["pattern_id"].as_str().unwrap().to_owned();
    let (_, p) = d.app.get(&format!("/patterns/{id}")).await;
    assert_eq!(p["origin"], "imported");
    assert_eq!(p["success_count"], 1, "{p}");
    assert_eq!(p["history"].as_array().unwrap().len(), 1);
    assert!(d.svc.is_up());
    assert!(
        d.app
            .metrics()
            .await
            .contains("jarvis_pattern_matches_total{result=\"hit\"} 1")
    );
    d.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_c_nothing_runs_during_maintenance() {
    let Some(d) = Drill::start(
        restart_rule,
        // Without [alertmanager] url there is no silence, so the alert reaches Jarvis.
        |c, _| c.alertmanager.url.clear(),
    )
    .await
    else {
        return;
    };
    let (code, w) = d
        .app
        .api_post(
            &format!(
                "/maintenance/start?host={HOST}&reason=drill&created_by=test&duration_minutes=10"
            ),
            "",
        )
        .await;
    assert_eq!(code, 200, "{w}");
    let (_, status) = d.app.get("/maintenance/status").await;
    assert_eq!(status["count"], 1);
    assert_eq!(d.app.health().await["maintenance_mode"], true);
    d.svc.kill();
    let event = d
        .final_event("DrillServiceDown", Duration::from_secs(60))
        .await;
    assert_eq!(
        (event["state"].as_str(), event["reason"].as_str()),
        (Some("suppressed"), Some("maintenance")),
        "{event}"
    );
    assert!(d.remediations().await.is_empty(), "nothing ran");
    assert!(!d.svc.is_up());
    let (code, ended) = d
        .app
        .api_post(&format!("/maintenance/end?host={HOST}"), "")
        .await;
    assert_eq!((code.as_u16(), ended["count"].as_i64()), (200, Some(1)));
    d.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_windows_create_and_expire_alertmanager_silences() {
    let Some(d) = Drill::start(|_| down_rule("DrillServiceDown", ""), |_, _| {}).await else {
        return;
    };
    let (code, w) = d
        .app
        .api_post("/maintenance/start?reason=upgrade&duration_minutes=5", "")
        .await;
    assert_eq!(code, 200, "{w}");
    let id = w["window"]["silence_id"]
        .as_str()
        .expect("a silence was created")
        .to_owned();
    let silence = |id: String, url: String| async move {
        reqwest::get(format!("{url}/api/v2/silence/{id}"))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let s = silence(id.clone(), d.am.url.clone()).await;
    assert_eq!(s["status"]["state"], "active", "{s}");
    assert_eq!(s["matchers"][0]["name"], "alertname");
    let (code, _) = d.app.api_post("/maintenance/end", "").await;
    assert_eq!(code, 200);
    let s = silence(id, d.am.url.clone()).await;
    assert_eq!(s["status"]["state"], "expired", "{s}");
    // Bad requests change nothing.
    let (code, e) = d
        .app
        .api_post("/maintenance/start?host=nosuchhost", "")
        .await;
    assert_eq!(code, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("drillbox"), "{e}");
    let (code, _) = d
        .app
        .api_post("/maintenance/start?duration_minutes=0", "")
        .await;
    assert_eq!(code, 400);
    let (_, status) = d.app.get("/maintenance/status").await;
    assert_eq!(status["count"], 0);
    d.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_d_a_cascade_remediates_only_the_root_and_summarises_once() {
    let Some(d) = Drill::start(
        |svc| {
            // The root's fix takes a while, so the dependent is seen while the root fires.
            down_rule(
                "DrillRoot",
                &hint(&format!("sleep 6; {} start", svc.script().display())),
            ) + &down_rule(
                "DrillDependent",
                &hint(&format!("{} start", svc.script().display())),
            )
        },
        |c, _| {
            c.rules.cascade = vec![CascadeRule {
                root: "DrillRoot".into(),
                suppresses: vec!["DrillDependent".into()],
            }];
            c.rules.settle_seconds = 2;
        },
    )
    .await
    else {
        return;
    };
    d.svc.kill();
    let dependent = d
        .final_event("DrillDependent", Duration::from_secs(90))
        .await;
    assert_eq!(
        (dependent["state"].as_str(), dependent["reason"].as_str()),
        (Some("suppressed"), Some("cascade:DrillRoot")),
        "{dependent}"
    );
    let fixed = d.successful_fix(Duration::from_secs(90)).await;
    assert_eq!(fixed["alert_name"], "DrillRoot");
    assert!(
        d.remediations()
            .await
            .iter()
            .all(|r| r["alert_name"] == "DrillRoot")
    );
    let (_, incidents) = d.app.get("/incidents").await;
    let inc = &incidents["incidents"][0];
    assert_eq!(inc["root_cause_alert"], "DrillRoot", "{incidents}");
    assert_eq!(inc["related_alerts"][0]["alertname"], "DrillDependent");
    assert_eq!(inc["correlation_type"], "cascade");
    eventually(
        "one suppression summary",
        Duration::from_secs(15),
        || async {
            let n = d
                .received
                .texts()
                .iter()
                .filter(|t| t.contains("suppressed: cascade:DrillRoot"))
                .count();
            (n >= 1).then_some(n)
        },
    )
    .await;
    // Every alert is final and the outbox delivered all it holds: nothing more comes.
    d.app.outbox_settled().await;
    let summaries = d
        .received
        .texts()
        .iter()
        .filter(|t| t.contains("suppressed: cascade:DrillRoot"))
        .count();
    assert_eq!(summaries, 1, "{:?}", d.received.texts());
    assert!(
        d.app
            .metrics()
            .await
            .contains("jarvis_alerts_suppressed_total{reason=\"cascade:DrillRoot\"} 1")
    );
    d.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_e_a_fix_that_does_not_work_escalates_once() {
    let Some(d) = Drill::start(
        |svc| {
            down_rule(
                "DrillServiceDown",
                &hint(&format!("{} noop", svc.script().display())),
            )
        },
        |c, _| {
            c.remediation.max_attempts_per_alert = 2;
            c.verification.max_wait_seconds = 4;
        },
    )
    .await
    else {
        return;
    };
    d.svc.kill();
    let event = d
        .final_event("DrillServiceDown", Duration::from_secs(90))
        .await;
    assert_eq!(event["state"], "escalated", "{event}");
    assert!(
        event["reason"]
            .as_str()
            .unwrap()
            .starts_with("attempts exhausted: 2 of 2"),
        "{event}"
    );
    let attempts = d.remediations().await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.iter().all(|a| {
        a["success"] == false
            && a["verification_message"]
                .as_str()
                .unwrap()
                .starts_with("still firing")
    }));
    eventually(
        "the escalation arrives",
        Duration::from_secs(10),
        || async {
            d.received
                .texts()
                .into_iter()
                .find(|t| t.contains("Escalated: DrillServiceDown"))
        },
    )
    .await;
    // The alert is final and the outbox delivered all it holds: nothing more comes.
    d.app.outbox_settled().await;
    let escalations = d
        .received
        .texts()
        .iter()
        .filter(|t| t.contains("Escalated: DrillServiceDown"))
        .count();
    assert_eq!(escalations, 1, "{:?}", d.received.texts());
    d.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_f_an_approval_required_fix_waits_for_a_person() {
    let Some(d) = Drill::start(
        |svc| {
            let s = svc.script().display().to_string();
            down_rule(
                "DrillServiceDown",
                &hint(&format!("chmod 755 {s}; {s} start")),
            )
        },
        |_, _| {},
    )
    .await
    else {
        return;
    };
    d.svc.kill();
    let waiting = eventually(
        "the alert awaits approval",
        Duration::from_secs(60),
        || async {
            d.app
                .alerts("&alertname=DrillServiceDown")
                .await
                .into_iter()
                .find(|a| a["state"] == "awaiting_approval")
        },
    )
    .await;
    assert!(
        waiting["reason"].as_str().unwrap().contains("chmod 755"),
        "{waiting}"
    );
    assert!(!d.svc.is_up(), "nothing ran past the approval");
    let (_, pending) = d.app.get("/approvals?status=pending").await;
    let id = pending["approvals"][0]["id"].as_str().unwrap().to_owned();
    eventually(
        "Discord asks for approval",
        Duration::from_secs(10),
        || async {
            d.received
                .texts()
                .into_iter()
                .find(|t| t.contains("Approval needed") && t.contains(&id))
        },
    )
    .await;
    let (code, body) = d
        .app
        .api_post(&format!("/approvals/{id}/approve"), "{\"by\": \"jordan\"}")
        .await;
    assert_eq!(code, 200, "{body}");
    let fixed = eventually(
        "the approved fix verifies",
        Duration::from_secs(60),
        || async {
            d.remediations()
                .await
                .into_iter()
                .find(|r| r["success"] == true)
        },
    )
    .await;
    assert_eq!(fixed["verified"], true);
    assert!(d.svc.is_up());
    let event = d
        .final_event("DrillServiceDown", Duration::from_secs(10))
        .await;
    assert_eq!(event["state"], "resolved");
    d.app.stop().await;
}

/// Issue 4 §1: a fix cut off by a crash is not blindly re-run. These start a slow
/// fix, stop Jarvis while it runs, and look at what the restarted Jarvis does.
mod crash_resume {
    use super::*;

    /// A slow fix is running (its remediation_log row is `running`).
    async fn start_slow_fix() -> Option<Drill> {
        let d = Drill::start(
            |svc| {
                down_rule(
                    "DrillServiceDown",
                    &hint(&format!("{} slow", svc.script().display())),
                )
            },
            |c, _| {
                c.server.shutdown_grace_seconds = 1;
                c.worker.claim_lease_seconds = 2;
            },
        )
        .await?;
        d.svc.kill();
        d.event_in("DrillServiceDown", "remediating", Duration::from_secs(60))
            .await;
        eventually(
            "the slow fix has begun",
            Duration::from_secs(20),
            || async { (d.svc.slow_runs() == 1).then_some(()) },
        )
        .await;
        Some(d)
    }

    fn interrupted(remediations: &[Value]) -> usize {
        remediations
            .iter()
            .filter(|r| r["status"] == "interrupted")
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fix_that_took_effect_during_the_crash_is_verified_not_rerun() {
        let Some(mut d) = start_slow_fix().await else {
            return;
        };
        d.app.stop_in_place().await;
        // The fix finished on the host while Jarvis was down.
        std::process::Command::new(d.svc.script())
            .arg("start")
            .status()
            .unwrap();
        d.svc.wait_up();
        eventually(
            "Prometheus resolves the alert",
            Duration::from_secs(30),
            || async { (!d.firing_in_prometheus("DrillServiceDown").await).then_some(()) },
        )
        .await;
        let d = d.restart(|_| {}).await;
        let event = d
            .final_event("DrillServiceDown", Duration::from_secs(30))
            .await;
        assert_eq!(event["state"], "resolved", "{event}");
        assert!(
            event["reason"].as_str().unwrap().contains("not re-run"),
            "{event}"
        );
        assert_eq!(d.svc.slow_runs(), 1, "the interrupted fix ran once");
        assert_eq!(interrupted(&d.remediations().await), 1);
        d.app.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fix_cut_off_while_still_firing_is_tried_again_after_checking() {
        let Some(mut d) = start_slow_fix().await else {
            return;
        };
        d.app.stop_in_place().await;
        assert!(d.firing_in_prometheus("DrillServiceDown").await);
        // The restarted Jarvis looks first, sees the alert firing and tries again.
        let d = d.restart(|_| {}).await;
        eventually(
            "a second attempt begins",
            Duration::from_secs(30),
            || async { (d.svc.slow_runs() == 2).then_some(()) },
        )
        .await;
        let remediations = d.remediations().await;
        assert_eq!(interrupted(&remediations), 1, "{remediations:?}");
        d.app.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_prometheus_an_interrupted_fix_is_escalated_not_rerun() {
        let Some(d) = start_slow_fix().await else {
            return;
        };
        let d = d.restart(|c| c.prometheus.url = String::new()).await;
        let event = d
            .final_event("DrillServiceDown", Duration::from_secs(30))
            .await;
        assert_eq!(event["state"], "escalated", "{event}");
        assert!(
            event["reason"]
                .as_str()
                .unwrap()
                .contains("interrupted by a restart"),
            "{event}"
        );
        assert_eq!(d.svc.slow_runs(), 1);
        d.app.stop().await;
    }

    /// Issue 11 §1: an alert waiting for a person is parked, not held by a worker, so
    /// a restart changes nothing: the same approval still holds, and approving it
    /// after the restart runs the fix once and verifies it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approval_asked_before_a_restart_still_holds_after_it() {
        let Some(d) = Drill::start(
            |svc| {
                let s = svc.script().display().to_string();
                down_rule(
                    "DrillServiceDown",
                    &hint(&format!("chmod 755 {s}; {s} start")),
                )
            },
            |c, _| {
                c.server.shutdown_grace_seconds = 1;
                c.worker.claim_lease_seconds = 2;
            },
        )
        .await
        else {
            return;
        };
        d.svc.kill();
        d.event_in(
            "DrillServiceDown",
            "awaiting_approval",
            Duration::from_secs(60),
        )
        .await;
        let (_, before) = d.app.get("/approvals?status=pending").await;
        let id = before["approvals"][0]["id"].as_str().unwrap().to_owned();
        let d = d.restart(|_| {}).await;
        // Parked: nobody holds it, and the restarted Jarvis leaves it waiting.
        let (_, events) = d.app.get("/alerts?alertname=DrillServiceDown").await;
        let parked = events["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["status"] == "firing")
            .unwrap()
            .clone();
        assert_eq!(parked["state"], "awaiting_approval", "{parked}");
        assert!(parked["claimed_by"].is_null(), "{parked}");
        assert!(parked["resume_at"].is_string(), "{parked}");
        let (code, body) = d
            .app
            .api_post(&format!("/approvals/{id}/approve"), "{\"by\": \"jordan\"}")
            .await;
        assert_eq!(code, 200, "{body}");
        let fixed = d.successful_fix(Duration::from_secs(60)).await;
        assert_eq!(fixed["verified"], true);
        let (_, all) = d.app.get("/approvals").await;
        assert_eq!(all["count"], 1, "one approval, asked once: {all}");
        let event = d
            .final_event("DrillServiceDown", Duration::from_secs(30))
            .await;
        assert_eq!(event["state"], "resolved", "{event}");
        d.app.stop().await;
    }
}

/// Drill (a) with the LLM path: the alert has no hint and no pattern; the scripted
/// model looks, runs the fix through `run_command`, and completes. The pipeline
/// verifies it in Prometheus and does not run the fix a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_a_with_the_llm_agent_choosing_run_command() {
    use crate::support::llm::{ScriptedLlm, Wire, call};
    let llm = ScriptedLlm::start(Wire::Anthropic, Vec::new()).await;
    let Some(d) = Drill::start_with(
        |_| down_rule("DrillServiceDown", ""),
        |c, svc| {
            llm.configure(c);
            // The operator allows the service's own start script, by its path.
            c.safety.rules = vec![crate::agent::allow(
                &svc.script().display().to_string(),
                &["start"],
            )];
        },
        Options {
            llm: true,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let start = format!("{} start", d.svc.script().display());
    let run = |command: &str, confidence: u32| {
        call(
            "run_command",
            serde_json::json!({"host": HOST, "command": command, "reason": "drill", "confidence": confidence}),
        )
    };
    llm.push(vec![
        run("cat /proc/loadavg", 20),
        run(&start, 85),
        // A slow model: Prometheus sees the service back before the agent finishes,
        // which must still count as resolved (it was seen firing before).
        crate::support::llm::Step::Slow(
            Duration::from_secs(6),
            Box::new(call(
                "complete_remediation",
                serde_json::json!({"summary": "started the service", "root_cause": "it was killed", "confidence": 85, "expect_resolved": true}),
            )),
        ),
    ]);
    d.svc.kill();
    let fixed = d.successful_fix(Duration::from_secs(90)).await;
    assert_eq!(fixed["source"], "llm", "{fixed}");
    assert_eq!(fixed["verified"], true, "{fixed}");
    assert!(d.svc.is_up());
    let (_, audit) = d.app.get("/audit?limit=500").await;
    let runs = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "executed" && e["command"] == start.as_str())
        .count();
    assert_eq!(runs, 1, "the model's fix ran once");
    let event = d
        .final_event("DrillServiceDown", Duration::from_secs(10))
        .await;
    assert_eq!(event["state"], "resolved");
    assert_eq!(llm.requests().len(), 3, "no escalation, so no review call");
    // Learned: the change that fixed it, not the look around before it.
    let (_, patterns) = d.app.get("/patterns").await;
    let learned = patterns["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["origin"] == "learned")
        .cloned()
        .expect("the verified LLM fix is learned");
    assert_eq!(learned["commands"], serde_json::json!([start]), "{learned}");
    d.app.stop().await;
}

/// Drill (a) on PostgreSQL: the remediation store (log, patterns, learning, incidents)
/// on the production backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_a_on_postgresql() {
    let Some(d) = Drill::start_with(
        restart_rule,
        |_, _| {},
        Options {
            backend: crate::support::Backend::Postgres,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    d.svc.kill();
    let fixed = d.successful_fix(Duration::from_secs(90)).await;
    assert_eq!(fixed["verified"], true, "{fixed}");
    let event = d
        .final_event("DrillServiceDown", Duration::from_secs(10))
        .await;
    assert_eq!(event["state"], "resolved", "{event}");
    let (_, patterns) = d.app.get("/patterns").await;
    assert!(
        patterns["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["origin"] == "learned" && p["verified_successes"] == 1),
        "{patterns}"
    );
    let (_, analytics) = d.app.get("/analytics").await;
    assert_eq!(analytics["verified"], 1, "{analytics}");
    d.app.stop().await;
}
