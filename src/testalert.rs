//! `jarvis send-test-alert`: posts a well-formed Alertmanager v4 payload, so a new
//! installation can be tried without waiting for a real alert.

use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::domain::alert::{Fingerprint, LabelSet};

#[derive(Debug, clap::Args)]
pub struct SendTestAlert {
    /// Jarvis's webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8000/webhook")]
    pub url: String,
    /// Basic-auth user.
    #[arg(long, env = "WEBHOOK_AUTH_USERNAME", default_value = "alertmanager")]
    pub user: String,
    /// Basic-auth password (default: $WEBHOOK_AUTH_PASSWORD).
    #[arg(long, env = "WEBHOOK_AUTH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    #[arg(long, default_value = "JarvisTestAlert")]
    pub alertname: String,
    /// Extra label, repeatable: --label instance=nexus:9100
    #[arg(long = "label", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Annotation, repeatable: --annotation summary="Disk almost full"
    #[arg(long = "annotation", value_parser = parse_pair)]
    pub annotations: Vec<(String, String)>,
    /// Send the alert as resolved.
    #[arg(long)]
    pub resolved: bool,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

impl SendTestAlert {
    /// The payload, as Alertmanager would send it for one alert.
    pub fn payload(&self, now: chrono::DateTime<Utc>) -> serde_json::Value {
        let mut labels: LabelSet = self.labels.iter().cloned().collect();
        labels.insert("alertname".into(), self.alertname.clone());
        let annotations: LabelSet = if self.annotations.is_empty() {
            [(
                "summary".to_owned(),
                "Test alert sent by `jarvis send-test-alert`".to_owned(),
            )]
            .into()
        } else {
            self.annotations.iter().cloned().collect()
        };
        let status = if self.resolved { "resolved" } else { "firing" };
        let starts = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let ends = if self.resolved {
            starts.clone()
        } else {
            "0001-01-01T00:00:00Z".into()
        };
        json!({
            "receiver": "jarvis",
            "status": status,
            "alerts": [{
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": starts,
                "endsAt": ends,
                "generatorURL": "",
                "fingerprint": Fingerprint::of_labels(&labels).to_string(),
            }],
            "groupLabels": {"alertname": self.alertname},
            "commonLabels": labels,
            "commonAnnotations": annotations,
            "externalURL": "",
            "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{}\"}}", self.alertname),
            "truncatedAlerts": 0,
        })
    }

    pub async fn run(&self) -> anyhow::Result<ExitCode> {
        let client = crate::http_client(std::time::Duration::from_secs(10))?;
        let mut req = client.post(&self.url).json(&self.payload(Utc::now()));
        if let Some(pw) = &self.password {
            req = req.basic_auth(&self.user, Some(pw));
        }
        let resp = req.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach {}: {e} (is `jarvis serve` running?)",
                self.url
            )
        })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        println!("{} {}", status.as_u16(), body);
        Ok(if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
