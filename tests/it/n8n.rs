//! The n8n client against an in-process n8n that follows the documented webhook and
//! public API behaviour.

use std::time::Duration;

use jarvis::config::{N8nConfig, N8nWorkflow, Secret};
use jarvis::integrations::n8n::{N8n, N8nError};
use serde_json::json;

use crate::support::n8n::{self, API_KEY, HOOK_SECRET};

fn workflow(name: &str, path: &str, id: &str) -> N8nWorkflow {
    N8nWorkflow {
        name: name.into(),
        webhook_path: path.into(),
        workflow_id: id.into(),
        ..Default::default()
    }
}

fn client(url: &str, api_key: &str) -> N8n {
    let mut restart = workflow("restart-mqtt", "restart-mqtt", "wfRestart");
    restart.auth_header = "X-Webhook-Token".into();
    restart.auth_value = Secret::new(HOOK_SECRET);
    N8n::from_config(&N8nConfig {
        url: url.into(),
        api_key: Secret::new(api_key),
        workflows: vec![
            restart,
            workflow("backup", "backup", "wfBackup"),
            workflow("broken", "broken", "wfBroken"),
            workflow("forever", "forever", "wfForever"),
            workflow("gone", "not-active", "wfGone"),
            workflow("no-id", "backup", ""),
        ],
        ..Default::default()
    })
    .unwrap()
    .expect("configured")
}

const FAST: Duration = Duration::from_millis(20);

#[tokio::test]
async fn a_workflow_runs_and_its_outcome_is_known() {
    let (url, server) = n8n::start().await;
    let n = client(&url, API_KEY);
    // The workflow answers with its execution id.
    let t = n
        .trigger("restart-mqtt", &json!({"app": "core_mosquitto"}))
        .await
        .unwrap();
    let id = t
        .execution_id
        .clone()
        .expect("the webhook answered with its execution id");
    let done = n.follow(&id, FAST, Duration::from_secs(5)).await.unwrap();
    assert!(done.succeeded(), "{done:?}");
    // It does not: the execution is found by the correlation id among later runs.
    let e = n
        .run("backup", &json!({}), FAST, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(e.succeeded(), "{e:?}");
    let t = n.trigger("backup", &json!({})).await.unwrap();
    assert_eq!(t.execution_id, None);
    let found = n
        .find_execution("backup", &t.correlation_id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(found, e.id, "each run is its own execution");
    // A failing workflow reports its status.
    let failed = n
        .run("broken", &json!({}), FAST, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.succeeded()),
        ("error", false)
    );
    assert!(server.started() >= 4);
}

#[tokio::test]
async fn mistakes_and_slow_runs_say_what_to_do() {
    let (url, _) = n8n::start().await;
    let n = client(&url, API_KEY);
    let e = n.trigger("gone", &json!({})).await.unwrap_err();
    assert_eq!(e, N8nError::NotDeployed("gone".into()));
    assert!(e.to_string().contains("active"), "{e}");
    assert_eq!(
        n.trigger("nope", &json!({})).await.unwrap_err(),
        N8nError::UnknownWorkflow("nope".into())
    );
    let slow = n
        .run("forever", &json!({}), FAST, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(slow, N8nError::TimedOut(_, _, ref s) if s == "waiting"),
        "{slow}"
    );
    assert!(matches!(
        n.run("no-id", &json!({}), FAST, Duration::from_secs(1))
            .await
            .unwrap_err(),
        N8nError::ExecutionUnknown(_)
    ));
    // The webhook's own credentials, and the API key.
    let mut wrong = client(&url, "bad-key");
    assert!(matches!(
        wrong
            .run("backup", &json!({}), FAST, Duration::from_secs(1))
            .await
            .unwrap_err(),
        N8nError::ApiAuth(401)
    ));
    wrong = N8n::from_config(&N8nConfig {
        url: url.clone(),
        api_key: Secret::new(API_KEY),
        workflows: vec![workflow("restart-mqtt", "restart-mqtt", "wfRestart")],
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        wrong.trigger("restart-mqtt", &json!({})).await.unwrap_err(),
        N8nError::WebhookAuth(403)
    );
}

/// Issue 12: an alert whose fix is an n8n workflow runs it through the pipeline, and
/// the remediation record carries the execution and its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_fix_reports_its_execution_outcome() {
    use crate::support::{Backend, TestApp, TestEnv, eventually};

    let (url, _) = n8n::start().await;
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut c = env.config();
    c.rules.settle_seconds = 0;
    c.remediation.max_attempts_per_alert = 1;
    c.n8n.url = url;
    c.n8n.api_key = Secret::new(API_KEY);
    c.n8n.workflows = vec![
        workflow("backup", "backup", "wfBackup"),
        workflow("broken", "broken", "wfBroken"),
    ];
    let app = TestApp::start_remediating(c).await;
    let alert = |name: &str, workflow: &str| {
        json!({"receiver": "jarvis", "status": "firing", "version": "4", "alerts": [{
            "status": "firing",
            "labels": {"alertname": name, "instance": "nas:9100"},
            "annotations": {"remediation_action": format!("n8n.trigger workflow={workflow}")},
            "startsAt": "2026-11-25T05:00:00.000Z",
        }]})
        .to_string()
    };
    assert_eq!(
        app.post_webhook(&alert("BackupStale", "backup")).await.0,
        200
    );
    assert_eq!(
        app.post_webhook(&alert("BackupBroken", "broken")).await.0,
        200
    );
    let record = |name: &'static str| {
        let app = &app;
        async move {
            eventually(name, Duration::from_secs(30), || async {
                let (_, r) = app.get(&format!("/remediations?alert_name={name}")).await;
                r["remediations"]
                    .as_array()?
                    .iter()
                    .find(|r| r["status"] == "success" || r["status"] == "failure")
                    .cloned()
            })
            .await
        }
    };
    let ok = record("BackupStale").await;
    assert_eq!(ok["status"], "success", "{ok}");
    let out = ok["output"].as_str().unwrap();
    assert!(
        out.contains("n8n execution ") && out.contains(": success"),
        "{ok}"
    );
    let failed = record("BackupBroken").await;
    assert_eq!(failed["status"], "failure", "{failed}");
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains(": error"),
        "{failed}"
    );
    app.stop().await;
}
