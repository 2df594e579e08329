//! The provider-neutral conversation and the `LlmProvider` trait, with the HTTP retry
//! rules both wire formats share (`../shared/reference/anthropic-messages-tools.md`,
//! `openai-chat-tools.md`): 408/409/429/5xx/529 and connection errors are retried with
//! backoff, honouring `retry-after`/`retry-after-ms` up to a cap; 400/401/403/404 are
//! surfaced at once with a message that says what to fix.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::Value;

/// A tool the model may call.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the arguments (`type: object`).
    pub schema: Value,
}

/// One call the model made. `arguments` is `Err` when the model sent text that is not
/// a JSON object (small local models do); the loop answers with a tool error.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Exactly what the model sent, echoed back in the history.
    pub raw_arguments: String,
    pub arguments: Result<Value, String>,
}

impl ToolCall {
    pub fn new(id: String, name: String, raw_arguments: String) -> Self {
        let arguments = match serde_json::from_str::<Value>(&raw_arguments) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err("the arguments must be a JSON object".to_owned()),
            Err(e) => Err(format!("the arguments are not valid JSON: {e}")),
        };
        Self {
            id,
            name,
            raw_arguments,
            arguments,
        }
    }
}

/// The answer to one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub id: String,
    pub name: String,
    pub content: String,
    pub is_error: bool,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    User(String),
    Assistant { text: String, calls: Vec<ToolCall> },
    ToolResults(Vec<ToolResult>),
}

/// What is sent. `system` is stable across alerts (cached by Anthropic); the alert's
/// context goes in the first user turn.
pub struct ChatRequest<'a> {
    pub system: &'a str,
    pub turns: &'a [Turn],
    /// The tools defined (the conversation may refer to them).
    pub tools: &'a [ToolSpec],
    /// False for the last, best-answer call: answer in text only.
    pub may_call_tools: bool,
    pub max_tokens: u32,
}

/// Tokens of one call, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    pub calls: Vec<ToolCall>,
    /// The provider's stop reason, as sent.
    pub stop: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The request itself is wrong (400, 401, 403, 404, 413, 422, quota): retrying will
    /// not help; the message says what to fix.
    #[error("{0}")]
    Rejected(String),
    /// The provider could not be reached or kept failing after the retries.
    #[error("{0}")]
    Unavailable(String),
    /// A 200 whose body is not the documented format.
    #[error("{0}")]
    Malformed(String),
}

impl LlmError {
    /// The status label for metrics and llm_usage.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "rejected",
            Self::Unavailable(_) => "unavailable",
            Self::Malformed(_) => "malformed",
        }
    }
}

#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// `anthropic` or `openai`.
    fn name(&self) -> &'static str;
    fn model(&self) -> &str;
    async fn chat(&self, req: &ChatRequest<'_>) -> Result<ChatResponse, LlmError>;
}

/// Retry policy shared by the providers.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_retries: u32,
    pub max_wait: Duration,
    /// First backoff; doubles each time (with jitter) unless the server says how long.
    pub base: Duration,
}

/// The server's requested wait: `retry-after-ms`, then `retry-after` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(ms) = get("retry-after-ms") {
        return Some(Duration::from_secs_f64((ms / 1000.0).max(0.0)));
    }
    get("retry-after").map(|s| Duration::from_secs_f64(s.max(0.0)))
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429 | 529) || status.is_server_error()
}

/// A small jitter from the clock (no RNG dependency): up to a quarter of `d`.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// Sends the request built by `build`, retrying as the providers document. Returns the
/// JSON body of a 2xx. `explain` turns a non-retryable error status and body into the
/// message a person reads.
pub async fn send_json(
    build: impl Fn() -> reqwest::RequestBuilder,
    retry: Retry,
    provider: &str,
    explain: impl Fn(StatusCode, &Value) -> Option<String>,
) -> Result<Value, LlmError> {
    let mut attempt = 0u32;
    loop {
        let wait;
        let why;
        match build().send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let text = resp.text().await.unwrap_or_default();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if status.is_success() {
                    if body.is_null() {
                        return Err(LlmError::Malformed(format!(
                            "{provider} answered {status} with a body that is not JSON"
                        )));
                    }
                    return Ok(body);
                }
                let message = error_message(&body, &text);
                let no_retry = headers
                    .get("x-should-retry")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v == "false");
                // An explained error will not clear by retrying (a bad key, a spent quota).
                let explained = explain(status, &body);
                if !retryable(status) || no_retry || explained.is_some() {
                    return Err(LlmError::Rejected(explained.unwrap_or_else(|| {
                        format!("{provider} rejected the request ({status}): {message}")
                    })));
                }
                why = format!("{provider} answered {status}: {message}");
                let backoff = jitter(retry.base * 2u32.saturating_pow(attempt));
                wait = retry_after(&headers).unwrap_or(backoff);
                if wait > retry.max_wait {
                    return Err(LlmError::Unavailable(format!(
                        "{why}; it asks to wait {}s, more than llm.max_retry_wait_seconds ({}s)",
                        wait.as_secs(),
                        retry.max_wait.as_secs()
                    )));
                }
            }
            Err(e) => {
                why = if e.is_timeout() {
                    format!("{provider} did not answer in time (llm.timeout_seconds)")
                } else {
                    format!("{provider} is unreachable: {}", strip_url(&e))
                };
                wait = jitter(retry.base * 2u32.saturating_pow(attempt));
            }
        }
        if attempt >= retry.max_retries {
            return Err(LlmError::Unavailable(format!(
                "{why} (gave up after {} retries)",
                retry.max_retries
            )));
        }
        attempt += 1;
        tracing::warn!(provider, attempt, wait_ms = wait.as_millis() as u64, reason = %why, "LLM call failed; retrying.");
        tokio::time::sleep(wait).await;
    }
}

/// The error text without the URL (base URLs can carry credentials).
fn strip_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}

/// `error.message` of either wire format, else the start of the body.
fn error_message(body: &Value, text: &str) -> String {
    body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| text.chars().take(300).collect())
}

/// Where and how a provider sends its requests: what both wire formats share.
pub struct Endpoint {
    pub client: reqwest::Client,
    pub url: String,
    pub key: crate::config::Secret,
    pub model: String,
    pub retry: Retry,
}

/// How a provider is reached, from `[llm]`.
pub struct EndpointConfig<'a> {
    /// Empty: the vendor's default.
    pub base_url: &'a str,
    pub key: crate::config::Secret,
    pub model: &'a str,
    pub timeout: Duration,
    pub retry: Retry,
}

impl Endpoint {
    pub fn new(c: EndpointConfig<'_>, default_base: &str, path: &str) -> anyhow::Result<Self> {
        let base = if c.base_url.is_empty() {
            default_base
        } else {
            c.base_url
        };
        Ok(Self {
            client: crate::http_client(c.timeout)?,
            url: endpoint(base, path),
            key: c.key,
            model: c.model.to_owned(),
            retry: c.retry,
        })
    }
}

/// Joins `base` and `path`, tolerating a trailing slash on `base`.
pub fn endpoint(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_arguments_must_be_a_json_object() {
        let ok = ToolCall::new("1".into(), "t".into(), r#"{"a": 1}"#.into());
        assert!(ok.arguments.is_ok());
        let text = ToolCall::new("1".into(), "t".into(), "{a: 1".into());
        assert!(text.arguments.unwrap_err().contains("not valid JSON"));
        let list = ToolCall::new("1".into(), "t".into(), "[1]".into());
        assert!(list.arguments.unwrap_err().contains("JSON object"));
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn what_is_retried() {
        for s in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
