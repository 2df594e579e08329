//! The agent's tools. Each takes JSON arguments the model wrote (checked here: a bad
//! argument is a tool error the model can correct, never a crash) and returns text,
//! cut to `[llm] tool_output_chars` with a note. Outside text is redacted and fenced.

use std::sync::Arc;

use serde_json::{Value, json};

use super::llm::{ToolCall, ToolResult, ToolSpec};
use super::prompt::{budget, fence, redact};
use crate::config::HostConfig;
use crate::exec::runner::{CommandRunner, RunRequest};
use crate::integrations::loki::{Loki, logql_string};
use crate::integrations::prometheus::Prometheus;
use crate::pipeline::plan::RanCommand;
use crate::pipeline::step::{Refusal, StepOutcome};
use crate::runbooks::Runbooks;
use crate::safety::{Context, Source, Verdict};

/// The tool definitions, in a fixed order (part of the cached prefix).
pub fn specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "run_command",
            description: "Run one shell command on a host over SSH, through Jarvis's safety gate. Read-only commands run at once; changes may need a person's approval; dangerous ones are blocked. Returns exit code and output.",
            schema: json!({"type": "object", "properties": {
                "host": {"type": "string", "description": "a host name from list_hosts"},
                "command": {"type": "string"},
                "reason": {"type": "string", "description": "why this command, in one sentence"},
                "confidence": {"type": "number", "description": "0-100: how sure you are this is the right action"}
            }, "required": ["host", "command", "reason", "confidence"]}),
        },
        ToolSpec {
            name: "query_metric_history",
            description: "A metric's recent history from Prometheus: current, min, max, average, slope per hour, and optionally the least-squares time until it runs out.",
            schema: json!({"type": "object", "properties": {
                "metric": {"type": "string", "description": "metric name, e.g. node_filesystem_avail_bytes"},
                "promql": {"type": "string", "description": "a full PromQL expression instead of metric"},
                "instance": {"type": "string", "description": "instance label to filter on"},
                "hours": {"type": "number", "description": "how far back, 1-168 (default 6)"},
                "predict_exhaustion": {"type": "boolean"}
            }}),
        },
        ToolSpec {
            name: "query_loki_logs",
            description: "Recent log lines from Loki. container_errors: error lines of a container; service_logs: all lines of a systemd unit or job; search: lines containing text.",
            schema: json!({"type": "object", "properties": {
                "query_type": {"type": "string", "enum": ["container_errors", "service_logs", "search"]},
                "target": {"type": "string", "description": "container name, unit/job name, or text to search"},
                "minutes": {"type": "number", "description": "how far back, 1-1440 (default 30)"}
            }, "required": ["query_type", "target"]}),
        },
        ToolSpec {
            name: "get_runbook",
            description: "The runbook for an alert: investigation steps, common causes, remediation, commands.",
            schema: json!({"type": "object", "properties": {"alert_name": {"type": "string"}}, "required": ["alert_name"]}),
        },
        ToolSpec {
            name: "list_hosts",
            description: "The hosts Jarvis can run commands on, with their aliases.",
            schema: json!({"type": "object", "properties": {}}),
        },
        ToolSpec {
            name: "complete_remediation",
            description: "Finish: you fixed it (or did all you safely can). Jarvis then verifies the alert in Prometheus.",
            schema: json!({"type": "object", "properties": {
                "summary": {"type": "string"},
                "root_cause": {"type": "string"},
                "confidence": {"type": "number", "description": "0-100"},
                "expect_resolved": {"type": "boolean", "description": "true if the alert should now clear"}
            }, "required": ["summary", "root_cause", "confidence", "expect_resolved"]}),
        },
        ToolSpec {
            name: "escalate",
            description: "Finish: hand the alert to a person, saying what you found and what they should try.",
            schema: json!({"type": "object", "properties": {
                "reason": {"type": "string"},
                "suggested_next_steps": {"type": "array", "items": {"type": "string"}}
            }, "required": ["reason"]}),
        },
    ]
}

/// The Home Assistant tools, offered when `[homeassistant]` is configured.
pub fn homeassistant_specs(lists_apps: bool) -> Vec<ToolSpec> {
    let mut out = vec![
        ToolSpec {
            name: "homeassistant_state",
            description: "An entity's state in Home Assistant (sensor.*, switch.*, binary_sensor.*, ...): its state text, attributes and when it last changed.",
            schema: json!({"type": "object", "properties": {
                "entity_id": {"type": "string", "description": "domain.object_id, e.g. sensor.ups_battery"}
            }, "required": ["entity_id"]}),
        },
        ToolSpec {
            name: "homeassistant_restart_app",
            description: "Restart a Home Assistant app (add-on) by its slug, e.g. core_mosquitto. A person approves it before it runs; finish with complete_remediation if it is the fix.",
            schema: json!({"type": "object", "properties": {
                "app": {"type": "string", "description": "the app's slug"},
                "reason": {"type": "string", "description": "why, in one sentence"},
                "confidence": {"type": "number", "description": "0-100"}
            }, "required": ["app", "reason", "confidence"]}),
        },
    ];
    if lists_apps {
        out.push(ToolSpec {
            name: "homeassistant_apps",
            description: "The Home Assistant apps (add-ons) installed, with their slug, state and version.",
            schema: json!({"type": "object", "properties": {}}),
        });
    }
    out
}

/// How the agent finished.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Complete {
        summary: String,
        root_cause: String,
        confidence: f64,
        expect_resolved: bool,
    },
    Escalate {
        reason: String,
        next_steps: Vec<String>,
    },
}

/// What one alert's agent run has done so far. Owned by that run alone.
#[derive(Debug, Default)]
pub struct RunState {
    pub ran: Vec<RanCommand>,
    pub finish: Option<Finish>,
    /// Calls seen, by name and arguments: a repeat is refused, a third stops the run.
    seen: std::collections::HashMap<String, u32>,
    pub repeats_exceeded: bool,
}

/// What the tools need; shared, read-only, by every alert's run.
pub struct ToolBox {
    pub runner: Arc<CommandRunner>,
    pub hosts: Vec<HostConfig>,
    pub prometheus: Option<Arc<Prometheus>>,
    pub loki: Option<Arc<Loki>>,
    pub runbooks: Runbooks,
    pub secrets: Vec<String>,
    pub output_chars: usize,
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args[key].as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn num_arg(args: &Value, key: &str) -> Option<f64> {
    match &args[key] {
        Value::Number(n) => n.as_f64(),
        // Small models often quote numbers.
        Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
        _ => None,
    }
}

fn bool_arg(args: &Value, key: &str) -> Option<bool> {
    match &args[key] {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Confidence as a percentage (a model may answer 0.8 for 80 %).
fn percent(c: f64) -> f64 {
    if c > 0.0 && c <= 1.0 { c * 100.0 } else { c }
}

impl ToolBox {
    /// `text` without the configured secrets or anything that looks like one.
    pub fn redact(&self, text: &str) -> String {
        let known: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        redact(text, &known)
    }

    /// Output for the model: redacted, fenced when it came from outside, cut to budget.
    fn outside(&self, label: &str, text: &str) -> String {
        fence(label, &budget(&self.redact(text), self.output_chars))
    }

    /// Runs one call. Never panics on what the model sent.
    pub async fn call(
        &self,
        call: &ToolCall,
        state: &mut RunState,
        alert_event_id: &str,
    ) -> ToolResult {
        let result = |content: String, is_error: bool| ToolResult {
            id: call.id.clone(),
            name: call.name.clone(),
            content,
            is_error,
        };
        let args = match &call.arguments {
            Ok(a) => a.clone(),
            Err(e) => {
                return result(
                    format!(
                        "{e}. Call {} again with a JSON object matching its schema.",
                        call.name
                    ),
                    true,
                );
            }
        };
        let key = format!("{}:{}", call.name, canonical(&args));
        let n = state.seen.entry(key).or_insert(0);
        *n += 1;
        if *n > 1 && !matches!(call.name.as_str(), "complete_remediation" | "escalate") {
            if *n > 2 {
                state.repeats_exceeded = true;
            }
            return result(
                "You already made this exact call; its result is above. Do something different, or finish with complete_remediation or escalate.".into(),
                true,
            );
        }
        let out = match call.name.as_str() {
            "run_command" => self.run_command(&args, state, alert_event_id).await,
            "query_metric_history" => self.metric_history(&args).await,
            "query_loki_logs" => self.loki_logs(&args).await,
            "get_runbook" => self.runbook(&args),
            "list_hosts" => Ok(self.list_hosts()),
            "homeassistant_state" | "homeassistant_apps" | "homeassistant_restart_app"
                if self.runner.homeassistant().is_some() =>
            {
                self.homeassistant(&call.name, &args, state, alert_event_id)
                    .await
            }
            "complete_remediation" => finish_complete(&args, state),
            "escalate" => finish_escalate(&args, state),
            other => Err(format!(
                "there is no tool {other:?}; the tools are: {}",
                self.specs()
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        match out {
            Ok(text) => result(text, false),
            // Errors can quote what a server answered: redact them too.
            Err(text) => result(self.redact(&text), true),
        }
    }

    fn list_hosts(&self) -> String {
        let hosts: Vec<Value> = self
            .hosts
            .iter()
            .map(|h| json!({"name": h.name, "aliases": h.aliases}))
            .collect();
        Value::Array(hosts).to_string()
    }

    /// Every tool this run offers, in a fixed order (part of the cached prefix).
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut all = specs();
        if let Some(ha) = self.runner.homeassistant() {
            all.extend(homeassistant_specs(ha.lists_apps()));
        }
        all
    }

    /// The Home Assistant tools: reading is free; a restart is the
    /// `homeassistant.restart_app` action, through the gate as the LLM's (so a person
    /// approves it), recorded like `run_command`.
    async fn homeassistant(
        &self,
        name: &str,
        args: &Value,
        state: &mut RunState,
        alert_event_id: &str,
    ) -> Result<String, String> {
        let ha = self
            .runner
            .homeassistant()
            .ok_or("Home Assistant is not configured")?;
        match name {
            "homeassistant_state" => {
                let id = str_arg(args, "entity_id").ok_or("entity_id is required")?;
                let s = ha.state(id).await.map_err(|e| e.to_string())?;
                Ok(self.outside(
                    "home assistant state",
                    &serde_json::to_string_pretty(&s).unwrap_or_default(),
                ))
            }
            "homeassistant_apps" => {
                let apps = ha.apps().await.map_err(|e| e.to_string())?;
                Ok(self.outside(
                    "home assistant apps",
                    &serde_json::to_string_pretty(&apps).unwrap_or_default(),
                ))
            }
            _ => {
                let app = str_arg(args, "app").ok_or("app is required (its slug)")?;
                let command = format!(
                    "{}homeassistant.restart_app app={app}",
                    crate::exec::action::PREFIX
                );
                let mut call = args.clone();
                call["host"] = json!(crate::exec::action::APPROVAL_HOST);
                call["command"] = json!(command);
                self.run_command(&call, state, alert_event_id).await
            }
        }
    }

    async fn run_command(
        &self,
        args: &Value,
        state: &mut RunState,
        alert_event_id: &str,
    ) -> Result<String, String> {
        let host = str_arg(args, "host").ok_or("host is required (see list_hosts)")?;
        let command = str_arg(args, "command").ok_or("command is required")?;
        let confidence = num_arg(args, "confidence")
            .map(percent)
            .ok_or("confidence is required: a number 0-100")?;
        if str_arg(args, "reason").is_none() {
            return Err("reason is required: say why this command, in one sentence".into());
        }
        // The confidence tiers: below 30 % only look.
        if confidence < 30.0 {
            let (policy, cmd, h) = (
                self.runner.policy().clone(),
                command.to_owned(),
                host.to_owned(),
            );
            let verdict = tokio::task::spawn_blocking(move || {
                crate::safety::judge(
                    &cmd,
                    &Context {
                        host: Some(&h),
                        source: Source::Llm,
                        previously_verified: false,
                    },
                    &policy,
                )
                .verdict
            })
            .await
            .unwrap_or(Verdict::Blocked);
            if verdict != Verdict::Diagnostic {
                return Err(format!(
                    "not run: your confidence is {confidence:.0}; below 30 only read-only investigation is allowed. Investigate more first."
                ));
            }
        }
        let outcome = self
            .runner
            .submit(RunRequest {
                host: host.to_owned(),
                command: command.to_owned(),
                source: Source::Llm,
                previously_verified: false,
                requested_by: "llm".into(),
                alert_event_id: Some(alert_event_id.to_owned()),
                target: crate::pipeline::triage::snapshot_target(command).map(|t| t.target),
            })
            .await
            .map_err(|e| e.to_string())?;
        // One mapping of the runner's outcome, shared with the pipeline; the model is
        // told the same thing the pipeline records.
        let mut step = StepOutcome::from(outcome);
        if let StepOutcome::Completed { output, stderr, .. } = &mut step {
            *output = self.redact(output);
            *stderr = self.redact(stderr);
        }
        state.ran.push(RanCommand {
            host: Some(host.to_owned()),
            command: command.to_owned(),
            outcome: step.clone(),
        });
        match step {
            StepOutcome::Completed {
                exit_code,
                timed_out,
                output,
                ..
            } => {
                let status = if timed_out {
                    "timed out".to_owned()
                } else {
                    format!(
                        "exit code {}",
                        exit_code.map_or("none".into(), |c| c.to_string())
                    )
                };
                Ok(format!(
                    "{status}\n{}",
                    self.outside("command output", &output)
                ))
            }
            StepOutcome::AwaitingApproval {
                approval_id,
                reason,
            } => Ok(format!(
                "not run yet: it needs a person's approval ({reason}; approval {approval_id}). Do not repeat it. If it is the fix, finish with complete_remediation; Jarvis runs it once approved and then verifies."
            )),
            StepOutcome::Refused {
                refusal: Refusal::Blocked,
                why,
            } => Err(format!(
                "{why}. Do not rephrase it; choose a safer approach or escalate."
            )),
            StepOutcome::Refused {
                refusal: Refusal::RateLimited,
                why,
            } => Err(format!("not run: {why}, or escalate")),
            StepOutcome::Refused { why, .. } => Err(format!("not run: {why}; escalate")),
            StepOutcome::HostOffline => Err(format!(
                "not run: {host} is offline (SSH unreachable); escalate"
            )),
            StepOutcome::Approved { .. } | StepOutcome::NotApproved { .. } => {
                unreachable!("the runner never decides approvals for a submitted command")
            }
        }
    }

    async fn metric_history(&self, args: &Value) -> Result<String, String> {
        let prom = self
            .prometheus
            .as_ref()
            .ok_or("Prometheus is not configured; this tool is unavailable")?;
        let promql = match (str_arg(args, "promql"), str_arg(args, "metric")) {
            (Some(q), _) => q.to_owned(),
            (None, Some(m)) => {
                if !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                {
                    return Err(format!(
                        "metric {m:?} is not a metric name; use promql for expressions"
                    ));
                }
                match str_arg(args, "instance") {
                    Some(i) => format!("{m}{{instance={}}}", logql_string(i)),
                    None => m.to_owned(),
                }
            }
            (None, None) => return Err("give metric (a name) or promql".into()),
        };
        let hours = num_arg(args, "hours").unwrap_or(6.0).clamp(1.0, 168.0);
        let end = crate::domain::ids::now_ms() as f64 / 1000.0;
        let start = end - hours * 3600.0;
        let step = (hours * 3600.0 / 120.0).max(1.0);
        let series = prom
            .query_range(&promql, start, end, step)
            .await
            .map_err(|e| format!("Prometheus: {e}"))?;
        if series.is_empty() {
            return Ok(format!("no data for {promql} in the last {hours}h"));
        }
        let predict = bool_arg(args, "predict_exhaustion").unwrap_or(false);
        let mut out = Vec::new();
        for s in series.iter().take(5) {
            let mut line = json!({"labels": s.metric});
            if let Some(t) = trend(&s.points) {
                line["current"] = json!(t.current);
                line["min"] = json!(t.min);
                line["max"] = json!(t.max);
                line["avg"] = json!(t.avg);
                line["slope_per_hour"] = json!(t.slope_per_hour);
                if predict {
                    line["exhaustion"] = json!(t.exhaustion());
                }
            }
            out.push(line);
        }
        let mut text = Value::Array(out).to_string();
        if series.len() > 5 {
            text.push_str(&format!(
                "\n({} more series not shown; narrow the query)",
                series.len() - 5
            ));
        }
        Ok(budget(&text, self.output_chars))
    }

    async fn loki_logs(&self, args: &Value) -> Result<String, String> {
        let loki = self
            .loki
            .as_ref()
            .ok_or("Loki is not configured; use run_command with docker logs or journalctl")?;
        let target = str_arg(args, "target").ok_or("target is required")?;
        let minutes = num_arg(args, "minutes").unwrap_or(30.0).clamp(1.0, 1440.0) as u32;
        let t = logql_string(target);
        // LogQL cannot "or" two selectors: service_logs tries the unit, then the job.
        let queries = match str_arg(args, "query_type") {
            Some("container_errors") => vec![format!(
                "{{container={t}}} |~ \"(?i)(error|exception|fatal|panic|fail)\""
            )],
            Some("service_logs") => vec![format!("{{unit={t}}}"), format!("{{job={t}}}")],
            Some("search") => vec![format!("{{job=~\".+\"}} |= {t}")],
            other => {
                return Err(format!(
                    "query_type {other:?} is not one of container_errors, service_logs, search"
                ));
            }
        };
        let mut lines = Vec::new();
        for q in &queries {
            lines = loki
                .query_range(q, minutes, 50)
                .await
                .map_err(|e| e.to_string())?;
            if !lines.is_empty() {
                break;
            }
        }
        if lines.is_empty() {
            return Ok(format!(
                "no log lines for {target} in the last {minutes} minutes"
            ));
        }
        let text: Vec<String> = lines.iter().map(|l| l.line.clone()).collect();
        Ok(self.outside("loki logs", &text.join("\n")))
    }

    fn runbook(&self, args: &Value) -> Result<String, String> {
        let name = str_arg(args, "alert_name").ok_or("alert_name is required")?;
        match self.runbooks.find(name) {
            Some(rb) => Ok(self.outside(&format!("runbook {}", rb.alert_name), &rb.markdown)),
            None => Ok(format!("no runbook for {name}")),
        }
    }
}

fn finish_complete(args: &Value, state: &mut RunState) -> Result<String, String> {
    let summary = str_arg(args, "summary").ok_or("summary is required")?;
    let root_cause = str_arg(args, "root_cause").unwrap_or("not stated");
    let confidence = num_arg(args, "confidence").map(percent).unwrap_or(0.0);
    let expect_resolved = bool_arg(args, "expect_resolved").unwrap_or(false);
    state.finish = Some(Finish::Complete {
        summary: summary.to_owned(),
        root_cause: root_cause.to_owned(),
        confidence,
        expect_resolved,
    });
    Ok("Recorded. Jarvis verifies the alert now.".into())
}

fn finish_escalate(args: &Value, state: &mut RunState) -> Result<String, String> {
    let reason = str_arg(args, "reason").ok_or("reason is required")?;
    let next_steps = match &args["suggested_next_steps"] {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    };
    state.finish = Some(Finish::Escalate {
        reason: reason.to_owned(),
        next_steps,
    });
    Ok("Recorded. A person will be told.".into())
}

/// Arguments in a stable form (object keys sorted by serde_json's map).
fn canonical(v: &Value) -> String {
    v.to_string()
}

/// A series' summary and least-squares trend.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub current: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub slope_per_hour: f64,
}

impl Trend {
    /// When the trend reaches zero (falling) or 100 (rising, for a percentage), in
    /// hours; `None` when flat or moving away.
    pub fn exhaustion(&self) -> Value {
        let hours = |h: f64| (h * 10.0).round() / 10.0;
        if self.slope_per_hour < 0.0 && self.current > 0.0 {
            json!({"reaches_zero_in_hours": hours(self.current / -self.slope_per_hour)})
        } else if self.slope_per_hour > 0.0 && self.max <= 100.0 && self.current < 100.0 {
            json!({"reaches_100_in_hours_if_percent": hours((100.0 - self.current) / self.slope_per_hour)})
        } else {
            json!("not heading towards exhaustion")
        }
    }
}

/// Summary and slope of `(unix seconds, value)` points; `None` without points.
pub fn trend(points: &[(f64, f64)]) -> Option<Trend> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    let (&(_, current), n) = (pts.last()?, pts.len() as f64);
    let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let avg = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let (num, den) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - avg), b + (x - mx) * (x - mx))
    });
    let slope_per_sec = if den > 0.0 { num / den } else { 0.0 };
    Some(Trend {
        current,
        min,
        max,
        avg,
        slope_per_hour: slope_per_sec * 3600.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trend_is_least_squares_and_predicts_exhaustion() {
        // Free space falling 10 per hour from 100, sampled every 30 minutes.
        let pts: Vec<(f64, f64)> = (0..5)
            .map(|i| (f64::from(i) * 1800.0, 100.0 - 5.0 * f64::from(i)))
            .collect();
        let t = trend(&pts).unwrap();
        assert!((t.slope_per_hour + 10.0).abs() < 1e-9, "{t:?}");
        assert_eq!((t.current, t.min, t.max, t.avg), (80.0, 80.0, 100.0, 90.0));
        assert_eq!(t.exhaustion(), json!({"reaches_zero_in_hours": 8.0}));
        // A percentage rising 5 per hour from 80.
        let up: Vec<(f64, f64)> = (0..3)
            .map(|i| (f64::from(i) * 3600.0, 80.0 + 5.0 * f64::from(i)))
            .collect();
        assert_eq!(
            trend(&up).unwrap().exhaustion(),
            json!({"reaches_100_in_hours_if_percent": 2.0})
        );
        assert!(trend(&[]).is_none());
        assert_eq!(trend(&[(0.0, 5.0)]).unwrap().slope_per_hour, 0.0);
    }

    #[test]
    fn percentages_and_quoted_numbers() {
        assert_eq!(percent(0.8), 80.0);
        assert_eq!(percent(80.0), 80.0);
        assert_eq!(num_arg(&json!({"c": "75%"}), "c"), Some(75.0));
    }
}
