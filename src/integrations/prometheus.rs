//! Prometheus HTTP API client: instant and range queries, and active alerts (for
//! verifying that a fix really resolved an alert). One shared HTTP client with a
//! timeout on every call; errors keep Prometheus's own `errorType` and message.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::alert::LabelSet;

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("Prometheus rejected the request ({error_type}): {message}")]
    Api { error_type: String, message: String },
    #[error("Prometheus answered HTTP {status} without its JSON envelope: {body}")]
    Http { status: u16, body: String },
    #[error("unexpected answer from Prometheus: {0}")]
    Malformed(String),
}

/// One active alert as Prometheus sees it (pending or firing).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PromAlert {
    pub labels: LabelSet,
    #[serde(default)]
    pub annotations: LabelSet,
    /// `pending` or `firing`.
    pub state: String,
    #[serde(default, rename = "activeAt")]
    pub active_at: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// One series' value at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: BTreeMap<String, String>,
    /// Unix seconds.
    pub at: f64,
    pub value: f64,
}

/// One series over time, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<PromAlert>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// Prometheus encodes sample values as strings so that NaN and ±Inf survive JSON.
pub fn parse_value(s: &str) -> Result<f64, PromError> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other
            .parse()
            .map_err(|_| PromError::Malformed(format!("sample value {other:?}"))),
    }
}

fn point(v: &serde_json::Value) -> Result<(f64, f64), PromError> {
    let arr = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| PromError::Malformed(format!("point {v}")))?;
    let at = arr[0]
        .as_f64()
        .ok_or_else(|| PromError::Malformed(format!("timestamp {}", arr[0])))?;
    let value = parse_value(
        arr[1]
            .as_str()
            .ok_or_else(|| PromError::Malformed(format!("value {}", arr[1])))?,
    )?;
    Ok((at, value))
}

fn metric(v: &serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.get("metric").cloned().unwrap_or_default()).unwrap_or_default()
}

#[derive(Clone)]
pub struct Prometheus {
    base: String,
    client: reqwest::Client,
}

impl Prometheus {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            client: crate::http_client(timeout)?,
        })
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<T, PromError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .client
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(|e| PromError::Unreachable {
                url: self.base.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| PromError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        let env: Envelope<T> = match serde_json::from_str(&body) {
            Ok(e) => e,
            Err(_) => {
                return Err(PromError::Http {
                    status,
                    body: body.chars().take(200).collect(),
                });
            }
        };
        if env.status != "success" {
            return Err(PromError::Api {
                error_type: env.error_type.unwrap_or_else(|| "unknown".into()),
                message: env.error.unwrap_or_default(),
            });
        }
        env.data
            .ok_or_else(|| PromError::Malformed("success without data".into()))
    }

    /// Active (pending and firing) alerts.
    pub async fn alerts(&self) -> Result<Vec<PromAlert>, PromError> {
        Ok(self.get::<AlertsData>("/api/v1/alerts", &[]).await?.alerts)
    }

    /// An instant query; scalars come back as one sample without labels.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PromError> {
        let d: QueryData = self
            .get("/api/v1/query", &[("query", promql.to_owned())])
            .await?;
        match d.result_type.as_str() {
            "vector" => d
                .result
                .as_array()
                .ok_or_else(|| PromError::Malformed("vector result is not a list".into()))?
                .iter()
                .map(|s| {
                    let (at, value) = point(s.get("value").unwrap_or(&serde_json::Value::Null))?;
                    Ok(Sample {
                        metric: metric(s),
                        at,
                        value,
                    })
                })
                .collect(),
            "scalar" => {
                let (at, value) = point(&d.result)?;
                Ok(vec![Sample {
                    metric: BTreeMap::new(),
                    at,
                    value,
                }])
            }
            other => Err(PromError::Malformed(format!(
                "result type {other} for an instant query"
            ))),
        }
    }

    /// A range query between two Unix times (seconds) at `step` seconds.
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        let d: QueryData = self
            .get(
                "/api/v1/query_range",
                &[
                    ("query", promql.to_owned()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", step.to_string()),
                ],
            )
            .await?;
        d.result
            .as_array()
            .ok_or_else(|| PromError::Malformed("matrix result is not a list".into()))?
            .iter()
            .map(|s| {
                let points = s
                    .get("values")
                    .and_then(|v| v.as_array())
                    .ok_or_else(|| PromError::Malformed("series without values".into()))?
                    .iter()
                    .map(point)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Series {
                    metric: metric(s),
                    points,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_values_including_special_floats() {
        assert_eq!(parse_value("1").unwrap(), 1.0);
        assert_eq!(parse_value("9.3e-01").unwrap(), 0.93);
        assert_eq!(parse_value("1.5e+21").unwrap(), 1.5e21);
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(parse_value("-Inf").unwrap(), f64::NEG_INFINITY);
        assert!(parse_value("many").is_err());
    }
}
