//! The LLM agent: asked by the pipeline (through the `Planner` seam) only when no
//! pattern and no hint applies. A bounded tool-calling loop over any `LlmProvider`:
//! the model investigates and acts through `run_command` (every command through the
//! safety gate as source `llm`), then finishes with `complete_remediation` or
//! `escalate`. The pipeline records what it ran and verifies it in Prometheus; it never
//! runs the model's commands a second time.
//!
//! Bounded on every axis: `max_iterations` calls, `max_seconds_per_alert` wall clock,
//! repeated identical calls refused and then stopped, a per-tool output budget, and a
//! daily spending budget (then pattern-only mode, said once). Each alert's run owns its
//! conversation and state; nothing mutable is shared between concurrent alerts.

pub mod anthropic;
pub mod llm;
pub mod openai;
pub mod prompt;
pub mod tools;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::config::{Config, LlmConfig, Price, default_prices};
use crate::domain::ids::{new_id, now_ms};
use crate::exec::runner::CommandRunner;
use crate::integrations::loki::Loki;
use crate::integrations::prometheus::Prometheus;
use crate::metrics::Metrics;
use crate::notify::{Kind, Message, Notifications};
use crate::pipeline::plan::{Plan, PlanContext, PlanSource, Planner};
use crate::runbooks::Runbooks;
use crate::store::{FeedbackRow, LlmUsageRow, RemediationFilter, Store};
use llm::{ChatRequest, ChatResponse, LlmError, LlmProvider, Retry, ToolSpec, Turn, Usage};
use prompt::{SYSTEM, budget, fence};
use tools::{Finish, RunState, ToolBox};

/// What `/health` shows about the LLM.
#[derive(Debug, Clone, Default)]
pub struct LlmHealth {
    inner: Arc<Mutex<HealthInner>>,
}

#[derive(Debug, Clone, Default)]
struct HealthInner {
    state: &'static str,
    detail: String,
    at: i64,
}

impl LlmHealth {
    fn set(&self, state: &'static str, detail: impl Into<String>) {
        if let Ok(mut h) = self.inner.lock() {
            *h = HealthInner {
                state,
                detail: detail.into(),
                at: now_ms(),
            };
        }
    }

    /// `{"state": "ok"|"unavailable"|"rejected"|"budget_exhausted"|"unused", ...}`.
    pub fn snapshot(&self) -> Value {
        let h = self.inner.lock().map(|h| h.clone()).unwrap_or_default();
        json!({
            "state": if h.state.is_empty() { "unused" } else { h.state },
            "detail": h.detail,
            "since": h.at,
        })
    }
}

/// The provider named in `[llm]`, or `None` for `provider = "none"`.
pub fn provider_from_config(c: &LlmConfig) -> anyhow::Result<Option<Arc<dyn LlmProvider>>> {
    let timeout = Duration::from_secs(c.timeout_seconds);
    let retry = Retry {
        max_retries: c.max_retries,
        max_wait: Duration::from_secs(c.max_retry_wait_seconds),
        base: Duration::from_millis(500),
    };
    let ep = || llm::EndpointConfig {
        base_url: &c.base_url,
        key: c.api_key.clone(),
        model: &c.model,
        timeout,
        retry,
    };
    Ok(match c.provider.as_str() {
        "anthropic" => Some(Arc::new(anthropic::Anthropic::new(ep())?)),
        "openai" => Some(Arc::new(openai::OpenAi::new(ep())?)),
        _ => None,
    })
}

/// The price of one call, from the configured table (prefix match on the model name,
/// longest wins) over the shipped defaults.
pub fn cost_usd(prices: &std::collections::BTreeMap<String, Price>, model: &str, u: Usage) -> f64 {
    let Some(p) = prices
        .iter()
        .filter(|(k, _)| model.starts_with(k.as_str()))
        .max_by_key(|(k, _)| k.len())
        .map(|(_, p)| *p)
    else {
        return 0.0;
    };
    let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
    per(u.input, p.input)
        + per(u.output, p.output)
        + per(u.cache_read, p.cache_read.unwrap_or(p.input * 0.1))
        + per(u.cache_write, p.cache_write.unwrap_or(p.input * 1.25))
}

/// Why a call is made: what it may do, and its label in llm_usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A step of the loop: tools offered.
    Agent,
    /// The last, best-answer call after a limit: tools defined, none may be called.
    Final,
    /// The review after an escalation: a fresh conversation without tools.
    Feedback,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Final => "final",
            Self::Feedback => "feedback",
        }
    }
}

/// Start of the current UTC day, epoch ms (the budget's period).
fn day_start(now: i64) -> i64 {
    now - now.rem_euclid(86_400_000)
}

pub struct Agent {
    provider: Arc<dyn LlmProvider>,
    tools: ToolBox,
    specs: Vec<ToolSpec>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    notify: Arc<Notifications>,
    cfg: LlmConfig,
    prices: std::collections::BTreeMap<String, Price>,
    health: LlmHealth,
    /// The UTC day the "budget spent" notice went out (once a day).
    budget_told: Mutex<Option<i64>>,
    reviews: ReviewLimit,
}

/// One review per alert name per hour, and at most this many an hour in all.
const REVIEWS_PER_HOUR: usize = 20;

/// Escalation reviews allowed: a storm of escalations must not become a storm of LLM
/// calls.
#[derive(Default)]
struct ReviewLimit {
    /// Alert name → when it last got a review (epoch ms).
    seen: Mutex<std::collections::HashMap<String, i64>>,
}

impl ReviewLimit {
    /// Whether `alert_name` may get a review at `now` (and counts it).
    fn allow(&self, alert_name: &str, now: i64) -> bool {
        let hour_ago = now - 3_600_000;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, at| *at > hour_ago);
        if seen.contains_key(alert_name) || seen.len() >= REVIEWS_PER_HOUR {
            return false;
        }
        seen.insert(alert_name.to_owned(), now);
        true
    }
}

/// Everything the agent needs from the application.
pub struct AgentParts {
    pub provider: Arc<dyn LlmProvider>,
    pub runner: Arc<CommandRunner>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub notify: Arc<Notifications>,
    pub runbooks: Runbooks,
    pub health: LlmHealth,
}

/// The secrets in the configuration, so they can be redacted wherever they appear.
fn config_secrets(c: &Config) -> Vec<String> {
    let mut s = vec![
        c.llm.api_key.expose().to_owned(),
        c.webhook.password.expose().to_owned(),
        c.notify.discord.webhook_url.expose().to_owned(),
        c.notify.slack.webhook_url.expose().to_owned(),
        c.notify.ntfy.url.clone(),
        c.notify.webhook.url.clone(),
        c.homeassistant.token.expose().to_owned(),
        c.homeassistant.supervisor_token.expose().to_owned(),
        c.n8n.api_key.expose().to_owned(),
    ];
    s.extend(
        c.n8n
            .workflows
            .iter()
            .map(|w| w.auth_value.expose().to_owned()),
    );
    if let Ok(u) = url::Url::parse(c.database.url.expose())
        && let Some(pw) = u.password()
    {
        s.push(pw.to_owned());
    }
    s.retain(|x| x.len() >= 4);
    s
}

impl Agent {
    pub fn new(config: &Config, parts: AgentParts) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(10);
        let prometheus = (!config.prometheus.url.is_empty())
            .then(|| Prometheus::new(&config.prometheus.url, timeout).map(Arc::new))
            .transpose()?;
        let loki = (!config.loki.url.is_empty())
            .then(|| Loki::new(&config.loki.url, timeout).map(Arc::new))
            .transpose()?;
        let mut prices = default_prices();
        prices.extend(config.llm.prices.clone());
        let tools = ToolBox {
            runner: parts.runner,
            hosts: config.hosts.clone(),
            prometheus,
            loki,
            runbooks: parts.runbooks,
            secrets: config_secrets(config),
            output_chars: config.llm.tool_output_chars,
        };
        Ok(Self {
            provider: parts.provider,
            specs: tools.specs(),
            tools,
            store: parts.store,
            metrics: parts.metrics,
            notify: parts.notify,
            cfg: config.llm.clone(),
            prices,
            health: parts.health,
            budget_told: Mutex::new(None),
            reviews: ReviewLimit::default(),
        })
    }

    /// `Err` with a message when today's budget is spent (and says so once a day).
    async fn within_budget(&self) -> Result<(), String> {
        let now = now_ms();
        let spent = match self.store.llm_totals(day_start(now)).await {
            Ok(t) => t.cost_usd,
            Err(e) => return Err(format!("cannot read today's LLM spending: {e}")),
        };
        if spent < self.cfg.daily_budget_usd {
            return Ok(());
        }
        let why = format!(
            "the LLM daily budget (${:.2}) is spent (${spent:.2} today): pattern-only mode until 00:00 UTC",
            self.cfg.daily_budget_usd
        );
        self.health.set("budget_exhausted", why.clone());
        let day = day_start(now);
        let first = {
            let mut told = self.budget_told.lock().unwrap_or_else(|p| p.into_inner());
            let first = *told != Some(day);
            *told = Some(day);
            first
        };
        if first {
            tracing::warn!(
                spent,
                budget = self.cfg.daily_budget_usd,
                "LLM daily budget spent; pattern-only mode."
            );
            self.notify
                .send_now(Message::new(
                    Kind::Escalated,
                    "LLM budget spent: pattern-only mode",
                    why.clone(),
                ))
                .await;
        }
        Err(why)
    }

    /// One provider call, recorded in llm_usage and the metrics.
    async fn chat(
        &self,
        event: (&str, &str),
        purpose: Purpose,
        turns: &[Turn],
    ) -> Result<ChatResponse, LlmError> {
        let req = ChatRequest {
            system: SYSTEM,
            turns,
            tools: if purpose == Purpose::Feedback {
                &[]
            } else {
                &self.specs
            },
            may_call_tools: purpose == Purpose::Agent,
            max_tokens: self.cfg.max_tokens,
        };
        let r = self.provider.chat(&req).await;
        let model = self.provider.model().to_owned();
        let (status, usage) = match &r {
            Ok(resp) => ("ok", resp.usage),
            Err(e) => (e.kind(), Usage::default()),
        };
        self.metrics.llm_call(
            &model,
            status,
            [
                ("input", usage.input),
                ("output", usage.output),
                ("cache_read", usage.cache_read),
                ("cache_write", usage.cache_write),
            ],
        );
        let row = LlmUsageRow {
            id: new_id(),
            alert_event_id: event.0.to_owned(),
            alert_name: event.1.to_owned(),
            provider: self.provider.name().to_owned(),
            model: model.clone(),
            purpose: purpose.as_str().to_owned(),
            status: status.to_owned(),
            input_tokens: usage.input as i64,
            output_tokens: usage.output as i64,
            cache_read_tokens: usage.cache_read as i64,
            cache_write_tokens: usage.cache_write as i64,
            cost_usd: cost_usd(&self.prices, &model, usage),
            created_at: now_ms(),
        };
        if let Err(e) = self.store.insert_llm_usage(&row).await {
            tracing::warn!(error = %e, "Cannot record LLM usage.");
        }
        match &r {
            Ok(_) => self.health.set("ok", ""),
            Err(LlmError::Rejected(m)) => self.health.set("rejected", m.clone()),
            Err(e) => self.health.set("unavailable", e.to_string()),
        }
        r
    }

    /// The alert's context: the first user turn.
    async fn context(&self, ctx: &PlanContext<'_>) -> String {
        let e = ctx.event;
        let r = |s: &str| self.tools.redact(s);
        let mut out = format!(
            "Alert {} is firing (since {}).\nLabels: {}\nHost: {}\n",
            e.alertname,
            chrono::DateTime::from_timestamp_millis(e.starts_at)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            r(&serde_json::to_string(ctx.labels).unwrap_or_default()),
            ctx.host.map_or_else(
                || "not determined from the labels (see list_hosts)".to_owned(),
                str::to_owned
            ),
        );
        let hosts: Vec<&str> = self.tools.hosts.iter().map(|h| h.name.as_str()).collect();
        out.push_str(&format!(
            "Hosts you can run commands on: {}\n",
            hosts.join(", ")
        ));
        if !ctx.annotations.is_empty() {
            out.push_str(&fence(
                "alert annotations",
                &r(&serde_json::to_string(ctx.annotations).unwrap_or_default()),
            ));
            out.push('\n');
        }
        let budget_chars = self.cfg.tool_output_chars;
        if let Some(rb) = self.tools.runbooks.find(&e.alertname) {
            out.push_str(&fence(
                &format!("runbook {}", rb.alert_name),
                &budget(&r(&rb.markdown), budget_chars),
            ));
            out.push('\n');
        }
        // What was tried before for this alert.
        if let Ok(history) = self
            .store
            .list_remediations(&RemediationFilter {
                limit: 5,
                alert_name: Some(e.alertname.clone()),
                ..RemediationFilter::default()
            })
            .await
            && !history.is_empty()
        {
            let mut text = String::new();
            for h in history {
                text.push_str(&format!(
                    "- {} via {} on {}: {} ({})\n",
                    h.commands_executed,
                    h.source,
                    h.host,
                    if h.success && h.verified {
                        "worked, verified"
                    } else if h.success {
                        "exit 0, not verified"
                    } else {
                        "failed"
                    },
                    budget(&h.error_message, 200),
                ));
            }
            // Error messages quote command output: outside text.
            out.push_str("History of this alert (newest first):\n");
            out.push_str(&fence("remediation history", &r(&text)));
            out.push('\n');
        }
        if !ctx.failures.is_empty() {
            let text: String = ctx
                .failures
                .iter()
                .take(5)
                .map(|f| format!("- {}: {}\n", f.commands, budget(&f.reason, 200)))
                .collect();
            out.push_str("Do not repeat these; they failed for this alert:\n");
            out.push_str(&fence("failure memory", &r(&text)));
            out.push('\n');
        }
        if !ctx.learned.is_empty() {
            out.push_str("Fixes that worked before but are not yet trusted:\n");
            for p in ctx.learned.iter().take(3) {
                out.push_str(&format!(
                    "- {} ({} verified successes, {} failures)\n",
                    p.commands, p.verified_successes, p.failure_count
                ));
            }
        }
        if let Ok(incidents) = self.store.list_incidents(20).await
            && let Some(i) = incidents.iter().find(|i| {
                i.state == "open"
                    && (i.root_fingerprint == e.fingerprint
                        || i.related_alerts.contains(&e.fingerprint))
            })
        {
            out.push_str(&format!(
                "Correlated incident ({}), root cause alert {}: related {}\n",
                i.correlation_type, i.root_cause_alert, i.related_alerts
            ));
        }
        // The alert's own expression, from its generator URL: its recent trend.
        if let Some(expr) = generator_expr(&e.generator_url)
            && let Some(prom) = &self.tools.prometheus
        {
            let end = now_ms() as f64 / 1000.0;
            if let Ok(series) = prom.query_range(&expr, end - 3600.0, end, 60.0).await
                && let Some(t) = series.first().and_then(|s| tools::trend(&s.points))
            {
                out.push_str(&format!(
                    "Alert expression `{expr}` over the last hour: current {:.3}, min {:.3}, max {:.3}, slope {:.3}/h\n",
                    t.current, t.min, t.max, t.slope_per_hour
                ));
            }
        }
        if let (Some(loki), Some(c)) = (&self.tools.loki, ctx.labels.get("container"))
            && let Ok(lines) = loki
                .query_range(
                    &format!(
                        "{{container={}}} |~ \"(?i)(error|fatal|panic)\"",
                        crate::integrations::loki::logql_string(c)
                    ),
                    15,
                    10,
                )
                .await
            && !lines.is_empty()
        {
            let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
            out.push_str(&fence(
                "recent error logs",
                &budget(&r(&text.join("\n")), budget_chars),
            ));
            out.push('\n');
        }
        out.push_str("Investigate, then fix or escalate.");
        out
    }

    /// The loop for one alert.
    async fn run(&self, ctx: &PlanContext<'_>) -> Result<Option<Plan>, String> {
        self.within_budget().await?;
        let e = ctx.event;
        let who = (e.id.as_str(), e.alertname.as_str());
        let mut turns = vec![Turn::User(self.context(ctx).await)];
        let mut state = RunState::default();
        let deadline = Instant::now() + Duration::from_secs(self.cfg.max_seconds_per_alert);
        let mut final_text = String::new();
        let mut limit: Option<String> = None;
        let mut failure: Option<String> = None;
        for i in 0..self.cfg.max_iterations {
            if i > 0
                && let Err(why) = self.within_budget().await
            {
                limit = Some(why);
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let resp =
                match tokio::time::timeout(left, self.chat(who, Purpose::Agent, &turns)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(err)) => {
                        failure = Some(err.to_string());
                        break;
                    }
                    Err(_) => {
                        limit = Some(format!(
                            "the time limit ({}s, llm.max_seconds_per_alert)",
                            self.cfg.max_seconds_per_alert
                        ));
                        break;
                    }
                };
            final_text = resp.text.clone();
            let calls = resp.calls.clone();
            if calls.is_empty() {
                // Not kept in the history: an empty assistant turn is a 400 at Anthropic.
                if !resp.text.is_empty() {
                    turns.push(Turn::Assistant {
                        text: resp.text,
                        calls,
                    });
                }
                break;
            }
            turns.push(Turn::Assistant {
                text: resp.text,
                calls: calls.clone(),
            });
            let mut results = Vec::with_capacity(calls.len());
            for call in &calls {
                // Every call gets an answer, even after a finish (the API requires it).
                results.push(self.tools.call(call, &mut state, &e.id).await);
            }
            turns.push(Turn::ToolResults(results));
            if state.finish.is_some() {
                break;
            }
            if state.repeats_exceeded {
                limit = Some("repeated identical tool calls".into());
                break;
            }
            if Instant::now() >= deadline {
                limit = Some(format!(
                    "the time limit ({}s, llm.max_seconds_per_alert)",
                    self.cfg.max_seconds_per_alert
                ));
                break;
            }
            if i + 1 == self.cfg.max_iterations {
                limit = Some(format!(
                    "the iteration limit ({}, llm.max_iterations)",
                    self.cfg.max_iterations
                ));
            }
        }
        if let Some(why) = &limit
            && state.finish.is_none()
            && self.within_budget().await.is_ok()
        {
            // One last call without tools, for the best answer so far.
            turns.push(Turn::User(format!(
                "Stopped: {why}. Without tools, in a few sentences: what did you find, and should what you ran fix the alert?"
            )));
            if let Ok(r) = self.chat(who, Purpose::Final, &turns).await {
                final_text = r.text;
            }
        }
        self.conclude(ctx, state, final_text, limit, failure)
    }

    /// Turns the run's end into a plan for the pipeline, or the reason there is none.
    fn conclude(
        &self,
        ctx: &PlanContext<'_>,
        state: RunState,
        final_text: String,
        limit: Option<String>,
        failure: Option<String>,
    ) -> Result<Option<Plan>, String> {
        let changed = state.ran.iter().any(|r| r.changed_something());
        let ran_list = || {
            state
                .ran
                .iter()
                .map(|r| format!("`{}`", r.command))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = budget(final_text.trim(), 600);
        let plan = |description: String| {
            let host = state
                .ran
                .iter()
                .rev()
                .find_map(|r| r.host.clone())
                .or_else(|| ctx.host.map(str::to_owned));
            Ok(Some(Plan {
                source: PlanSource::Llm,
                host,
                commands: Vec::new(),
                pattern_id: None,
                learned: false,
                description,
                ran: state.ran.clone(),
                seen_firing_before: false,
            }))
        };
        match (&state.finish, failure) {
            (Some(Finish::Escalate { reason, next_steps }), _) => {
                let mut why = format!("the LLM agent escalated: {reason}");
                if !next_steps.is_empty() {
                    why.push_str(&format!("; suggested: {}", next_steps.join("; ")));
                }
                if !state.ran.is_empty() {
                    why.push_str(&format!(" (it ran {})", ran_list()));
                }
                Err(why)
            }
            (
                Some(Finish::Complete {
                    summary,
                    root_cause,
                    confidence,
                    ..
                }),
                _,
            ) if changed => plan(format!(
                "LLM: {summary} (root cause: {root_cause}; confidence {confidence:.0}%)"
            )),
            (Some(Finish::Complete { summary, .. }), _) => Err(format!(
                "the LLM agent changed nothing: {summary}{}",
                if state.ran.is_empty() {
                    String::new()
                } else {
                    format!(" (it ran {})", ran_list())
                }
            )),
            (None, _) if changed => plan(format!(
                "LLM, stopped by {}: {text}",
                limit
                    .as_deref()
                    .unwrap_or("the model ending without finishing")
            )),
            (None, Some(f)) => Err(format!(
                "the LLM is unavailable ({f}): pattern-only mode, and no pattern or hint matches"
            )),
            (None, None) => Err(format!(
                "the LLM agent found no fix{}{}",
                limit.map(|l| format!(" ({l})")).unwrap_or_default(),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            )),
        }
    }

    /// After an escalation: one call for a likely root cause and suggested commands,
    /// stored for review. Never executed.
    async fn feedback(&self, event_id: String, alert_name: String, reason: String) {
        // Not while the provider is failing or refusing: the call would fail too.
        let state = self.health.snapshot()["state"].clone();
        if state == "unavailable"
            || state == "rejected"
            || !self.reviews.allow(&alert_name, now_ms())
        {
            return;
        }
        if self.within_budget().await.is_err() {
            return;
        }
        let turns = [Turn::User(format!(
            "Alert {alert_name} was escalated to a person. Why:\n{}\n\
             Reply with JSON only: {{\"root_cause\": \"...\", \"suggested_commands\": [\"...\"]}} \
             (the commands are for a person to review; they are not run).",
            fence("escalation reason", &self.tools.redact(&reason))
        ))];
        let Ok(resp) = self
            .chat((&event_id, &alert_name), Purpose::Feedback, &turns)
            .await
        else {
            return;
        };
        let (root_cause, commands) = parse_feedback(&resp.text);
        let row = FeedbackRow {
            id: new_id(),
            alert_event_id: event_id,
            alert_name,
            root_cause,
            suggested_commands: serde_json::to_string(&commands).unwrap_or_default(),
            reviewed: false,
            created_at: now_ms(),
        };
        if let Err(e) = self.store.insert_feedback(&row).await {
            tracing::warn!(error = %e, "Cannot store the LLM's escalation review.");
        }
    }
}

/// `{"root_cause", "suggested_commands"}` from the model's reply, tolerating prose and
/// code fences around the JSON; otherwise the whole text as the root cause.
pub fn parse_feedback(text: &str) -> (String, Vec<String>) {
    let json = text
        .find('{')
        .zip(text.rfind('}'))
        .and_then(|(a, b)| serde_json::from_str::<Value>(&text[a..=b]).ok());
    match json {
        Some(v) if v["root_cause"].is_string() => (
            v["root_cause"].as_str().unwrap_or("").to_owned(),
            v["suggested_commands"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => (budget(text.trim(), 2000), Vec::new()),
    }
}

/// The PromQL expression in a Prometheus generator URL (`...graph?g0.expr=...`).
pub fn generator_expr(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    u.query_pairs()
        .find(|(k, _)| k == "g0.expr")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

#[async_trait]
impl Planner for Agent {
    fn name(&self) -> &'static str {
        "llm"
    }

    async fn plan(&self, ctx: &PlanContext<'_>) -> Result<Option<Plan>, String> {
        self.run(ctx).await
    }

    fn runs_commands(&self) -> bool {
        true
    }

    async fn after_escalation(&self, event_id: &str, alert_name: &str, reason: &str) {
        // The agent's own escalation already says what it found: store it without
        // another call.
        if let Some(rest) = reason.strip_prefix("the LLM agent escalated: ") {
            let (cause, steps) = rest.split_once("; suggested: ").unwrap_or((rest, ""));
            let row = FeedbackRow {
                id: new_id(),
                alert_event_id: event_id.to_owned(),
                alert_name: alert_name.to_owned(),
                root_cause: cause.to_owned(),
                suggested_commands: serde_json::to_string(
                    &steps
                        .split("; ")
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>(),
                )
                .unwrap_or_default(),
                reviewed: false,
                created_at: now_ms(),
            };
            let _ = self.store.insert_feedback(&row).await;
            return;
        }
        self.feedback(
            event_id.to_owned(),
            alert_name.to_owned(),
            reason.to_owned(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_match_the_longest_prefix_and_default_cache_rates() {
        let mut prices = default_prices();
        prices.insert(
            "claude-haiku-4-5-special".into(),
            Price {
                input: 2.0,
                output: 10.0,
                cache_read: Some(0.0),
                cache_write: None,
            },
        );
        let u = Usage {
            input: 1_000_000,
            output: 1_000_000,
            cache_read: 1_000_000,
            cache_write: 1_000_000,
        };
        // haiku 4.x: 1 + 5 + 0.1 + 1.25
        assert!((cost_usd(&prices, "claude-haiku-4-5", u) - 7.35).abs() < 1e-9);
        assert!((cost_usd(&prices, "claude-haiku-4-5-special", u) - 14.5).abs() < 1e-9);
        assert_eq!(cost_usd(&prices, "llama3.1:8b", u), 0.0);
    }

    #[test]
    fn feedback_json_is_found_in_prose() {
        let (cause, cmds) = parse_feedback(
            "Sure:\n```json\n{\"root_cause\": \"disk full\", \"suggested_commands\": [\"df -h\"]}\n```",
        );
        assert_eq!(cause, "disk full");
        assert_eq!(cmds, ["df -h"]);
        assert_eq!(parse_feedback("no idea").0, "no idea");
    }

    #[test]
    fn generator_urls_give_the_expression() {
        assert_eq!(
            generator_expr(
                "http://prom:9090/graph?g0.expr=up%7Bjob%3D%22svc%22%7D+%3D%3D+0&g0.tab=1"
            )
            .as_deref(),
            Some("up{job=\"svc\"} == 0")
        );
        assert_eq!(generator_expr(""), None);
    }

    #[test]
    fn reviews_are_limited_per_alert_and_per_hour() {
        let l = ReviewLimit::default();
        assert!(l.allow("A", 0));
        assert!(!l.allow("A", 1000), "one per alert name an hour");
        assert!(l.allow("A", 3_600_001));
        for i in 0..REVIEWS_PER_HOUR - 1 {
            assert!(l.allow(&format!("N{i}"), 3_600_002));
        }
        assert!(!l.allow("Z", 3_600_003), "the hourly cap holds");
    }

    #[test]
    fn the_budget_day_is_utc() {
        assert_eq!(day_start(86_400_000 + 5), 86_400_000);
    }
}
