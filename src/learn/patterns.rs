//! Pattern library files (INTERFACE §5) and matching.
//!
//! Confidence rule (documented here because learning depends on it): a pattern's seeded
//! `confidence` is a Beta prior worth [`PRIOR_WEIGHT`] observations; each verified
//! success or failure is one more. Confidence is the posterior mean,
//! `(c·w + successes) / (w + successes + failures)`. A learned pattern skips the LLM only
//! after at least [`MIN_VERIFIED_SUCCESSES`] verified successes and with confidence at or
//! above `[remediation] pattern_min_confidence`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::alert::LabelSet;
use crate::exec::action::Action;
use crate::pipeline::hints::{HintError, fill_name, fill_step, matches};

/// How many observations a seeded prior is worth.
pub const PRIOR_WEIGHT: f64 = 4.0;
/// Verified successes a learned pattern needs before it may skip the LLM.
pub const MIN_VERIFIED_SUCCESSES: u32 = 2;

/// The seeded pattern files, compiled in.
const SEEDED: &[(&str, &str)] = &[
    (
        "patterns/containers.toml",
        include_str!("../../patterns/containers.toml"),
    ),
    (
        "patterns/services.toml",
        include_str!("../../patterns/services.toml"),
    ),
    (
        "patterns/system.toml",
        include_str!("../../patterns/system.toml"),
    ),
];

/// One pattern as written in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternDef {
    pub alert_name: String,
    /// Label name → glob (`*` any text). All must match.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Target host (placeholders allowed); default: resolved from the alert.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Shell commands, and typed actions: `"@homeassistant.restart_app app={{ app }}"`
    /// or a table `{ action = "homeassistant.restart_app", app = "{{ app }}" }`.
    #[serde(deserialize_with = "steps")]
    pub commands: Vec<String>,
    /// Seeded prior, 0..=1.
    pub confidence: f64,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternFile {
    #[serde(default)]
    pub patterns: Vec<PatternDef>,
}

/// A step as written: a command (or `@action` text), or an action table.
#[derive(Deserialize)]
#[serde(untagged)]
enum StepDef {
    Text(String),
    Action(BTreeMap<String, String>),
}

/// Reads the steps, turning action tables into their `@kind key=value` text.
fn steps<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let defs = Vec::<StepDef>::deserialize(d)?;
    defs.into_iter()
        .map(|s| match s {
            StepDef::Text(t) => Ok(t),
            StepDef::Action(mut t) => {
                let kind = t.remove("action").ok_or_else(|| {
                    serde::de::Error::custom("a step table needs action = \"<kind>\"")
                })?;
                let mut text = format!("{}{kind}", crate::exec::action::PREFIX);
                for (k, v) in t {
                    text.push_str(&format!(" {k}={v}"));
                }
                Ok(text)
            }
        })
        .collect()
}

/// Parses a pattern file; every problem names the pattern and the key.
pub fn parse(name: &str, text: &str) -> Result<Vec<PatternDef>, String> {
    let file: PatternFile = toml::from_str(text).map_err(|e| format!("{name}: {}", e.message()))?;
    for (i, p) in file.patterns.iter().enumerate() {
        let at = format!("{name}: patterns[{i}] ({})", p.alert_name);
        if p.alert_name.trim().is_empty() {
            return Err(format!("{at}: alert_name must not be empty"));
        }
        if p.commands.is_empty() || p.commands.iter().any(|c| c.trim().is_empty()) {
            return Err(format!(
                "{at}: commands must list at least one non-empty command"
            ));
        }
        for c in p.commands.iter().filter(|c| Action::is_step(c)) {
            // Placeholders stand for one word; judge the shape with sample values.
            let sample = fill_name(c, &sample_labels(p)).unwrap_or_else(|_| c.clone());
            Action::parse(&sample).map_err(|e| format!("{at}: {e}"))?;
        }
        if !(0.0..=1.0).contains(&p.confidence) {
            return Err(format!(
                "{at}: confidence {} is not between 0 and 1",
                p.confidence
            ));
        }
    }
    Ok(file.patterns)
}

/// Every seeded pattern.
pub fn seeded() -> Vec<PatternDef> {
    SEEDED
        .iter()
        .flat_map(|(name, text)| {
            parse(name, text).expect("seeded patterns are valid (a unit test checks them)")
        })
        .collect()
}

/// A pattern applied to an alert: its commands with placeholders filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<'a> {
    pub pattern: &'a PatternDef,
    pub host: Option<String>,
    pub commands: Vec<String>,
}

/// The first pattern for this alert whose matchers match and whose placeholders can
/// all be filled; more specific patterns (more matchers) are tried first.
pub fn find<'a>(
    alert_name: &str,
    labels: &LabelSet,
    patterns: &'a [PatternDef],
) -> Option<Applied<'a>> {
    let mut candidates: Vec<&PatternDef> = patterns
        .iter()
        .filter(|p| p.alert_name == alert_name && matches(&p.matchers, labels))
        .collect();
    candidates.sort_by_key(|p| std::cmp::Reverse(p.matchers.len()));
    candidates.into_iter().find_map(|p| apply(p, labels).ok())
}

fn apply<'a>(p: &'a PatternDef, labels: &LabelSet) -> Result<Applied<'a>, HintError> {
    let commands = p
        .commands
        .iter()
        .map(|c| {
            // An action's values go in raw, each one word; a command's shell-quoted.
            fill_step(c, labels)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let host = if p.host.is_empty() {
        None
    } else {
        Some(fill_name(&p.host, labels)?)
    };
    Ok(Applied {
        pattern: p,
        host,
        commands,
    })
}

/// Labels that fill every placeholder of `p` with an ordinary value, for judging its
/// commands before any alert exists.
pub fn sample_labels(p: &PatternDef) -> LabelSet {
    let mut l: LabelSet = p
        .matchers
        .keys()
        .map(|k| (k.clone(), "sample".to_owned()))
        .collect();
    for c in p.commands.iter().chain(std::iter::once(&p.host)) {
        for part in c.split("{{").skip(1) {
            let name = part.split("}}").next().unwrap_or("").trim();
            l.entry(name.to_owned())
                .or_insert_with(|| "sample".to_owned());
        }
    }
    l
}

/// Problems that keep a pattern out of the library: placeholders that cannot be
/// filled, and commands the safety gate blocks even from the operator.
pub fn gate_problems(p: &PatternDef, policy: &crate::safety::Policy) -> Vec<String> {
    use crate::safety::{self, Context, Source, Verdict};
    let applied = match apply(p, &sample_labels(p)) {
        Ok(a) => a,
        Err(e) => return vec![format!("{}: {e}", p.alert_name)],
    };
    applied
        .commands
        .iter()
        // Actions are checked when the file is read and judged by the action policy
        // when they run (the shell gate has nothing to say about them).
        .filter(|cmd| !Action::is_step(cmd))
        .filter_map(|cmd| {
            let j = safety::judge(cmd, &Context::new(None, Source::Operator), policy);
            (j.verdict == Verdict::Blocked).then(|| {
                format!(
                    "{}: {cmd:?} is blocked by {} ({})",
                    p.alert_name, j.rule, j.reason
                )
            })
        })
        .collect()
}

/// Posterior confidence after `successes` and `failures` verified outcomes.
pub fn confidence(prior: f64, successes: u32, failures: u32) -> f64 {
    let (s, f) = (f64::from(successes), f64::from(failures));
    (prior * PRIOR_WEIGHT + s) / (PRIOR_WEIGHT + s + f)
}

/// Whether a learned pattern may be used without asking the LLM.
pub fn skips_llm(prior: f64, verified_successes: u32, failures: u32, min_confidence: f64) -> bool {
    verified_successes >= MIN_VERIFIED_SUCCESSES
        && confidence(prior, verified_successes, failures) >= min_confidence
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::{self, Context, Policy, Source, Verdict};

    use crate::domain::alert::labels;

    #[test]
    fn patterns_may_list_actions_beside_commands() {
        let text = r#"
[[patterns]]
alert_name = "HaAppDown"
match = { app = "*" }
commands = [
    "echo restarting",
    { action = "homeassistant.restart_app", app = "{{ app }}" },
    "@n8n.trigger workflow=notify-{{ app }}",
]
confidence = 0.9
"#;
        let p = &parse("ha.toml", text).unwrap()[0];
        assert_eq!(
            p.commands[1], "@homeassistant.restart_app app={{ app }}",
            "a table step is its action's text"
        );
        let applied = apply(p, &labels(&[("app", "core_mosquitto")])).unwrap();
        assert_eq!(
            applied.commands,
            [
                "echo restarting",
                "@homeassistant.restart_app app=core_mosquitto",
                "@n8n.trigger workflow=notify-core_mosquitto",
            ],
            "values go into actions raw (no shell sees them)"
        );
        // A value with a space could add an argument: the pattern does not apply.
        assert!(apply(p, &labels(&[("app", "x service=lock.unlock")])).is_err());
        // A malformed action is refused when the file is read, naming the pattern.
        let bad = text.replace(
            "homeassistant.restart_app\", app",
            "homeassistant.reboot\", app",
        );
        let e = parse("ha.toml", &bad).unwrap_err();
        assert!(
            e.contains("ha.toml: patterns[0] (HaAppDown)") && e.contains("known actions"),
            "{e}"
        );
        let no_kind = text.replace("action = \"homeassistant.restart_app\", ", "");
        assert!(parse("ha.toml", &no_kind).is_err());
        // The shell gate does not judge actions: the pattern is importable.
        let policy = crate::safety::Policy::built_in();
        assert_eq!(gate_problems(p, &policy), Vec::<String>::new());
    }

    #[test]
    fn the_seeded_library_is_large_valid_and_never_blocked() {
        let all = seeded();
        assert!(all.len() >= 40, "{} seeded patterns", all.len());
        let policy = Policy::built_in();
        for p in &all {
            let applied =
                apply(p, &sample_labels(p)).unwrap_or_else(|e| panic!("{}: {e}", p.alert_name));
            for cmd in &applied.commands {
                let j = safety::judge(cmd, &Context::new(None, Source::Operator), &policy);
                assert!(
                    matches!(j.verdict, Verdict::Diagnostic | Verdict::Allowed),
                    "{} ({}): {cmd:?} is {} ({})",
                    p.alert_name,
                    p.description,
                    j.verdict,
                    j.rule
                );
            }
        }
        // Certificate expiry is diagnostic only.
        let cert = all
            .iter()
            .find(|p| p.alert_name == "TLSCertExpiringSoon")
            .unwrap();
        for cmd in &cert.commands {
            assert_eq!(
                safety::judge(cmd, &Context::new(None, Source::Llm), &policy).verdict,
                Verdict::Diagnostic
            );
        }
    }

    #[test]
    fn the_most_specific_matching_pattern_wins() {
        let all = seeded();
        let a = find("ContainerDown", &labels(&[("container", "frigate")]), &all).unwrap();
        assert_eq!(a.commands, ["docker start frigate"]);
        let a = find("DiskSpaceLow", &labels(&[("mountpoint", "/")]), &all).unwrap();
        assert_eq!(a.commands.len(), 3, "the / pattern is more specific");
        let a = find("DiskSpaceLow", &labels(&[("mountpoint", "/srv")]), &all).unwrap();
        assert_eq!(a.commands, ["journalctl --vacuum-size=500M"]);
        let a = find("WireGuardVPNDown", &labels(&[("interface", "wg1")]), &all).unwrap();
        assert_eq!(a.commands, ["systemctl restart wg-quick@wg1"]);
        // A label value cannot add commands: it stays one quoted word.
        let a = find(
            "ContainerDown",
            &labels(&[("container", "x; reboot")]),
            &all,
        )
        .unwrap();
        assert_eq!(a.commands, ["docker start 'x; reboot'"]);
        assert!(find("NoSuchAlert", &labels(&[]), &all).is_none());
        // A pattern whose placeholder has no label is skipped, not half-filled.
        assert!(find("ComposeServiceDown", &labels(&[("service", "web")]), &all).is_none());
    }

    #[test]
    fn bad_files_are_rejected_with_the_place_named() {
        let cases = [
            (
                "[[patterns]]\nalert_name = \"A\"\ncommands = []\nconfidence = 0.5\n",
                "patterns[0] (A): commands",
            ),
            (
                "[[patterns]]\nalert_name = \"A\"\ncommands = [\"x\"]\nconfidence = 1.5\n",
                "confidence 1.5",
            ),
            (
                "[[patterns]]\nalert_name = \"\"\ncommands = [\"x\"]\nconfidence = 0.5\n",
                "alert_name must not be empty",
            ),
            (
                "[[patterns]]\nalert_name = \"A\"\ncommand = [\"x\"]\nconfidence = 0.5\n",
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let e = parse("f.toml", text).unwrap_err();
            assert!(e.starts_with("f.toml") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn confidence_follows_outcomes() {
        assert!((confidence(0.85, 0, 0) - 0.85).abs() < 1e-9);
        assert!(confidence(0.85, 1, 0) > 0.85);
        assert!(confidence(0.85, 0, 1) < 0.85);
        assert!(confidence(0.5, 100, 0) > 0.98); // (0.5·4 + 100) / 104
        assert!(confidence(0.9, 0, 100) < 0.05);
        for (s, f) in [(0, 0), (3, 1), (10, 10), (0, 7)] {
            let c = confidence(0.7, s, f);
            assert!((0.0..=1.0).contains(&c));
        }
        assert!(!skips_llm(0.9, 1, 0, 0.75), "one success is not enough");
        assert!(skips_llm(0.9, 2, 0, 0.75));
        assert!(!skips_llm(0.5, 2, 3, 0.75), "too many failures");
    }
}
