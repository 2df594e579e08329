//! The Home Assistant client against an in-process Home Assistant that speaks the
//! documented Core REST and Supervisor APIs.

use jarvis::config::{HomeAssistantConfig, Secret};
use jarvis::integrations::homeassistant::{HaError, HomeAssistant};
use serde_json::json;

use crate::support::homeassistant::{self, Generation, SUPERVISOR_TOKEN, TOKEN};

fn client(url: &str, token: &str, supervisor: Option<&str>) -> HomeAssistant {
    HomeAssistant::from_config(&HomeAssistantConfig {
        url: url.into(),
        token: Secret::new(token),
        supervisor_url: supervisor.unwrap_or_default().into(),
        supervisor_token: Secret::new(SUPERVISOR_TOKEN),
        ..Default::default()
    })
    .unwrap()
    .expect("configured")
}

#[tokio::test]
async fn health_states_and_what_a_bad_token_says() {
    let (url, _, _) = homeassistant::start(Generation::App).await;
    let ha = client(&url, TOKEN, None);
    ha.health().await.unwrap();
    let s = ha.state("sensor.ups_battery").await.unwrap();
    assert_eq!(
        (
            s.state.as_str(),
            s.attributes["unit_of_measurement"].as_str()
        ),
        ("87", Some("%"))
    );
    let missing = ha.state("sensor.nope").await.unwrap_err();
    assert!(matches!(missing, HaError::NotFound(_)), "{missing}");
    assert!(
        missing.to_string().contains("Entity not found"),
        "{missing}"
    );
    for sneaky in [
        "../config",
        "sensor.x\\..\\..\\error_log",
        "sensor.x/../y",
        "Sensor.X",
    ] {
        assert!(
            matches!(ha.state(sneaky).await.unwrap_err(), HaError::BadRequest(_)),
            "{sneaky}"
        );
    }
    let wrong = client(&url, "stale-token", None)
        .health()
        .await
        .unwrap_err();
    assert_eq!(wrong, HaError::Unauthorized);
    assert!(wrong.to_string().contains("homeassistant.token"), "{wrong}");
    // Not configured at all: no client.
    assert!(
        HomeAssistant::from_config(&HomeAssistantConfig::default())
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_app_is_restarted_with_the_service_the_installation_offers() {
    for (generation, service, field) in [
        (Generation::App, "hassio.app_restart", "app"),
        (Generation::Addon, "hassio.addon_restart", "addon"),
    ] {
        let (url, _, recorded) = homeassistant::start(generation).await;
        let ha = client(&url, TOKEN, None);
        assert_eq!(ha.restart_app("core_mosquitto").await.unwrap(), service);
        assert_eq!(
            recorded.calls.lock().unwrap().clone(),
            vec![(service.to_owned(), json!({field: "core_mosquitto"}))]
        );
        assert!(matches!(
            ha.restart_app("core mosquitto; rm").await.unwrap_err(),
            HaError::BadRequest(_)
        ));
    }
}

#[tokio::test]
async fn services_are_called_and_mistakes_are_named() {
    let (url, _, recorded) = homeassistant::start(Generation::App).await;
    let ha = client(&url, TOKEN, None);
    ha.call_service("automation", "reload", &json!({}), false)
        .await
        .unwrap();
    assert_eq!(recorded.calls.lock().unwrap()[0].0, "automation.reload");
    let unknown = ha
        .call_service("light", "explode", &json!({}), false)
        .await
        .unwrap_err();
    assert!(matches!(unknown, HaError::BadRequest(_)), "{unknown}");
    assert!(
        unknown.to_string().contains("GET /api/services"),
        "{unknown}"
    );
    // A service without a response, asked for one: HA says 400.
    assert!(matches!(
        ha.call_service("automation", "reload", &json!({}), true)
            .await
            .unwrap_err(),
        HaError::BadRequest(_)
    ));
    assert!(matches!(
        ha.call_service("../x", "y", &json!({}), false)
            .await
            .unwrap_err(),
        HaError::BadRequest(_)
    ));
}

#[tokio::test]
async fn apps_are_listed_only_through_the_supervisor() {
    let (url, supervisor, _) = homeassistant::start(Generation::App).await;
    let without = client(&url, TOKEN, None);
    assert!(!without.lists_apps());
    assert!(matches!(
        without.apps().await.unwrap_err(),
        HaError::NotOffered(_)
    ));
    let with = client(&url, TOKEN, Some(&supervisor));
    let apps = with.apps().await.unwrap();
    let slugs: Vec<&str> = apps.iter().map(|a| a.slug.as_str()).collect();
    assert_eq!(slugs, ["core_mosquitto", "ccab4aaf_frigate"]);
    assert_eq!(apps[1].state.as_deref(), Some("stopped"));
    let wrong = HomeAssistant::from_config(&HomeAssistantConfig {
        url: url.clone(),
        token: Secret::new(TOKEN),
        supervisor_url: supervisor,
        supervisor_token: Secret::new("nope"),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let e = wrong.apps().await.unwrap_err();
    assert!(
        matches!(e, HaError::Supervisor(_)) && e.to_string().contains("401"),
        "{e}"
    );
}

/// Issue 12: a ContainerDown-style alert for a Home Assistant app is fixed through the
/// `homeassistant.restart_app` action and verified. Real Prometheus scrapes the app's
/// state from (stub) Home Assistant and fires; real Alertmanager delivers; Jarvis runs
/// the alert's `remediation_action` through the gate and HA, and Prometheus shows it
/// resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_alert_is_fixed_through_home_assistant_and_verified() {
    use std::time::Duration;

    use crate::support::alertmanager::{Alertmanager, free_port};
    use crate::support::prometheus::Prometheus;
    use crate::support::{Backend, PASSWORD, TestApp, TestEnv, USER, eventually};

    jarvis::install_crypto_provider();
    let (url, _, ha) = homeassistant::start_with(Generation::App, &["core_mosquitto"]).await;
    let am_port = free_port();
    let target = url.trim_start_matches("http://").to_owned();
    let rules = "      - alert: HaAppDown\n        expr: ha_app_up{app=\"core_mosquitto\"} == 0\n        labels:\n          severity: critical\n        annotations:\n          summary: Mosquitto is down\n          remediation_action: \"homeassistant.restart_app app=core_mosquitto\"\n".to_owned();
    let Some(prom) = tokio::task::spawn_blocking(move || {
        Prometheus::start_alerting(&[target], &rules, Some(&format!("127.0.0.1:{am_port}")))
    })
    .await
    .unwrap() else {
        return;
    };
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut c = env.config();
    c.prometheus.url = prom.url.clone();
    c.verification.poll_interval_seconds = 1;
    c.verification.max_wait_seconds = 30;
    c.rules.settle_seconds = 0;
    c.homeassistant.url = url.clone();
    c.homeassistant.token = Secret::new(TOKEN);
    let app = TestApp::start_remediating(c).await;
    let webhook = app.url("/webhook");
    let Some(_am) = tokio::task::spawn_blocking(move || {
        Alertmanager::start_on(am_port, &webhook, USER, PASSWORD)
    })
    .await
    .unwrap() else {
        return;
    };
    let fixed = eventually(
        "the app is restarted and verified",
        Duration::from_secs(90),
        || async {
            let (_, r) = app.get("/remediations?alert_name=HaAppDown").await;
            r["remediations"]
                .as_array()?
                .iter()
                .find(|r| r["success"] == true)
                .cloned()
        },
    )
    .await;
    assert_eq!(fixed["verified"], true, "{fixed}");
    assert_eq!(
        fixed["commands_executed"],
        json!(["@homeassistant.restart_app app=core_mosquitto"])
    );
    assert_eq!(
        ha.calls.lock().unwrap().clone(),
        vec![(
            "hassio.app_restart".to_owned(),
            json!({"app": "core_mosquitto"})
        )],
        "restarted once, through the service this HA offers"
    );
    // The audit shows the action, judged and executed.
    let (_, audit) = app.get("/audit?host=@action").await;
    let kinds: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"judged") && kinds.contains(&"executed"),
        "{audit}"
    );
    app.stop().await;
}

/// A service not in `homeassistant.allow_services` waits for a person, whoever asks;
/// the approval shows the action, and approving runs it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_outside_the_allow_list_waits_for_approval_and_runs_once() {
    use std::time::Duration;

    use crate::support::{Backend, TestApp, TestEnv, eventually};

    let (url, _, ha) = homeassistant::start(Generation::App).await;
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let mut c = env.config();
    c.rules.settle_seconds = 0;
    c.homeassistant.url = url;
    c.homeassistant.token = Secret::new(TOKEN);
    let app = TestApp::start_remediating(c).await;
    let alert = json!({"receiver": "jarvis", "status": "firing", "version": "4", "alerts": [{
        "status": "firing",
        "labels": {"alertname": "AutomationsStale", "instance": "ha:8123"},
        "annotations": {"remediation_action": "homeassistant.call_service service=automation.reload"},
        "startsAt": "2026-11-25T05:00:00.000Z",
    }]});
    assert_eq!(app.post_webhook(&alert.to_string()).await.0, 200);
    let pending = eventually(
        "the action waits for approval",
        Duration::from_secs(20),
        || async {
            let (_, p) = app.get("/approvals?status=pending").await;
            p["approvals"].as_array()?.first().cloned()
        },
    )
    .await;
    assert_eq!(pending["host"], "@action");
    assert_eq!(
        pending["command"],
        "homeassistant.call_service service=automation.reload"
    );
    assert!(
        pending["reason"]
            .as_str()
            .unwrap()
            .contains("allow_services"),
        "{pending}"
    );
    assert!(
        ha.calls.lock().unwrap().is_empty(),
        "nothing ran before approval"
    );
    let id = pending["id"].as_str().unwrap();
    let (code, body) = app
        .api_post(&format!("/approvals/{id}/approve"), "{\"by\": \"jordan\"}")
        .await;
    assert_eq!(code, 200, "{body}");
    let event = eventually("the alert is fixed", Duration::from_secs(20), || async {
        app.alerts("&alertname=AutomationsStale")
            .await
            .into_iter()
            .find(|a| a["state"] == "resolved")
    })
    .await;
    assert!(
        event["reason"].as_str().unwrap().starts_with("fixed"),
        "{event}"
    );
    assert_eq!(
        ha.calls.lock().unwrap().clone(),
        vec![("automation.reload".to_owned(), json!({}))]
    );
    app.stop().await;
}
