//! Typed actions: plan steps that are not shell commands but calls through an
//! integration (`homeassistant.restart_app app=core_mosquitto`). They pass the same
//! policy as commands: a verdict per source, rate limits and circuit breakers, the
//! audit log and approvals; an approval shows the action's text.
//!
//! In a plan an action is the step's text prefixed with `@` (so learning, failure
//! memory and the remediation log keep treating steps as text):
//! `@homeassistant.restart_app app=core_mosquitto`.

use std::collections::BTreeMap;

use crate::safety::{Judgement, Source, Verdict};

/// What marks a plan step as an action.
pub const PREFIX: char = '@';
/// The approval row's `host` for an action (there is no host: the integration is).
pub const APPROVAL_HOST: &str = "@action";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Restart a Home Assistant app (add-on): `app=<slug>`.
    HaRestartApp,
    /// Call a Home Assistant service: `service=<domain.service>`, other arguments are
    /// its data.
    HaCallService,
    /// Start an n8n workflow and follow it to its end: `workflow=<name>`.
    N8nTrigger,
}

crate::text_enum!(ActionKind, "action", {
    HaRestartApp => "homeassistant.restart_app",
    HaCallService => "homeassistant.call_service",
    N8nTrigger => "n8n.trigger",
});

/// One action with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub args: BTreeMap<String, String>,
}

impl Action {
    /// Reads `kind key=value ...` (values without spaces). An unknown kind, a missing
    /// argument or a malformed one is an error that says which.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_start_matches(PREFIX);
        let mut words = text.split_whitespace();
        let kind = ActionKind::parse(words.next().unwrap_or_default()).map_err(|e| {
            let known: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("{e}; known actions: {}", known.join(", "))
        })?;
        let mut args = BTreeMap::new();
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("{kind}: {w:?} is not key=value"))?;
            let key_ok = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok || v.is_empty() || v.chars().any(|c| c.is_control()) {
                return Err(format!("{kind}: {w:?} is not key=value"));
            }
            if args.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(format!("{kind}: {k} is given twice"));
            }
        }
        let required = match kind {
            ActionKind::HaRestartApp => "app",
            ActionKind::HaCallService => "service",
            ActionKind::N8nTrigger => "workflow",
        };
        if !args.contains_key(required) {
            return Err(format!("{kind} needs {required}=..."));
        }
        Ok(Self { kind, args })
    }

    /// Whether a plan step is an action.
    pub fn is_step(step: &str) -> bool {
        step.trim_start().starts_with(PREFIX)
    }

    /// The canonical text (`kind key=value ...`, keys sorted): what approvals show and
    /// audits record.
    pub fn text(&self) -> String {
        let mut s = self.kind.as_str().to_owned();
        for (k, v) in &self.args {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }

    /// What it acts on: the app, the service, the workflow (for breakers and locks).
    pub fn target(&self) -> &str {
        let key = match self.kind {
            ActionKind::HaRestartApp => "app",
            ActionKind::HaCallService => "service",
            ActionKind::N8nTrigger => "workflow",
        };
        self.args.get(key).map_or("", String::as_str)
    }
}

/// What the policy knows about the integrations.
pub struct ActionPolicy<'a> {
    pub homeassistant: bool,
    pub n8n: bool,
    /// `[homeassistant] allow_services`: services any source may call unattended.
    pub allow_services: &'a [String],
    /// `[homeassistant] allow_apps`: apps restarted unattended (empty: any).
    pub allow_apps: &'a [String],
}

/// The verdict on an action, per source: the operator's and learned actions run; the
/// LLM's and unknown services wait for a person; an integration that is not
/// configured blocks.
pub fn judge(action: &Action, source: Source, p: &ActionPolicy<'_>) -> Judgement {
    let judgement = |verdict, rule: &str, reason: String| Judgement {
        verdict,
        rule: rule.into(),
        reason,
    };
    let configured = match action.kind {
        ActionKind::HaRestartApp | ActionKind::HaCallService => p.homeassistant,
        ActionKind::N8nTrigger => p.n8n,
    };
    if !configured {
        return judgement(
            Verdict::Blocked,
            "action-not-configured",
            format!("{} is not configured here", action.kind),
        );
    }
    if action.args.values().any(|v| v == "all") {
        return judgement(
            Verdict::Blocked,
            "action-targets-all",
            format!("{}: \"all\" would act on every entity", action.kind),
        );
    }
    if action.kind == ActionKind::HaRestartApp
        && !p.allow_apps.is_empty()
        && !p.allow_apps.iter().any(|s| s == action.target())
    {
        return judgement(
            Verdict::ApprovalRequired,
            "action-app-not-allowed",
            format!(
                "app {} is not in homeassistant.allow_apps; a person must approve it",
                action.target()
            ),
        );
    }
    if action.kind == ActionKind::HaCallService
        && !p.allow_services.iter().any(|s| s == action.target())
    {
        return judgement(
            Verdict::ApprovalRequired,
            "action-service-not-allowed",
            format!(
                "service {} is not in homeassistant.allow_services; a person must approve it",
                action.target()
            ),
        );
    }
    let rule = format!("action-{}", action.kind.as_str().replace(['.', '_'], "-"));
    match source {
        Source::Llm => judgement(
            Verdict::ApprovalRequired,
            &rule,
            format!("{} proposed by the LLM: a person approves it", action.kind),
        ),
        // As with restarts by shell: asked for through the API, a person approves.
        Source::Manual => judgement(
            Verdict::ApprovalRequired,
            &rule,
            format!(
                "{} asked for through the API: a person approves it",
                action.kind
            ),
        ),
        Source::Operator | Source::Learned => judgement(
            Verdict::Allowed,
            &rule,
            format!("{} on {}", action.kind, action.target()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_print_canonically() {
        let a = Action::parse("@homeassistant.restart_app app=core_mosquitto").unwrap();
        assert_eq!(a.kind, ActionKind::HaRestartApp);
        assert_eq!(a.target(), "core_mosquitto");
        assert_eq!(a.text(), "homeassistant.restart_app app=core_mosquitto");
        let s = Action::parse(
            "homeassistant.call_service service=automation.reload entity_id=automation.x",
        )
        .unwrap();
        assert_eq!(
            s.text(),
            "homeassistant.call_service entity_id=automation.x service=automation.reload"
        );
        assert!(Action::is_step(" @n8n.trigger workflow=x"));
        assert!(!Action::is_step("systemctl restart x"));
        for (bad, says) in [
            ("homeassistant.reboot_host", "known actions"),
            ("homeassistant.restart_app", "needs app="),
            ("homeassistant.restart_app core_mosquitto", "not key=value"),
            ("n8n.trigger workflow=", "not key=value"),
            ("n8n.trigger Workflow=x", "not key=value"),
            ("n8n.trigger workflow=a workflow=b", "given twice"),
        ] {
            let e = Action::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_verdict_depends_on_source_configuration_and_allow_list() {
        let allow = vec!["automation.reload".to_owned()];
        let apps = vec!["core_mosquitto".to_owned()];
        let p = ActionPolicy {
            homeassistant: true,
            n8n: false,
            allow_services: &allow,
            allow_apps: &apps,
        };
        let restart = Action::parse("homeassistant.restart_app app=core_mosquitto").unwrap();
        assert_eq!(
            judge(&restart, Source::Operator, &p).verdict,
            Verdict::Allowed
        );
        assert_eq!(
            judge(&restart, Source::Learned, &p).verdict,
            Verdict::Allowed
        );
        assert_eq!(
            judge(&restart, Source::Llm, &p).verdict,
            Verdict::ApprovalRequired
        );
        assert_eq!(
            judge(&restart, Source::Manual, &p).verdict,
            Verdict::ApprovalRequired
        );
        let other_app = Action::parse("homeassistant.restart_app app=ccab4aaf_frigate").unwrap();
        assert_eq!(
            judge(&other_app, Source::Operator, &p).verdict,
            Verdict::ApprovalRequired
        );
        let everything =
            Action::parse("homeassistant.call_service service=automation.reload entity_id=all")
                .unwrap();
        assert_eq!(
            judge(&everything, Source::Operator, &p).verdict,
            Verdict::Blocked
        );
        let reload = Action::parse("homeassistant.call_service service=automation.reload").unwrap();
        assert_eq!(
            judge(&reload, Source::Operator, &p).verdict,
            Verdict::Allowed
        );
        let other = Action::parse("homeassistant.call_service service=lock.unlock").unwrap();
        let j = judge(&other, Source::Operator, &p);
        assert_eq!(j.verdict, Verdict::ApprovalRequired);
        assert!(j.reason.contains("allow_services"), "{}", j.reason);
        let n8n = Action::parse("n8n.trigger workflow=x").unwrap();
        assert_eq!(judge(&n8n, Source::Operator, &p).verdict, Verdict::Blocked);
    }
}
