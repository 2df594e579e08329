//! n8n (`shared/reference/n8n-api.md`): a workflow is started through its production
//! webhook (the public API has no "execute workflow"), with a correlation id in the
//! body; its execution is then followed through the public API until it ends.
//!
//! The execution id comes from the webhook's answer when the workflow responds with
//! `{"executionId": "{{ $execution.id }}"}` (a Respond to Webhook node), else from the
//! workflow's recent executions, by finding the one whose data carries the
//! correlation id.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{N8nConfig, N8nWorkflow};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum N8nError {
    #[error("no n8n workflow named {0:?} in [[n8n.workflows]]")]
    UnknownWorkflow(String),
    #[error(
        "n8n: the webhook of workflow {0:?} is not registered (404): is the workflow active (published)?"
    )]
    NotDeployed(String),
    #[error("n8n refused the webhook's credentials ({0}): check auth_header and auth_value")]
    WebhookAuth(u16),
    #[error("n8n refused the API key ({0}): check n8n.api_key (Settings → n8n API)")]
    ApiAuth(u16),
    #[error("n8n: {0}")]
    Api(String),
    #[error("cannot reach n8n: {0}")]
    Unreachable(String),
    #[error(
        "n8n: cannot tell which execution workflow {0:?} started (answer with $execution.id, or set workflow_id and api_key)"
    )]
    ExecutionUnknown(String),
    #[error("n8n: execution {0} did not finish within {1}s (last status {2})")]
    TimedOut(String, u64, String),
}

/// What the webhook answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Triggered {
    pub correlation_id: String,
    /// From the answer, when the workflow gives it.
    pub execution_id: Option<String>,
    pub response: Value,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub id: String,
    /// `success`, `error`, `crashed` or `canceled`.
    pub status: String,
}

impl Execution {
    pub fn succeeded(&self) -> bool {
        self.status == "success"
    }
}

#[derive(Clone)]
pub struct N8n {
    base: String,
    api_key: String,
    workflows: Vec<N8nWorkflow>,
    client: reqwest::Client,
}

/// An execution id as text (n8n gives numbers or strings, by version); only letters,
/// digits, `_` and `-`, since it goes into a URL path.
fn id_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    .then_some(s)
}

impl N8n {
    /// `None` when `[n8n] url` is not set.
    pub fn from_config(c: &N8nConfig) -> anyhow::Result<Option<Self>> {
        if c.url.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            base: c.url.trim_end_matches('/').to_owned(),
            api_key: c.api_key.expose().to_owned(),
            workflows: c.workflows.clone(),
            // No redirects: the API key and the webhook secret go to n8n only.
            client: crate::http_client_without_redirects(Duration::from_secs(60))?,
        }))
    }

    fn workflow(&self, name: &str) -> Result<&N8nWorkflow, N8nError> {
        self.workflows
            .iter()
            .find(|w| w.name == name)
            .ok_or_else(|| N8nError::UnknownWorkflow(name.into()))
    }

    /// Starts workflow `name` through its production webhook with `payload` and a
    /// fresh correlation id.
    pub async fn trigger(&self, name: &str, payload: &Value) -> Result<Triggered, N8nError> {
        let w = self.workflow(name)?;
        let correlation_id = crate::domain::ids::new_id();
        let body = json!({"correlation_id": correlation_id, "source": "jarvis", "data": payload});
        let method = match w.method.as_str() {
            "" | "POST" => reqwest::Method::POST,
            m => reqwest::Method::from_bytes(m.as_bytes()).unwrap_or(reqwest::Method::POST),
        };
        let url = format!(
            "{}/webhook/{}",
            self.base,
            w.webhook_path.trim_start_matches('/')
        );
        let mut req = self.client.request(method.clone(), url);
        req = if method == reqwest::Method::GET {
            req.query(&[("correlation_id", correlation_id.as_str())])
        } else {
            req.json(&body)
        };
        if !w.auth_header.is_empty() {
            req = req.header(w.auth_header.as_str(), w.auth_value.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| N8nError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match status {
            200..=299 => {}
            404 => return Err(N8nError::NotDeployed(name.into())),
            401 | 403 => return Err(N8nError::WebhookAuth(status)),
            _ => {
                return Err(N8nError::Api(format!(
                    "the webhook of {name:?} answered HTTP {status}: {}",
                    crate::notify::sinks::truncate(text.trim(), 200)
                )));
            }
        }
        let response: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let execution_id = ["executionId", "execution_id"]
            .iter()
            .find_map(|k| id_text(&response[*k]));
        Ok(Triggered {
            correlation_id,
            execution_id,
            response,
        })
    }

    async fn api(&self, path: &str, query: &[(&str, String)]) -> Result<Value, N8nError> {
        let resp = self
            .client
            .get(format!("{}/api/v1{path}", self.base))
            .header("X-N8N-API-KEY", &self.api_key)
            .query(query)
            .send()
            .await
            .map_err(|e| N8nError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        match status {
            200 => Ok(v),
            401 | 403 => Err(N8nError::ApiAuth(status)),
            _ => Err(N8nError::Api(format!(
                "GET /api/v1{path}: HTTP {status}: {}",
                v["message"].as_str().unwrap_or("")
            ))),
        }
    }

    /// Finds the execution of `workflow` that carries `correlation_id`, reading its
    /// recent executions page by page (cursor paging).
    pub async fn find_execution(
        &self,
        name: &str,
        correlation_id: &str,
    ) -> Result<Option<String>, N8nError> {
        let w = self.workflow(name)?;
        if w.workflow_id.is_empty() || self.api_key.is_empty() {
            return Err(N8nError::ExecutionUnknown(name.into()));
        }
        let mut cursor: Option<String> = None;
        for _ in 0..5 {
            let mut q = vec![
                ("workflowId", w.workflow_id.clone()),
                ("includeData", "true".to_owned()),
                ("limit", "50".to_owned()),
            ];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.api("/executions", &q).await?;
            for e in page["data"].as_array().into_iter().flatten() {
                if e["data"].to_string().contains(correlation_id) {
                    return Ok(id_text(&e["id"]));
                }
            }
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// Follows an execution until it ends (`success`, `error`, `crashed`, `canceled`),
    /// looking every `every`, for at most `within`.
    pub async fn follow(
        &self,
        id: &str,
        every: Duration,
        within: Duration,
    ) -> Result<Execution, N8nError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let e = self.api(&format!("/executions/{id}"), &[]).await?;
            let status = e["status"].as_str().unwrap_or("unknown").to_owned();
            if matches!(
                status.as_str(),
                "success" | "error" | "crashed" | "canceled"
            ) {
                return Ok(Execution {
                    id: id.to_owned(),
                    status,
                });
            }
            if tokio::time::Instant::now() + every > deadline {
                return Err(N8nError::TimedOut(id.into(), within.as_secs(), status));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Triggers workflow `name` and follows its execution to the end.
    pub async fn run(
        &self,
        name: &str,
        payload: &Value,
        every: Duration,
        within: Duration,
    ) -> Result<Execution, N8nError> {
        let t = self.trigger(name, payload).await?;
        let id = match t.execution_id {
            Some(id) => id,
            None => {
                // The execution may be listed a moment after the webhook answered.
                let mut found = None;
                for _ in 0..10 {
                    found = self.find_execution(name, &t.correlation_id).await?;
                    if found.is_some() {
                        break;
                    }
                    tokio::time::sleep(every.min(Duration::from_millis(500))).await;
                }
                found.ok_or_else(|| N8nError::ExecutionUnknown(name.into()))?
            }
        };
        self.follow(&id, every, within).await
    }
}
