//! Loki client: log queries over `GET /loki/api/v1/query_range` (log queries are
//! range-only since Loki 3.2). Timestamps are sent as 19-digit nanoseconds (13-digit
//! milliseconds would be read as nanoseconds: 1970). Errors from Loki are plain text.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LokiError {
    #[error("Loki is unreachable: {0}")]
    Unreachable(String),
    #[error("Loki answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Loki's answer is not in the documented format: {0}")]
    Malformed(String),
}

/// One log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub ts_ns: i64,
    pub labels: std::collections::BTreeMap<String, String>,
    pub line: String,
}

pub struct Loki {
    client: reqwest::Client,
    base: String,
}

impl Loki {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: crate::http_client(timeout)?,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The newest `limit` lines matching `logql` in the last `minutes`, newest first
    /// across all streams.
    pub async fn query_range(
        &self,
        logql: &str,
        minutes: u32,
        limit: u32,
    ) -> Result<Vec<LogLine>, LokiError> {
        let end = crate::domain::ids::now_ms() * 1_000_000;
        let start = end - i64::from(minutes) * 60 * 1_000_000_000;
        let resp = self
            .client
            .get(format!("{}/loki/api/v1/query_range", self.base))
            .query(&[
                ("query", logql.to_owned()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("limit", limit.to_string()),
                ("direction", "backward".to_owned()),
            ])
            .send()
            .await
            .map_err(|e| LokiError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| LokiError::Unreachable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(LokiError::Status {
                status: status.as_u16(),
                message: text.trim().chars().take(300).collect(),
            });
        }
        parse_streams(&text)
    }
}

/// Parses a `streams` result, flattened and sorted newest first.
pub fn parse_streams(text: &str) -> Result<Vec<LogLine>, LokiError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LokiError::Malformed(e.to_string()))?;
    if v["status"] != "success" {
        return Err(LokiError::Malformed(format!("status {}", v["status"])));
    }
    let result = v["data"]["result"]
        .as_array()
        .ok_or_else(|| LokiError::Malformed("no data.result list".into()))?;
    let mut lines = Vec::new();
    for stream in result {
        let labels = stream["stream"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for value in stream["values"].as_array().into_iter().flatten() {
            let ts_ns = value[0].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            lines.push(LogLine {
                ts_ns,
                labels: std::collections::BTreeMap::clone(&labels),
                line: value[1].as_str().unwrap_or("").to_owned(),
            });
        }
    }
    lines.sort_by_key(|l| std::cmp::Reverse(l.ts_ns));
    Ok(lines)
}

/// A LogQL string literal (backticks cannot be escaped, so double quotes).
pub fn logql_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_flattened_newest_first() {
        let text = r#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"container":"a"},"values":[["3","three"],["1","one"]]},
            {"stream":{"container":"b"},"values":[["2","two",{"trace":"x"}]]}]}}"#;
        let lines = parse_streams(text).unwrap();
        let order: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(order, ["three", "two", "one"]);
        assert_eq!(lines[1].labels["container"], "b");
    }

    #[test]
    fn logql_strings_are_quoted() {
        assert_eq!(logql_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
