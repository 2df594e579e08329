//! Parsing an Alertmanager webhook body (payload version 4) into alert events.
//!
//! Parsing is lenient where Alertmanager versions differ (unknown fields are ignored,
//! newer fields are optional) and strict where a wrong value would mislead the pipeline:
//! every rejection names the field, so the person who wrote the payload knows what to fix.

use chrono::DateTime;
use serde_json::{Map, Value};

use crate::domain::alert::{AlertName, AlertStatus, Fingerprint, LabelSet, NewAlertEvent};
use crate::domain::ids::new_id;

/// Why a payload was rejected; the text goes back to the sender in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PayloadError> {
    Err(PayloadError(msg.into()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parses a webhook body received at `received_at` (epoch ms) into events, one per
/// alert, in payload order.
pub fn parse_payload(body: &[u8], received_at: i64) -> Result<Vec<NewAlertEvent>, PayloadError> {
    let root: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return err(format!("body is not valid JSON: {e}")),
    };
    let Value::Object(root) = root else {
        return err(format!(
            "body must be a JSON object (an Alertmanager webhook payload), got {}",
            type_name(&root)
        ));
    };
    let top_status = match root.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(AlertStatus::parse(s).map_err(PayloadError)?),
        Some(other) => return err(format!("status must be a string, got {}", type_name(other))),
    };
    let receiver = optional_string(&root, "receiver", "receiver")?;
    let group_key = optional_string(&root, "groupKey", "groupKey")?;
    let alerts = match root.get("alerts") {
        None => return err("missing field \"alerts\" (the list of alerts)"),
        Some(Value::Array(a)) => a,
        Some(other) => return err(format!("alerts must be a list, got {}", type_name(other))),
    };

    alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| {
            parse_alert(
                alert,
                &format!("alerts[{i}]"),
                top_status,
                &receiver,
                &group_key,
                received_at,
            )
        })
        .collect()
}

fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => err(format!("{path} must be a string, got {}", type_name(other))),
    }
}

fn string_map(v: Option<&Value>, path: &str) -> Result<LabelSet, PayloadError> {
    match v {
        None | Some(Value::Null) => Ok(LabelSet::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => err(format!(
                    "{path}.{k} must be a string, got {}",
                    type_name(other)
                )),
            })
            .collect(),
        Some(other) => err(format!(
            "{path} must be an object, got {}",
            type_name(other)
        )),
    }
}

/// Go's zero `time.Time`, which Alertmanager sends as `endsAt` of firing alerts.
fn is_go_zero_time(s: &str) -> bool {
    s.starts_with("0001-01-01T00:00:00")
}

fn timestamp(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() || is_go_zero_time(s) => Ok(None),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Ok(Some(t.timestamp_millis())),
            Err(e) => err(format!(
                "{path}.{key} {s:?} is not an RFC 3339 time ({e}); e.g. \"2026-11-20T03:12:45Z\""
            )),
        },
        Some(other) => err(format!(
            "{path}.{key} must be an RFC 3339 time string, got {}",
            type_name(other)
        )),
    }
}

fn parse_alert(
    alert: &Value,
    path: &str,
    top_status: Option<AlertStatus>,
    receiver: &str,
    group_key: &str,
    received_at: i64,
) -> Result<NewAlertEvent, PayloadError> {
    let Value::Object(obj) = alert else {
        return err(format!(
            "{path} must be an object, got {}",
            type_name(alert)
        ));
    };
    let labels = match obj.get("labels") {
        None | Some(Value::Null) => return err(format!("{path}.labels is missing")),
        v => string_map(v, &format!("{path}.labels"))?,
    };
    let alertname = match labels.get("alertname") {
        None => return err(format!("{path}.labels.alertname is missing")),
        Some(name) => {
            AlertName::parse(name).map_err(|e| PayloadError(format!("{path}.labels.{e}")))?
        }
    };
    let annotations = string_map(obj.get("annotations"), &format!("{path}.annotations"))?;
    let status = match obj.get("status") {
        None | Some(Value::Null) => top_status.unwrap_or(AlertStatus::Firing),
        Some(Value::String(s)) => {
            AlertStatus::parse(s).map_err(|e| PayloadError(format!("{path}.{e}")))?
        }
        Some(other) => {
            return err(format!(
                "{path}.status must be a string, got {}",
                type_name(other)
            ));
        }
    };
    let fingerprint = match obj.get("fingerprint") {
        None | Some(Value::Null) => Fingerprint::of_labels(&labels),
        Some(Value::String(s)) if s.is_empty() => Fingerprint::of_labels(&labels),
        Some(Value::String(s)) => {
            Fingerprint::parse(s).map_err(|e| PayloadError(format!("{path}.{e}")))?
        }
        Some(other) => {
            return err(format!(
                "{path}.fingerprint must be a string, got {}",
                type_name(other)
            ));
        }
    };
    let starts_at = timestamp(obj, "startsAt", path)?.unwrap_or(received_at);
    let ends_at = timestamp(obj, "endsAt", path)?;
    let generator_url = optional_string(obj, "generatorURL", &format!("{path}.generatorURL"))?;

    Ok(NewAlertEvent {
        id: new_id(),
        fingerprint,
        status,
        alertname,
        labels,
        annotations,
        starts_at,
        ends_at,
        generator_url,
        receiver: receiver.to_owned(),
        group_key: group_key.to_owned(),
        received_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../shared/fixtures/alerts/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    #[test]
    fn every_shared_fixture_parses() {
        let cases = [
            ("backup_stale_system_label.json", 1),
            ("cascade_vpn_and_outpost.json", 0),
            ("container_down_firing.json", 1),
            ("container_down_resolved.json", 1),
            ("grouped_three_firing.json", 3),
            ("handwritten_minimal.json", 1),
            ("synthetic_anomaly.json", 1),
            ("with_remediation_hints.json", 1),
        ];
        for (name, min_alerts) in cases {
            let events =
                parse_payload(&fixture(name), NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                events.len() >= min_alerts,
                "{name}: {} alerts",
                events.len()
            );
            for e in &events {
                assert_eq!(e.labels.get("alertname").unwrap(), e.alertname.as_str());
            }
        }
    }

    #[test]
    fn real_fields_are_carried_over() {
        let events = parse_payload(&fixture("container_down_firing.json"), NOW).unwrap();
        let e = &events[0];
        assert_eq!(e.fingerprint.to_string(), "6f1d2c7a9b3e4d10");
        assert_eq!(e.status, AlertStatus::Firing);
        assert_eq!(e.alertname.as_str(), "ContainerDown");
        assert_eq!(e.labels["container"], "frigate");
        assert_eq!(e.annotations["summary"], "Container frigate is down");
        // 2026-11-20T03:12:45.123Z
        assert_eq!(e.starts_at, 1_795_144_365_123);
        assert_eq!(e.ends_at, None, "Go zero time means still firing");
        assert_eq!(e.receiver, "jarvis");
        assert_eq!(e.group_key, "{}:{alertname=\"ContainerDown\"}");
        assert_eq!(e.received_at, NOW);

        let resolved = parse_payload(&fixture("container_down_resolved.json"), NOW).unwrap();
        assert_eq!(resolved[0].status, AlertStatus::Resolved);
        assert!(resolved[0].ends_at.is_some());
    }

    /// Hand-made payloads (the original Jarvis's test scripts, n8n flows) carry
    /// fingerprints like "manual-smoke-1": kept as given.
    #[test]
    fn an_opaque_fingerprint_is_kept_as_given() {
        let body =
            r#"{"alerts": [{"labels": {"alertname": "A"}, "fingerprint": "manual-smoke-1"}]}"#;
        let events = parse_payload(body.as_bytes(), NOW).unwrap();
        assert_eq!(events[0].fingerprint.as_str(), "manual-smoke-1");
    }

    #[test]
    fn handwritten_payload_gets_computed_fingerprint_and_receive_time() {
        let events = parse_payload(&fixture("handwritten_minimal.json"), NOW).unwrap();
        let e = &events[0];
        assert_eq!(e.fingerprint, Fingerprint::of_labels(&e.labels));
        assert_eq!(e.starts_at, NOW);
        assert!(e.annotations.contains_key("description"));
    }

    #[test]
    fn malformed_payloads_are_rejected_with_the_field_named() {
        let cases: &[(&str, &str)] = &[
            ("{", "not valid JSON"),
            ("", "not valid JSON"),
            ("[]", "must be a JSON object"),
            ("{}", "missing field \"alerts\""),
            (r#"{"alerts": {}}"#, "alerts must be a list, got an object"),
            (r#"{"alerts": "x"}"#, "alerts must be a list, got a string"),
            (r#"{"alerts": [1]}"#, "alerts[0] must be an object"),
            (r#"{"alerts": [{}]}"#, "alerts[0].labels is missing"),
            (
                r#"{"alerts": [{"labels": []}]}"#,
                "alerts[0].labels must be an object",
            ),
            (
                r#"{"alerts": [{"labels": {}}]}"#,
                "alerts[0].labels.alertname is missing",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": 5}}]}"#,
                "alerts[0].labels.alertname must be a string, got a number",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": ""}}]}"#,
                "alertname must not be empty",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A", "x": true}}]}"#,
                "alerts[0].labels.x must be a string, got a boolean",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "annotations": {"s": null}}]}"#,
                "alerts[0].annotations.s must be a string, got null",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "annotations": "x"}]}"#,
                "alerts[0].annotations must be an object",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "status": "pending"}]}"#,
                "status \"pending\" is neither",
            ),
            (
                r#"{"status": "weird", "alerts": []}"#,
                "status \"weird\" is neither",
            ),
            (r#"{"status": 1, "alerts": []}"#, "status must be a string"),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "status": 3}]}"#,
                "alerts[0].status must be a string",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "startsAt": "yesterday"}]}"#,
                "alerts[0].startsAt \"yesterday\" is not an RFC 3339 time",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "endsAt": 12}]}"#,
                "alerts[0].endsAt must be an RFC 3339 time string",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "fingerprint": "a\u0007b"}]}"#,
                "alerts[0].fingerprint \"a\\u{7}b\" contains the control character",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}, "fingerprint": 7}]}"#,
                "alerts[0].fingerprint must be a string",
            ),
            (
                r#"{"alerts": [{"labels": {"alertname": "A"}}, {"labels": {"alertname": "B", "n": 1}}]}"#,
                "alerts[1].labels.n must be a string",
            ),
        ];
        for (body, expected) in cases {
            let e = parse_payload(body.as_bytes(), NOW).expect_err(body);
            assert!(
                e.0.contains(expected),
                "body {body}: got {:?}, wanted {expected:?}",
                e.0
            );
        }
    }

    #[test]
    fn lenient_where_alertmanager_versions_differ() {
        let body = br#"{"alerts": [{"labels": {"alertname": "A"}, "extra": 1}], "routeLabels": {}, "notification_reason": "x", "truncatedAlerts": 0}"#;
        let events = parse_payload(body, NOW).unwrap();
        assert_eq!(events[0].status, AlertStatus::Firing);
        let body = br#"{"status": "resolved", "alerts": [{"labels": {"alertname": "A"}}]}"#;
        assert_eq!(
            parse_payload(body, NOW).unwrap()[0].status,
            AlertStatus::Resolved
        );
        let body = br#"{"alerts": []}"#;
        assert!(parse_payload(body, NOW).unwrap().is_empty());
        let body = br#"{"alerts": [{"labels": {"alertname": "A"}, "startsAt": "2026-11-20T04:12:45.5+01:00"}]}"#;
        assert_eq!(
            parse_payload(body, NOW).unwrap()[0].starts_at,
            1_795_144_365_500
        );
    }
}
