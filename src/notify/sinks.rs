//! The four sinks, each in its service's documented wire format
//! (`shared/reference/discord-webhook.md`).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::{Kind, Message, Notifier, SendError};

/// Cuts `s` to `max` characters (not bytes), marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Reads a 429's wait: Discord's JSON `retry_after` (seconds, float), else the
/// `Retry-After` header, else one second.
async fn retry_after(resp: reqwest::Response) -> Duration {
    let header = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let body: Option<f64> = resp
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v.get("retry_after").and_then(|r| r.as_f64()));
    let secs = body.or(header).unwrap_or(1.0);
    Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
}

/// Maps an HTTP answer to the sink contract.
async fn check(resp: Result<reqwest::Response, reqwest::Error>) -> Result<(), SendError> {
    // The URL is the credential for Discord and Slack: errors must not carry it.
    let resp =
        resp.map_err(|e| SendError::Transient(format!("request failed: {}", e.without_url())))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(SendError::RetryAfter(retry_after(resp).await));
    }
    let body = resp.text().await.unwrap_or_default();
    let body = truncate(body.trim(), 200);
    if status.is_server_error() {
        Err(SendError::Transient(format!("HTTP {status}: {body}")))
    } else {
        Err(SendError::Failed(format!("HTTP {status}: {body}")))
    }
}

fn color(kind: Kind) -> u32 {
    match kind {
        Kind::Fixed | Kind::HostOnline | Kind::MaintenanceEnded => 0x2E_CC71,
        Kind::Failed | Kind::Escalated | Kind::HostOffline => 0xE7_4C3C,
        Kind::ApprovalNeeded => 0xF1_C40F,
        Kind::MaintenanceStarted | Kind::Suppressed | Kind::Digest => 0x34_98DB,
    }
}

/// Discord webhook: one embed, trimmed to Discord's limits (title 256, description
/// 4096, ≤ 25 fields of 256/1024, 6000 in all), mentions disabled.
pub struct Discord {
    pub client: reqwest::Client,
    pub url: String,
}

/// The Discord body for a message; public so tests can check the limits.
pub fn discord_body(m: &Message) -> serde_json::Value {
    let title = truncate(&m.title, 256);
    let mut budget: usize = 6000 - title.chars().count();
    let description = truncate(&m.body, 4096.min(budget.saturating_sub(200)));
    budget = budget.saturating_sub(description.chars().count());
    let mut fields = Vec::new();
    for (name, value) in m.fields.iter().take(25) {
        let (name, value) = (truncate(name, 256), truncate(value, 1024));
        let cost = name.chars().count() + value.chars().count();
        if name.trim().is_empty() || value.trim().is_empty() || cost > budget {
            continue;
        }
        budget -= cost;
        fields.push(json!({"name": name, "value": value, "inline": false}));
    }
    let mut embed = json!({
        "title": title,
        "description": description,
        "color": color(m.kind),
        "fields": fields,
        "timestamp": crate::domain::time::rfc3339(m.at),
    });
    if let Some(url) = &m.url {
        embed["url"] = json!(url);
    }
    json!({
        "username": "Jarvis",
        "allowed_mentions": {"parse": []},
        "embeds": [embed],
    })
}

#[async_trait]
impl Notifier for Discord {
    fn name(&self) -> &'static str {
        "discord"
    }
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        check(
            self.client
                .post(&self.url)
                .json(&discord_body(m))
                .send()
                .await,
        )
        .await
    }
}

/// ntfy: the message as the body of a POST to the topic URL, with title, priority and
/// tags as headers (ASCII only in headers, so non-ASCII titles are simplified).
pub struct Ntfy {
    pub client: reqwest::Client,
    pub url: String,
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[async_trait]
impl Notifier for Ntfy {
    fn name(&self) -> &'static str {
        "ntfy"
    }
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let (priority, tags) = match m.kind {
            Kind::Escalated | Kind::Failed | Kind::HostOffline => ("4", "rotating_light"),
            Kind::ApprovalNeeded => ("4", "warning"),
            Kind::Fixed | Kind::HostOnline => ("3", "white_check_mark"),
            _ => ("3", "information_source"),
        };
        let mut text = m.body.clone();
        for (k, v) in &m.fields {
            text.push_str(&format!("\n{k}: {v}"));
        }
        let mut req = self
            .client
            .post(&self.url)
            .header("Title", ascii(&truncate(&m.title, 200)))
            .header("Priority", priority)
            .header("Tags", tags)
            .body(truncate(&text, 4000));
        if let Some(url) = &m.url {
            req = req.header("Click", ascii(url));
        }
        check(req.send().await).await
    }
}

/// Slack incoming webhook: `text` for notifications plus one mrkdwn section.
pub struct Slack {
    pub client: reqwest::Client,
    pub url: String,
}

#[async_trait]
impl Notifier for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let mut text = format!("*{}*\n{}", m.title, m.body);
        for (k, v) in &m.fields {
            text.push_str(&format!("\n*{k}:* {v}"));
        }
        if let Some(url) = &m.url {
            text.push_str(&format!("\n<{url}|Open in Jarvis>"));
        }
        let body = json!({
            "text": truncate(&m.title, 300),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}}],
        });
        check(self.client.post(&self.url).json(&body).send().await).await
    }
}

/// A generic JSON POST: the message as it is.
pub struct Webhook {
    pub client: reqwest::Client,
    pub url: String,
}

#[async_trait]
impl Notifier for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        // The id is the same when a crash makes Jarvis send it again.
        let req = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &m.id)
            .json(m);
        check(req.send().await).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_bodies_stay_within_discord_limits() {
        let long = "x".repeat(10_000);
        let m = Message {
            id: "n1".into(),
            kind: Kind::Escalated,
            title: long.clone(),
            body: long.clone(),
            fields: (0..40).map(|i| (format!("f{i}"), long.clone())).collect(),
            url: Some("http://jarvis.lan/approvals".into()),
            at: 0,
            carries: Vec::new(),
        };
        let b = discord_body(&m);
        let e = &b["embeds"][0];
        let title = e["title"].as_str().unwrap().chars().count();
        let desc = e["description"].as_str().unwrap().chars().count();
        let fields = e["fields"].as_array().unwrap();
        assert!(title <= 256 && desc <= 4096 && fields.len() <= 25);
        let total: usize = title
            + desc
            + fields
                .iter()
                .map(|f| {
                    f["name"].as_str().unwrap().chars().count()
                        + f["value"].as_str().unwrap().chars().count()
                })
                .sum::<usize>();
        assert!(total <= 6000, "{total}");
        assert!(
            fields
                .iter()
                .all(|f| f["value"].as_str().unwrap().chars().count() <= 1024)
        );
        assert_eq!(b["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
