//! Scripted LLM servers speaking the real wire formats (`../shared/reference/`):
//! Anthropic Messages (`POST /v1/messages`) and OpenAI-compatible chat completions
//! (`POST /v1/chat/completions`). Each request takes the next step of the script and
//! is recorded, so tests can read exactly what Jarvis sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Anthropic,
    OpenAi,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// The model calls these tools (name, arguments).
    Calls(Vec<(&'static str, Value)>),
    /// The model calls a tool with these raw argument characters (OpenAI sends a
    /// string; Anthropic cannot send malformed input, so it gets `{}`).
    RawCall(&'static str, &'static str),
    /// The model answers in text, calling nothing.
    Text(&'static str),
    /// An HTTP error with the provider's error body, and `retry-after` seconds.
    Status(u16, Option<u32>),
    /// This step, answered after a pause (a slow model).
    Slow(std::time::Duration, Box<Step>),
}

pub fn call(name: &'static str, args: Value) -> Step {
    Step::Calls(vec![(name, args)])
}

/// Scripts by alert: a request whose conversation names the alert takes its steps.
type Routes = Arc<Mutex<Vec<(&'static str, VecDeque<Step>)>>>;

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<VecDeque<Step>>>,
    routes: Routes,
    requests: Arc<Mutex<Vec<Value>>>,
    wire: Wire,
}

pub struct ScriptedLlm {
    pub wire: Wire,
    pub addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<VecDeque<Step>>>,
}

/// Tokens each answer reports (so cost and budgets can be checked).
pub const INPUT_TOKENS: u64 = 1000;
pub const OUTPUT_TOKENS: u64 = 50;
pub const CACHE_READ_TOKENS: u64 = 400;

impl ScriptedLlm {
    pub async fn start(wire: Wire, script: Vec<Step>) -> Self {
        Self::start_routed(wire, script, Vec::new()).await
    }

    /// As `start`, with a separate script for each named alert (concurrent alerts).
    pub async fn start_routed(
        wire: Wire,
        script: Vec<Step>,
        routes: Vec<(&'static str, Vec<Step>)>,
    ) -> Self {
        let shared = Shared {
            routes: Arc::new(Mutex::new(
                routes.into_iter().map(|(k, v)| (k, v.into())).collect(),
            )),
            script: Arc::new(Mutex::new(script.into())),
            requests: Arc::default(),
            wire,
        };
        let (requests, script) = (shared.requests.clone(), shared.script.clone());
        let app = axum::Router::new()
            .route("/v1/messages", post(answer))
            .route("/v1/chat/completions", post(answer))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            wire,
            addr,
            requests,
            script,
        }
    }

    /// Adds steps to the end of the script.
    pub fn push(&self, steps: Vec<Step>) {
        self.script.lock().unwrap().extend(steps);
    }

    /// `[llm] base_url` for this server, as each provider expects it.
    pub fn base_url(&self) -> String {
        match self.wire {
            Wire::Anthropic => format!("http://{}", self.addr),
            Wire::OpenAi => format!("http://{}/v1", self.addr),
        }
    }

    /// Sets `[llm]` to use this server.
    pub fn configure(&self, c: &mut jarvis::config::Config) {
        c.llm.provider = match self.wire {
            Wire::Anthropic => "anthropic",
            Wire::OpenAi => "openai",
        }
        .into();
        c.llm.model = match self.wire {
            Wire::Anthropic => "claude-haiku-4-5",
            Wire::OpenAi => "llama3.1:8b",
        }
        .into();
        c.llm.api_key = jarvis::config::Secret::new("sk-test-0123456789abcdef");
        c.llm.base_url = self.base_url();
        c.llm.max_retries = 2;
        c.llm.max_retry_wait_seconds = 5;
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The text of every tool result Jarvis sent back, in order (read from the
    /// request with the longest history).
    pub fn tool_results(&self) -> Vec<String> {
        let Some(last) = self
            .requests()
            .into_iter()
            .max_by_key(|r| r["messages"].as_array().map_or(0, Vec::len))
        else {
            return Vec::new();
        };
        match self.wire {
            Wire::Anthropic => last["messages"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
                .filter(|b| b["type"] == "tool_result")
                .map(|b| b["content"].as_str().unwrap_or("").to_owned())
                .collect(),
            Wire::OpenAi => last["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["content"].as_str().unwrap_or("").to_owned())
                .collect(),
        }
    }

    /// The first user message of the first request (the alert's context).
    pub fn first_context(&self) -> String {
        let first = &self.requests()[0];
        match self.wire {
            Wire::Anthropic => first["messages"][0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
            Wire::OpenAi => first["messages"][1]["content"].as_str().unwrap().to_owned(),
        }
    }
}

/// The request rules the real APIs enforce with a 400 (see `../shared/reference/`).
fn invalid(wire: Wire, body: &Value) -> Option<String> {
    let messages = body["messages"].as_array()?;
    match wire {
        Wire::Anthropic => {
            let blocks = |m: &Value, kind: &str| -> Vec<String> {
                m["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|b| b["type"] == kind)
                    .map(|b| {
                        b[if kind == "tool_use" {
                            "id"
                        } else {
                            "tool_use_id"
                        }]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                    })
                    .collect()
            };
            let any_tool_blocks = messages
                .iter()
                .any(|m| !blocks(m, "tool_use").is_empty() || !blocks(m, "tool_result").is_empty());
            if any_tool_blocks && body.get("tools").is_none() {
                return Some(
                    "Requests which include `tool_use` or `tool_result` blocks must define tools."
                        .into(),
                );
            }
            if messages
                .iter()
                .any(|m| m["content"].as_array().is_some_and(Vec::is_empty))
            {
                return Some("messages: all messages must have non-empty content".into());
            }
            for (i, m) in messages.iter().enumerate() {
                let uses = blocks(m, "tool_use");
                if uses.is_empty() {
                    continue;
                }
                let answered = messages.get(i + 1).map(|n| blocks(n, "tool_result"));
                if answered.is_none_or(|a| uses.iter().any(|u| !a.contains(u))) {
                    return Some(
                        "`tool_use` ids were found without `tool_result` blocks immediately after"
                            .into(),
                    );
                }
            }
            None
        }
        Wire::OpenAi => {
            for (i, m) in messages.iter().enumerate() {
                let Some(calls) = m["tool_calls"].as_array() else {
                    continue;
                };
                let answers: Vec<&str> = messages[i + 1..]
                    .iter()
                    .take_while(|n| n["role"] == "tool")
                    .filter_map(|n| n["tool_call_id"].as_str())
                    .collect();
                if calls
                    .iter()
                    .any(|c| !answers.contains(&c["id"].as_str().unwrap_or("")))
                {
                    return Some("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'.".into());
                }
            }
            None
        }
    }
}

async fn answer(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    if let Some(message) = invalid(s.wire, &body) {
        s.requests.lock().unwrap().push(body);
        let error = match s.wire {
            Wire::Anthropic => {
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
            }
            Wire::OpenAi => {
                json!({"error": {"message": message, "type": "invalid_request_error", "code": null}})
            }
        };
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let conversation = body["messages"].to_string();
    s.requests.lock().unwrap().push(body);
    let routed = s
        .routes
        .lock()
        .unwrap()
        .iter_mut()
        .find(|(alert, _)| conversation.contains(alert))
        .map(|(_, steps)| steps.pop_front());
    let step = routed
        .unwrap_or_else(|| s.script.lock().unwrap().pop_front())
        .unwrap_or(Step::Text("script exhausted"));
    let n = s.requests.lock().unwrap().len();
    let step = match step {
        Step::Slow(pause, step) => {
            tokio::time::sleep(pause).await;
            *step
        }
        other => other,
    };
    match (s.wire, step) {
        (_, Step::Status(code, retry_after)) => {
            let status = StatusCode::from_u16(code).unwrap();
            let body = match s.wire {
                Wire::Anthropic => json!({"type": "error", "error": {"type": match code {
                    429 => "rate_limit_error", 529 => "overloaded_error", 401 => "authentication_error", _ => "api_error"
                }, "message": format!("scripted {code}")}}),
                Wire::OpenAi => {
                    json!({"error": {"message": format!("scripted {code}"), "type": "server_error", "code": null}})
                }
            };
            let mut resp = (status, Json(body)).into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            resp
        }
        (Wire::Anthropic, step) => {
            let (content, stop) = match step {
                Step::Calls(calls) => (
                    calls
                        .into_iter()
                        .enumerate()
                        .map(|(i, (name, input))| json!({"type": "tool_use", "id": format!("toolu_{n}_{i}"), "name": name, "input": input}))
                        .collect::<Vec<_>>(),
                    "tool_use",
                ),
                Step::RawCall(name, _) => (
                    vec![json!({"type": "tool_use", "id": format!("toolu_{n}_0"), "name": name, "input": {}})],
                    "tool_use",
                ),
                Step::Text(t) => (vec![json!({"type": "text", "text": t})], "end_turn"),
                Step::Status(..) | Step::Slow(..) => unreachable!("handled above"),
            };
            Json(json!({
                "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": content, "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": CACHE_READ_TOKENS}
            }))
            .into_response()
        }
        (Wire::OpenAi, step) => {
            let (message, finish) = match step {
                Step::Calls(calls) => (
                    json!({"role": "assistant", "content": null, "tool_calls": calls.into_iter().enumerate().map(|(i, (name, args))| {
                        json!({"id": format!("call_{n}_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                    }).collect::<Vec<_>>()}),
                    "tool_calls",
                ),
                Step::RawCall(name, raw) => (
                    json!({"role": "assistant", "content": null, "tool_calls": [
                        {"id": format!("call_{n}_0"), "type": "function", "function": {"name": name, "arguments": raw}}]}),
                    "tool_calls",
                ),
                Step::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
                Step::Status(..) | Step::Slow(..) => unreachable!("handled above"),
            };
            Json(json!({
                "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 1_714_557_600, "model": "llama3.1:8b",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": INPUT_TOKENS + CACHE_READ_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                          "total_tokens": INPUT_TOKENS + CACHE_READ_TOKENS + OUTPUT_TOKENS,
                          "prompt_tokens_details": {"cached_tokens": CACHE_READ_TOKENS}}
            }))
            .into_response()
        }
    }
}

/// An in-process Loki answering `query_range` with these lines (Loki's format), and
/// recording the LogQL it was asked.
pub async fn loki(lines: Vec<(&'static str, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let a = asked.clone();
    let app = axum::Router::new().route(
        "/loki/api/v1/query_range",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| {
                let a = a.clone();
                let lines = lines.clone();
                async move {
                    a.lock()
                        .unwrap()
                        .push(q.get("query").cloned().unwrap_or_default());
                    let values: Vec<Value> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, (_, l))| json!([format!("17145576000000000{i:02}"), l]))
                        .collect();
                    let container = lines.first().map(|(c, _)| *c).unwrap_or("");
                    Json(
                        json!({"status": "success", "data": {"resultType": "streams", "result": [
                        {"stream": {"container": container}, "values": values}
                    ], "stats": {}}}),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), asked)
}
