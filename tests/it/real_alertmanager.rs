//! A real Alertmanager delivering to Jarvis: its webhooks are accepted, its
//! fingerprints are what Jarvis computes for the same labels, and resolutions arrive.

use std::collections::BTreeMap;
use std::time::Duration;

use jarvis::domain::alert::Fingerprint;
use serde_json::{Value, json};

use crate::support::alertmanager::Alertmanager;
use crate::support::{Backend, PASSWORD, TestApp, TestEnv, USER, eventually};

fn label_sets() -> Vec<BTreeMap<String, String>> {
    let mut sets = Vec::new();
    let values = [
        "",
        "a",
        "nexus:9100",
        "Ünïcode ☃",
        "with space",
        "quote\"d",
        "new\nline",
        "ß",
        "🚀",
    ];
    for i in 0..24usize {
        let mut l = BTreeMap::new();
        l.insert("alertname".to_owned(), format!("Parity{i}"));
        for j in 0..(i % 5) {
            let name = ["instance", "job", "Zone", "severity", "container_name"][j];
            l.insert(
                name.to_owned(),
                values[(i * 7 + j * 3) % values.len()].to_owned(),
            );
        }
        // Empty label values are dropped by Alertmanager (they mean "no label").
        l.retain(|_, v| !v.is_empty());
        sets.push(l);
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_deliveries_are_stored_with_matching_fingerprints() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::start(env.config()).await;
    let webhook = app.url("/webhook");
    let Some(am) =
        tokio::task::spawn_blocking(move || Alertmanager::start(&webhook, USER, PASSWORD))
            .await
            .unwrap()
    else {
        return;
    };
    let client = reqwest::Client::new();
    let sets = label_sets();
    let alerts: Vec<Value> = sets
        .iter()
        .map(|l| json!({"labels": l, "annotations": {"summary": "parity"}}))
        .collect();
    let resp = client
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

    // Alertmanager's own fingerprints equal ours for every label set.
    let listed: Vec<Value> = client
        .get(format!("{}/api/v2/alerts", am.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), sets.len());
    for a in &listed {
        let labels: BTreeMap<String, String> = serde_json::from_value(a["labels"].clone()).unwrap();
        assert_eq!(
            a["fingerprint"].as_str().unwrap(),
            Fingerprint::of_labels(&labels).to_string(),
            "labels {labels:?}"
        );
    }

    // Every alert arrives by webhook and is stored once, with Alertmanager's fingerprint.
    let stored = eventually(
        "Alertmanager delivers every alert",
        Duration::from_secs(30),
        || async {
            let got = app.alerts("").await;
            (got.len() >= sets.len()).then_some(got)
        },
    )
    .await;
    assert_eq!(stored.len(), sets.len());
    for s in &stored {
        let labels: BTreeMap<String, String> = serde_json::from_value(s["labels"].clone()).unwrap();
        assert_eq!(
            s["fingerprint"].as_str().unwrap(),
            Fingerprint::of_labels(&labels).to_string()
        );
        assert_eq!(s["receiver"], "jarvis");
    }

    // Resolve one: Alertmanager sends the resolved notification, stored as a new event.
    let mut resolved = alerts[0].clone();
    resolved["endsAt"] = json!(chrono::Utc::now().to_rfc3339());
    client
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&[resolved])
        .send()
        .await
        .unwrap();
    eventually(
        "the resolved notification arrives",
        Duration::from_secs(30),
        || async {
            let got = app.alerts("&alertname=Parity0").await;
            got.iter().any(|a| a["status"] == "resolved").then_some(())
        },
    )
    .await;
    // Repeat notifications of the other, still-firing alerts were absorbed as duplicates.
    assert_eq!(app.alerts("").await.len(), sets.len() + 1);
    drop(am);
    app.stop().await;
}
