//! Anthropic Messages API (`POST {base_url}/v1/messages`), non-streaming, with tool
//! use. The system prompt and the tool definitions are the stable prefix: one
//! `cache_control` breakpoint on the system block caches both (render order is tools,
//! then system), so each alert pays full price only for its own context.

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::llm::{
    ChatRequest, ChatResponse, Endpoint, EndpointConfig, LlmError, LlmProvider, ToolCall, Turn,
    Usage, send_json,
};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const VERSION: &str = "2023-06-01";

pub struct Anthropic {
    ep: Endpoint,
}

impl Anthropic {
    pub fn new(c: EndpointConfig<'_>) -> anyhow::Result<Self> {
        Ok(Self {
            ep: Endpoint::new(c, DEFAULT_BASE_URL, "v1/messages")?,
        })
    }

    fn body(&self, req: &ChatRequest<'_>) -> Value {
        let mut messages: Vec<Value> = Vec::new();
        for turn in req.turns {
            let (role, content) = match turn {
                Turn::User(text) => ("user", json!([{"type": "text", "text": text}])),
                Turn::Assistant { text, calls } => {
                    let mut blocks = Vec::new();
                    if !text.is_empty() {
                        blocks.push(json!({"type": "text", "text": text}));
                    }
                    for c in calls {
                        // `input` must be an object; a malformed one is echoed as empty
                        // (its error is in the matching tool_result).
                        let input = c.arguments.clone().unwrap_or_else(|_| json!({}));
                        blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
                    }
                    ("assistant", Value::Array(blocks))
                }
                Turn::ToolResults(results) => (
                    "user",
                    results
                        .iter()
                        .map(|r| {
                            json!({"type": "tool_result", "tool_use_id": r.id, "content": r.content, "is_error": r.is_error})
                        })
                        .collect(),
                ),
            };
            // Consecutive same-role turns are merged (the API does so too).
            match messages.last_mut() {
                Some(last) if last["role"] == role => {
                    if let (Some(a), Some(b)) = (last["content"].as_array_mut(), content.as_array())
                    {
                        a.extend(b.iter().cloned());
                    }
                }
                _ => messages.push(json!({"role": role, "content": content})),
            }
        }
        let mut body = json!({
            "model": self.ep.model,
            "max_tokens": req.max_tokens,
            "system": [{"type": "text", "text": req.system, "cache_control": {"type": "ephemeral"}}],
            "messages": messages,
        });
        if !req.tools.is_empty() {
            // Defined even when no call is allowed: a conversation with tool_use blocks
            // must define its tools, and the same definitions keep the cached prefix.
            body["tools"] = req
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}))
                .collect();
            if !req.may_call_tools {
                body["tool_choice"] = json!({"type": "none"});
            }
        }
        body
    }
}

/// What a person should do about an error Anthropic will not clear by retrying.
fn explain(status: StatusCode, body: &Value) -> Option<String> {
    let message = body["error"]["message"].as_str().unwrap_or("");
    match status.as_u16() {
        401 => Some(format!(
            "Anthropic rejected the API key (401 {message}); set ANTHROPIC_API_KEY or [llm] api_key_file"
        )),
        403 => Some(format!(
            "Anthropic refused access (403 {message}); check the key's permissions"
        )),
        404 => Some(format!(
            "Anthropic does not know this model or endpoint (404 {message}); check [llm] model and base_url"
        )),
        400 => Some(format!("Anthropic rejected the request (400): {message}")),
        429 if body["error"]["details"]["error_code"] == "enforced_spend_limit_reached" => Some(
            format!("Anthropic spend limit reached (429 {message}); raise it in the console"),
        ),
        _ => None,
    }
}

/// Parses a 200 body.
pub fn parse_response(body: &Value) -> Result<ChatResponse, LlmError> {
    let content = body["content"]
        .as_array()
        .ok_or_else(|| LlmError::Malformed("Anthropic's answer has no content list".into()))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(ToolCall::new(
                block["id"].as_str().unwrap_or("").to_owned(),
                block["name"].as_str().unwrap_or("").to_owned(),
                block["input"].to_string(),
            )),
            _ => {}
        }
    }
    let u = &body["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Ok(ChatResponse {
        text,
        calls,
        stop: body["stop_reason"].as_str().unwrap_or("").to_owned(),
        usage: Usage {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_read: n("cache_read_input_tokens"),
            cache_write: n("cache_creation_input_tokens"),
        },
    })
}

#[async_trait]
impl LlmProvider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }
    fn model(&self) -> &str {
        &self.ep.model
    }
    async fn chat(&self, req: &ChatRequest<'_>) -> Result<ChatResponse, LlmError> {
        let body = self.body(req);
        let resp = send_json(
            || {
                self.ep
                    .client
                    .post(&self.ep.url)
                    .header("x-api-key", self.ep.key.expose())
                    .header("anthropic-version", VERSION)
                    .json(&body)
            },
            self.ep.retry,
            "Anthropic",
            explain,
        )
        .await?;
        parse_response(&resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::llm::{Retry, ToolResult};
    use std::time::Duration;

    fn provider() -> Anthropic {
        Anthropic::new(EndpointConfig {
            base_url: "http://127.0.0.1:9/",
            key: crate::config::Secret::new("k"),
            model: "claude-haiku-4-5",
            timeout: Duration::from_secs(1),
            retry: Retry {
                max_retries: 0,
                max_wait: Duration::from_secs(1),
                base: Duration::from_millis(1),
            },
        })
        .unwrap()
    }

    #[test]
    fn responses_parse_with_usage_by_kind() {
        let r = parse_response(&json!({
            "content": [{"type": "text", "text": "Checking."},
                        {"type": "thinking", "thinking": "…"},
                        {"type": "tool_use", "id": "toolu_1", "name": "list_hosts", "input": {}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 7, "cache_creation_input_tokens": null}
        }))
        .unwrap();
        assert_eq!(r.text, "Checking.");
        assert_eq!(r.calls[0].name, "list_hosts");
        assert!(r.calls[0].arguments.is_ok());
        assert_eq!(
            (
                r.usage.input,
                r.usage.output,
                r.usage.cache_read,
                r.usage.cache_write
            ),
            (10, 2, 7, 0)
        );
        assert!(parse_response(&json!({"type": "message"})).is_err());
    }

    #[test]
    fn requests_follow_the_wire_format() {
        let p = provider();
        assert_eq!(p.ep.url, "http://127.0.0.1:9/v1/messages");
        let call = ToolCall::new(
            "t1".into(),
            "run_command".into(),
            "{\"host\": \"a\"}".into(),
        );
        let turns = [
            Turn::User("alert".into()),
            Turn::Assistant {
                text: String::new(),
                calls: vec![call],
            },
            Turn::ToolResults(vec![ToolResult {
                id: "t1".into(),
                name: "run_command".into(),
                content: "blocked".into(),
                is_error: true,
            }]),
            Turn::User("stopped: say what you found".into()),
        ];
        let body = p.body(&ChatRequest {
            system: "sys",
            turns: &turns,
            tools: &[],
            may_call_tools: false,
            max_tokens: 100,
        });
        // The tool result and the next user text share one user message, results first.
        let m = body["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][0]["is_error"], true);
        assert_eq!(m[2]["content"][1]["type"], "text");
        assert_eq!(m[1]["content"][0]["input"]["host"], "a");
        assert!(
            body.get("tools").is_none(),
            "a tool-less call sends no tools"
        );
        assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
    }

    #[test]
    fn errors_say_what_to_fix() {
        let e = |status: u16, body: Value| explain(StatusCode::from_u16(status).unwrap(), &body);
        assert!(e(401, json!({})).unwrap().contains("ANTHROPIC_API_KEY"));
        assert!(e(404, json!({})).unwrap().contains("[llm] model"));
        assert!(e(429, json!({"error": {"message": "slow down"}})).is_none());
        assert!(
            e(
                429,
                json!({"error": {"details": {"error_code": "enforced_spend_limit_reached"}}})
            )
            .unwrap()
            .contains("spend limit")
        );
        assert!(e(529, json!({})).is_none());
    }
}
