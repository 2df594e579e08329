//! OpenAI-compatible chat completions (`POST {base_url}/chat/completions`): OpenAI
//! itself, Ollama, vLLM, llama.cpp's server. Written to the portable subset: no
//! `tool_choice` (Ollama ignores it, llama.cpp takes strings only), calls detected by
//! `tool_calls` rather than `finish_reason`, `max_tokens` (what local servers read),
//! arguments parsed defensively, `usage` optional.

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::llm::{
    ChatRequest, ChatResponse, Endpoint, EndpointConfig, LlmError, LlmProvider, ToolCall, Turn,
    Usage, send_json,
};

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

pub struct OpenAi {
    ep: Endpoint,
}

impl OpenAi {
    pub fn new(c: EndpointConfig<'_>) -> anyhow::Result<Self> {
        Ok(Self {
            ep: Endpoint::new(c, DEFAULT_BASE_URL, "chat/completions")?,
        })
    }

    fn body(&self, req: &ChatRequest<'_>) -> Value {
        let mut messages = vec![json!({"role": "system", "content": req.system})];
        for turn in req.turns {
            match turn {
                Turn::User(text) => messages.push(json!({"role": "user", "content": text})),
                Turn::Assistant { text, calls } => {
                    let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                    if !calls.is_empty() {
                        m["tool_calls"] = calls
                            .iter()
                            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw_arguments}}))
                            .collect();
                    }
                    messages.push(m);
                }
                Turn::ToolResults(results) => {
                    for r in results {
                        let content = if r.is_error {
                            format!("ERROR: {}", r.content)
                        } else {
                            r.content.clone()
                        };
                        // OpenAI's schema has no `name` here; Ollama finds the call by id.
                        messages.push(
                            json!({"role": "tool", "tool_call_id": r.id, "content": content}),
                        );
                    }
                }
            }
        }
        let mut body = json!({
            "model": self.ep.model,
            "messages": messages,
            "max_tokens": req.max_tokens,
            "temperature": 0.2,
        });
        // Tools only when they may be called: local servers do not all honour
        // `tool_choice: "none"`, and OpenAI accepts tool history without definitions.
        if !req.tools.is_empty() && req.may_call_tools {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.schema}}))
                .collect();
        }
        body
    }
}

fn explain(status: StatusCode, body: &Value) -> Option<String> {
    let message = body["error"]["message"].as_str().unwrap_or("");
    match status.as_u16() {
        401 => Some(format!(
            "the OpenAI-compatible server rejected the API key (401 {message}); set OPENAI_API_KEY or [llm] api_key_file"
        )),
        404 => Some(format!(
            "the OpenAI-compatible server does not know this model or path (404 {message}); check [llm] model and base_url (it should end in /v1)"
        )),
        400 | 403 | 422 => Some(format!(
            "the OpenAI-compatible server rejected the request ({status}): {message}"
        )),
        429 if body["error"]["code"] == "insufficient_quota"
            || body["error"]["type"] == "insufficient_quota" =>
        {
            Some(format!(
                "the OpenAI account is out of quota (429 {message})"
            ))
        }
        _ => None,
    }
}

/// Parses a 200 body.
pub fn parse_response(body: &Value) -> Result<ChatResponse, LlmError> {
    let choice = &body["choices"][0];
    let message = choice.get("message").ok_or_else(|| {
        LlmError::Malformed("the OpenAI-compatible answer has no choices[0].message".into())
    })?;
    let calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let f = &c["function"];
                    let raw = match &f["arguments"] {
                        Value::String(s) => s.clone(),
                        // Some servers send an object.
                        Value::Null => "{}".to_owned(),
                        other => other.to_string(),
                    };
                    let id = c["id"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        // Unique within the turn, unlike any id a server sends.
                        .map_or_else(|| format!("jarvis_call_{i}"), str::to_owned);
                    ToolCall::new(id, f["name"].as_str().unwrap_or("").to_owned(), raw)
                })
                .collect()
        })
        .unwrap_or_default();
    let u = &body["usage"];
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    let prompt = u["prompt_tokens"].as_u64().unwrap_or(0);
    Ok(ChatResponse {
        text: message["content"].as_str().unwrap_or("").to_owned(),
        calls,
        stop: choice["finish_reason"].as_str().unwrap_or("").to_owned(),
        usage: Usage {
            input: prompt.saturating_sub(cached),
            output: u["completion_tokens"].as_u64().unwrap_or(0),
            cache_read: cached,
            cache_write: 0,
        },
    })
}

#[async_trait]
impl LlmProvider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }
    fn model(&self) -> &str {
        &self.ep.model
    }
    async fn chat(&self, req: &ChatRequest<'_>) -> Result<ChatResponse, LlmError> {
        let body = self.body(req);
        let resp = send_json(
            || {
                let r = self.ep.client.post(&self.ep.url).json(&body);
                if self.ep.key.is_empty() {
                    r
                } else {
                    r.bearer_auth(self.ep.key.expose())
                }
            },
            self.ep.retry,
            "the OpenAI-compatible server",
            explain,
        )
        .await?;
        parse_response(&resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_parse_whatever_the_server_sends() {
        let r = parse_response(&json!({
            "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{\"x\": 1}"}},
                {"type": "function", "function": {"name": "b", "arguments": {"y": 2}}},
                {"id": "", "type": "function", "function": {"name": "c", "arguments": "{broken"}}
            ]}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 40}}
        }))
        .unwrap();
        assert_eq!(
            r.calls.len(),
            3,
            "calls found by tool_calls, not finish_reason"
        );
        assert_eq!(r.calls[0].arguments.as_ref().unwrap()["x"], 1);
        assert_eq!(
            r.calls[1].id, "jarvis_call_1",
            "a missing id gets a unique one"
        );
        assert_eq!(r.calls[1].arguments.as_ref().unwrap()["y"], 2);
        assert!(r.calls[2].arguments.is_err());
        assert_eq!(r.calls[2].id, "jarvis_call_2");
        assert_eq!(
            (r.usage.input, r.usage.cache_read, r.usage.output),
            (60, 40, 5)
        );
        // No usage at all (some local servers).
        let bare = parse_response(&json!({"choices": [{"message": {"content": "hi"}}]})).unwrap();
        assert_eq!(bare.text, "hi");
        assert_eq!(bare.usage, crate::agent::llm::Usage::default());
        assert!(parse_response(&json!({"choices": []})).is_err());
    }

    #[test]
    fn quota_is_not_retried_but_rate_limits_are() {
        let e = |status: u16, body: Value| explain(StatusCode::from_u16(status).unwrap(), &body);
        assert!(
            e(
                429,
                json!({"error": {"code": "insufficient_quota", "message": "q"}})
            )
            .is_some()
        );
        assert!(e(429, json!({"error": {"message": "slow down"}})).is_none());
        assert!(e(401, json!({})).unwrap().contains("OPENAI_API_KEY"));
        assert!(e(404, json!({})).unwrap().contains("/v1"));
        assert!(e(503, json!({})).is_none());
    }
}
