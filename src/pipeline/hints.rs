//! Plans from hints: `[[rules.hints]]` routing rules in the configuration, and an
//! alert rule's own `remediation_host` / `remediation_commands` (INTERFACE §4).
//!
//! Label values are attacker-reachable text (anyone who can shape a metric's labels can
//! shape an alert's), so `{{ label }}` placeholders are always filled shell-quoted: a
//! value can only ever become one word of the command, never more command.

use crate::config::HintRule;
use crate::domain::alert::LabelSet;

/// Where a hint plan came from (its safety source is `operator` either way: rules and
/// alert rules are written by the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintOrigin {
    /// `rules.hints[index]` in the configuration.
    Rule(usize),
    /// The alert's own `remediation_commands`.
    Alert,
}

/// Commands to run for an alert, and the host they target (a name or alias; `None`:
/// resolve from the alert's labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintPlan {
    pub origin: HintOrigin,
    pub host: Option<String>,
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HintError {
    #[error("placeholder {{{{ {0} }}}} names a label the alert does not have")]
    MissingLabel(String),
    #[error("unterminated placeholder in {0:?}")]
    Unterminated(String),
    #[error("label {0} is not one word ({1:?}); an action's argument must be")]
    NotOneWord(String, String),
}

/// Single-quotes a value for a POSIX shell.
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+,=".contains(c))
    {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Fills `{{ name }}` placeholders with shell-quoted label values.
pub fn fill_placeholders(template: &str, labels: &LabelSet) -> Result<String, HintError> {
    fill(template, labels, |_, v| Ok(shell_quote(v)))
}

/// Fills placeholders with the raw values: only for names that are looked up (a host),
/// never for anything a shell will see.
pub fn fill_name(template: &str, labels: &LabelSet) -> Result<String, HintError> {
    fill(template, labels, |_, v| Ok(v.to_owned()))
}

/// Fills a typed action's placeholders with raw values (no shell sees them), each of
/// which must be one non-empty word without `;` (a space or a `;` could add an
/// argument or an action).
pub fn fill_action(template: &str, labels: &LabelSet) -> Result<String, HintError> {
    fill(template, labels, |name, v| {
        if v.is_empty()
            || v.chars()
                .any(|c| c.is_whitespace() || c == ';' || c.is_control())
        {
            Err(HintError::NotOneWord(name.to_owned(), v.to_owned()))
        } else {
            Ok(v.to_owned())
        }
    })
}

/// `template` with each `{{ placeholder }}` as the word `x` (to check a step's shape
/// before any alert exists).
pub fn with_sample_words(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push('x');
                rest = &rest[start + end + 2..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Fills a step: an action's with `fill_action`, a command's shell-quoted.
pub fn fill_step(template: &str, labels: &LabelSet) -> Result<String, HintError> {
    if crate::exec::action::Action::is_step(template) {
        fill_action(template, labels)
    } else {
        fill_placeholders(template, labels)
    }
}

fn fill(
    template: &str,
    labels: &LabelSet,
    render: impl Fn(&str, &str) -> Result<String, HintError>,
) -> Result<String, HintError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(HintError::Unterminated(template.to_owned()));
        };
        let name = after[..end].trim();
        let value = labels
            .get(name)
            .ok_or_else(|| HintError::MissingLabel(name.to_owned()))?;
        out.push_str(&render(name, value)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether every matcher (label → glob, `*` any text) matches the alert's labels.
pub fn matches(matchers: &std::collections::BTreeMap<String, String>, labels: &LabelSet) -> bool {
    matchers.iter().all(|(name, glob)| {
        labels
            .get(name)
            .is_some_and(|v| crate::safety::policy::glob(&glob.replace('*', "**"), v))
    })
}

/// Splits `remediation_commands` (several commands separated by `;` or newlines) into
/// commands. A `;` inside quotes does not split; anything the split gets wrong still
/// passes the safety gate whole.
pub fn split_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in text.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => {
                cur.push(c);
                escaped = true;
            }
            '\'' if !double => {
                single = !single;
                cur.push(c);
            }
            '"' if !single => {
                double = !double;
                cur.push(c);
            }
            ';' | '\n' if !single && !double => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_owned());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// The first routing rule that matches, else the alert's own hints (when allowed).
pub fn plan(
    labels: &LabelSet,
    annotations: &LabelSet,
    rules: &[HintRule],
    execute_alert_hints: bool,
) -> Result<Option<HintPlan>, HintError> {
    if let Some((i, rule)) = rules
        .iter()
        .enumerate()
        .find(|(_, r)| matches(&r.matchers, labels))
    {
        let commands = rule
            .commands
            .iter()
            .map(|c| fill_step(c, labels))
            .collect::<Result<Vec<_>, _>>()?;
        // A host is looked up by name, never run: its placeholders are filled as is.
        let host = if rule.host.is_empty() {
            None
        } else {
            Some(fill_name(&rule.host, labels)?)
        };
        return Ok(Some(HintPlan {
            origin: HintOrigin::Rule(i),
            host,
            commands,
        }));
    }
    if !execute_alert_hints {
        return Ok(None);
    }
    let hint = |name: &str| annotations.get(name).or_else(|| labels.get(name));
    let mut commands = hint("remediation_commands")
        .map(|t| split_commands(t))
        .unwrap_or_default();
    // One typed action (`homeassistant.restart_app app=core_mosquitto`), after the
    // commands, judged as an action when it runs. From annotations only: labels come
    // from scraped targets, and an annotation is the rule author's. Not split on `;`,
    // so a label value templated into it cannot add a second action.
    if let Some(t) = annotations.get("remediation_action") {
        let t = t.trim();
        if !t.is_empty() {
            commands.push(format!("{}{t}", crate::exec::action::PREFIX));
        }
    }
    if commands.is_empty() {
        return Ok(None);
    }
    Ok(Some(HintPlan {
        origin: HintOrigin::Alert,
        host: labels.get("remediation_host").cloned(),
        commands,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    use crate::domain::alert::labels;

    #[test]
    fn an_action_comes_from_the_rules_annotation_only_and_alone() {
        let none: Vec<HintRule> = Vec::new();
        // A scraped target's label cannot start an action.
        let from_label = labels(&[
            ("alertname", "X"),
            ("remediation_action", "n8n.trigger workflow=wipe"),
        ]);
        assert_eq!(plan(&from_label, &labels(&[]), &none, true).unwrap(), None);
        // The annotation is one action: a `;` in it (a label templated in) does not
        // add a second.
        let ann = labels(&[(
            "remediation_action",
            "homeassistant.restart_app app=x;n8n.trigger workflow=wipe",
        )]);
        let p = plan(&labels(&[("alertname", "X")]), &ann, &none, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            p.commands,
            ["@homeassistant.restart_app app=x;n8n.trigger workflow=wipe"]
        );
        // A routing rule's action gets raw, one-word values.
        let rule = HintRule {
            matchers: [("alertname".to_owned(), "X".to_owned())].into(),
            commands: vec!["@homeassistant.restart_app app={{ app }}".into()],
            ..HintRule::default()
        };
        let ok = plan(
            &labels(&[("alertname", "X"), ("app", "core_mosquitto")]),
            &labels(&[]),
            std::slice::from_ref(&rule),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            ok.commands,
            ["@homeassistant.restart_app app=core_mosquitto"]
        );
        for bad in ["x service=lock.unlock", "x;y", ""] {
            let e = plan(
                &labels(&[("alertname", "X"), ("app", bad)]),
                &labels(&[]),
                std::slice::from_ref(&rule),
                false,
            )
            .unwrap_err();
            assert!(matches!(e, HintError::NotOneWord(..)), "{bad:?}: {e}");
        }
    }

    #[test]
    fn label_values_become_exactly_one_word() {
        let cases = [
            ("frigate", "docker restart frigate"),
            ("my app", "docker restart 'my app'"),
            ("x; rm -rf /", "docker restart 'x; rm -rf /'"),
            ("$(reboot)", "docker restart '$(reboot)'"),
            ("it's", "docker restart 'it'\\''s'"),
            ("`id`", "docker restart '`id`'"),
            ("", "docker restart ''"),
        ];
        for (value, want) in cases {
            let got = fill_placeholders(
                "docker restart {{ container }}",
                &labels(&[("container", value)]),
            )
            .unwrap();
            assert_eq!(got, want);
            // And the safety gate sees one harmless restart, whatever the value.
            let j = crate::safety::judge(
                &got,
                &crate::safety::Context::new(None, crate::safety::Source::Operator),
                &crate::safety::Policy::built_in(),
            );
            assert_eq!(j.verdict, crate::safety::Verdict::Allowed, "{got}: {j:?}");
        }
        assert_eq!(
            fill_placeholders("x {{nope}}", &labels(&[])),
            Err(HintError::MissingLabel("nope".into()))
        );
        assert!(matches!(
            fill_placeholders("x {{ a", &labels(&[("a", "1")])),
            Err(HintError::Unterminated(_))
        ));
    }

    #[test]
    fn routing_rules_come_first_then_the_alerts_own_commands() {
        let config: Config = crate::config::parse_toml(
            r#"
[[rules.hints]]
match = { alertname = "BackupStale", system = "outpost" }
host = "outpost"
commands = ["/opt/burrow/backups/backup_vps_notify.sh"]
[[rules.hints]]
match = { alertname = "ContainerDown", container = "*" }
host = "{{ host }}"
commands = ["docker restart {{ container }}"]
"#,
        )
        .unwrap();
        let rules = &config.rules.hints;
        let backup = labels(&[
            ("alertname", "BackupStale"),
            ("system", "outpost"),
            ("instance", "10.0.0.11:9100"),
        ]);
        let p = plan(&backup, &LabelSet::new(), rules, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.origin, p.host.as_deref()),
            (HintOrigin::Rule(0), Some("outpost"))
        );
        assert_eq!(p.commands, ["/opt/burrow/backups/backup_vps_notify.sh"]);

        let down = labels(&[
            ("alertname", "ContainerDown"),
            ("container", "frigate"),
            ("host", "nexus"),
        ]);
        let p = plan(&down, &LabelSet::new(), rules, true).unwrap().unwrap();
        assert_eq!(
            (p.host.as_deref(), p.commands[0].as_str()),
            (Some("nexus"), "docker restart frigate")
        );

        let vpn = labels(&[
            ("alertname", "WireGuardVPNDown"),
            ("remediation_host", "outpost"),
        ]);
        let ann = labels(&[(
            "remediation_commands",
            "sudo systemctl restart wg-quick@wg0; wg show\nsystemctl status 'a;b'",
        )]);
        let p = plan(&vpn, &ann, rules, true).unwrap().unwrap();
        assert_eq!(p.origin, HintOrigin::Alert);
        assert_eq!(p.host.as_deref(), Some("outpost"));
        assert_eq!(
            p.commands,
            [
                "sudo systemctl restart wg-quick@wg0",
                "wg show",
                "systemctl status 'a;b'"
            ]
        );
        assert_eq!(
            plan(&vpn, &ann, rules, false).unwrap(),
            None,
            "execute_alert_hints = false"
        );
        assert_eq!(
            plan(
                &labels(&[("alertname", "Other")]),
                &LabelSet::new(),
                rules,
                true
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn the_fixture_with_hints_plans_its_own_command() {
        let body = std::fs::read(format!(
            "{}/../shared/fixtures/alerts/with_remediation_hints.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let e = &crate::intake::payload::parse_payload(&body, 0).unwrap()[0];
        let p = plan(&e.labels, &e.annotations, &[], true).unwrap().unwrap();
        assert_eq!(p.host.as_deref(), Some("outpost"));
        assert_eq!(p.commands, ["sudo systemctl restart wg-quick@wg0"]);
    }
}
