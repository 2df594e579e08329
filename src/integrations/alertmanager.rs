//! Alertmanager API v2: silences, so a maintenance window also keeps Alertmanager's
//! own receivers quiet (`shared/reference/alertmanager-api-v2.md`).

use std::time::Duration;

use serde_json::json;

use crate::domain::time::rfc3339;

#[derive(Clone)]
pub struct Alertmanager {
    base: String,
    client: reqwest::Client,
}

/// One silence matcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
}

/// Escapes a literal for Alertmanager's (RE2, anchored) regular expressions.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A host glob (`192.168.0.11:*`) as an anchored regular expression.
pub fn glob_regex(glob: &str) -> String {
    glob.split('*')
        .map(regex_escape)
        .collect::<Vec<_>>()
        .join(".*")
}

impl Alertmanager {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            client: crate::http_client(timeout)?,
        })
    }

    /// Creates a silence; returns its id.
    pub async fn create_silence(
        &self,
        matchers: &[Matcher],
        starts_at: i64,
        ends_at: i64,
        created_by: &str,
        comment: &str,
    ) -> anyhow::Result<String> {
        let body = json!({
            "matchers": matchers.iter().map(|m| json!({
                "name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": true
            })).collect::<Vec<_>>(),
            "startsAt": rfc3339(starts_at),
            "endsAt": rfc3339(ends_at),
            "createdBy": if created_by.is_empty() { "jarvis" } else { created_by },
            "comment": comment,
        });
        let resp = self
            .client
            .post(format!("{}/api/v2/silences", self.base))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("Alertmanager refused the silence (HTTP {status}): {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        v.get("silenceID")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("Alertmanager answered without a silenceID: {text}"))
    }

    /// Expires a silence; one that is already gone counts as expired.
    pub async fn expire_silence(&self, id: &str) -> anyhow::Result<()> {
        let resp = self
            .client
            .delete(format!("{}/api/v2/silence/{id}", self.base))
            .send()
            .await?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            anyhow::bail!(
                "Alertmanager did not expire silence {id} (HTTP {status}): {}",
                resp.text().await.unwrap_or_default()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_regexes_with_literals_escaped() {
        assert_eq!(glob_regex("192.168.0.11:*"), r"192\.168\.0\.11:.*");
        assert_eq!(glob_regex("nexus"), "nexus");
        assert_eq!(regex_escape("a|b(c)"), r"a\|b\(c\)");
    }
}
