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
            body["tools"] = req
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}))
                .collect();
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
