//! Issue 11 §1: an alert that waits for a person is parked — its claim released, no
//! worker slot held — and resumes exactly where it stopped once the person decides.

use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::allow;
use crate::both_backends;
use crate::support::sshd::Sshd;
use crate::support::{TestApp, TestEnv, eventually};

/// A script that appends its argument to `log` each time it runs.
fn script(sshd: &Sshd, name: &str, log: &std::path::Path) -> String {
    sshd.script(name, &format!("echo \"$1\" >> {}\n", log.display()))
}

/// One firing alert per (name, hint command), each routed to host `box`.
fn alerts(hints: &[(String, String)]) -> String {
    let alerts: Vec<Value> = hints
        .iter()
        .map(|(name, command)| {
            json!({
                "status": "firing",
                "labels": {"alertname": name, "instance": "box:9100", "remediation_host": "box"},
                "annotations": {"remediation_commands": command},
                "startsAt": "2026-11-25T03:12:45.123Z",
                "endsAt": "0001-01-01T00:00:00Z",
            })
        })
        .collect();
    json!({"receiver": "jarvis", "status": "firing", "alerts": alerts, "version": "4"}).to_string()
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn in_state(app: &TestApp, state: &str) -> Vec<Value> {
    app.alerts(&format!("&state={state}")).await
}

both_backends! {
    async fn parked_approvals_hold_no_worker_and_an_approval_runs_its_command_once(b: Backend) {
        let Some(sshd) = Sshd::start() else {
            return;
        };
        let Some(env) = TestEnv::new(b).await else {
            return;
        };
        let (held_log, fast_log) = (sshd.path("held.log"), sshd.path("fast.log"));
        let held = script(&sshd, "held.sh", &held_log);
        let fast = script(&sshd, "fast.sh", &fast_log);
        let mut c = env.config();
        c.hosts = vec![sshd.host("box")];
        c.worker.concurrency = 2;
        c.rules.settle_seconds = 0;
        // The operator allows the fast fix and wants a person to approve the other.
        c.safety.rules.push(allow(&fast, &["*"]));
        c.safety.rules.push(jarvis::config::SafetyRuleConfig {
            verdict: "approval_required".into(),
            ..allow(&held, &["*"])
        });
        let app = TestApp::start_remediating(c).await;

        let parked: Vec<(String, String)> = (0..25)
            .map(|i| (format!("Parked{i}"), format!("{held} {i}")))
            .collect();
        let (code, body) = app.post_webhook(&alerts(&parked)).await;
        assert_eq!(code, 200, "{body}");
        eventually(
            "25 alerts wait for approval",
            Duration::from_secs(60),
            || async {
                let waiting = in_state(&app, "awaiting_approval").await.len();
                (waiting == 25).then_some(())
            },
        )
        .await;
        assert!(lines(&held_log).is_empty(), "nothing ran before approval");
        for a in in_state(&app, "awaiting_approval").await {
            assert!(a["claimed_by"].is_null(), "parked, not held: {a}");
        }

        // Two workers, 25 parked alerts: a new alert is still fixed at once.
        let (code, body) = app
            .post_webhook(&alerts(&[("FastFix".into(), format!("{fast} now"))]))
            .await;
        assert_eq!(code, 200, "{body}");
        let fixed = eventually(
            "the new alert is fixed",
            Duration::from_secs(30),
            || async {
                app.alerts("&alertname=FastFix")
                    .await
                    .into_iter()
                    .find(|a| a["state"] == "resolved")
            },
        )
        .await;
        assert!(
            fixed["reason"].as_str().unwrap().starts_with("fixed"),
            "{fixed}"
        );
        assert_eq!(lines(&fast_log), ["now"]);
        assert_eq!(in_state(&app, "awaiting_approval").await.len(), 25);

        // Approving one of the 25 runs exactly that command, once.
        let (_, pending) = app.get("/approvals?status=pending&limit=100").await;
        let approvals = pending["approvals"].as_array().unwrap();
        assert_eq!(approvals.len(), 25, "{pending}");
        let seven = approvals
            .iter()
            .find(|a| a["command"] == format!("{held} 7"))
            .expect("the approval of Parked7");
        let id = seven["id"].as_str().unwrap();
        let (code, body) = app
            .api_post(&format!("/approvals/{id}/approve"), "{\"by\": \"jordan\"}")
            .await;
        assert_eq!(code, 200, "{body}");
        let done = eventually("Parked7 is fixed", Duration::from_secs(30), || async {
            app.alerts("&alertname=Parked7")
                .await
                .into_iter()
                .find(|a| a["state"] == "resolved")
        })
        .await;
        assert!(
            done["reason"].as_str().unwrap().starts_with("fixed"),
            "{done}"
        );
        let (_, remediations) = app.get("/remediations?alert_name=Parked7").await;
        let r = &remediations["remediations"][0];
        assert_eq!(r["status"], "success", "{r}");
        assert_eq!(r["commands_executed"], json!([format!("{held} 7")]));
        assert_eq!(lines(&held_log), ["7"], "exactly that command, once");
        assert_eq!(in_state(&app, "awaiting_approval").await.len(), 24);

        // A denial ends its alert without running anything.
        let other = approvals
            .iter()
            .find(|a| a["command"] == format!("{held} 3"))
            .unwrap()["id"]
            .as_str()
            .unwrap();
        let (code, body) = app
            .api_post(&format!("/approvals/{other}/deny"), "{\"by\": \"jordan\"}")
            .await;
        assert_eq!(code, 200, "{body}");
        let denied = eventually("Parked3 is escalated", Duration::from_secs(30), || async {
            app.alerts("&alertname=Parked3")
                .await
                .into_iter()
                .find(|a| a["state"] == "escalated")
        })
        .await;
        assert!(
            denied["reason"]
                .as_str()
                .unwrap()
                .contains("denied by jordan"),
            "{denied}"
        );
        assert_eq!(lines(&held_log), ["7"]);

        // An alert that resolves while it waits needs no fix: it ends resolved, its
        // approval superseded, nothing run, nothing escalated.
        let mut resolved: Value =
            serde_json::from_str(&alerts(&[("Parked5".into(), format!("{held} 5"))])).unwrap();
        resolved["status"] = json!("resolved");
        resolved["alerts"][0]["status"] = json!("resolved");
        resolved["alerts"][0]["endsAt"] = json!("2026-11-25T03:20:00.000Z");
        let (code, body) = app.post_webhook(&resolved.to_string()).await;
        assert_eq!(code, 200, "{body}");
        let ended = eventually("Parked5 ends resolved", Duration::from_secs(30), || async {
            app.alerts("&alertname=Parked5")
                .await
                .into_iter()
                .find(|a| a["status"] == "firing" && a["state"] == "resolved")
        })
        .await;
        assert!(
            ended["reason"]
                .as_str()
                .unwrap()
                .contains("before approval"),
            "{ended}"
        );
        let five = approvals
            .iter()
            .find(|a| a["command"] == format!("{held} 5"))
            .unwrap()["id"]
            .as_str()
            .unwrap();
        let (_, superseded) = app.get("/approvals?status=superseded").await;
        assert_eq!(superseded["approvals"][0]["id"], five, "{superseded}");
        let (_, r) = app.get("/remediations?alert_name=Parked5").await;
        assert_eq!(r["remediations"][0]["status"], "superseded", "{r}");
        assert_eq!(r["remediations"][0]["counts_as_attempt"], false, "{r}");
        assert_eq!(lines(&held_log), ["7"]);
        assert_eq!(in_state(&app, "awaiting_approval").await.len(), 22);
        app.stop().await;
    }
}
