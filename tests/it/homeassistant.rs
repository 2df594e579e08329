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
    assert!(matches!(
        ha.state("../config").await.unwrap_err(),
        HaError::BadRequest(_)
    ));
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
