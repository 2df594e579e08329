//! The safety gate: every command, whoever proposed it, is judged here before it may
//! run. Commands are parsed with a real shell parser (brush-parser); anything it
//! cannot parse, or that this module cannot fully understand, is blocked or sent to a
//! person — never allowed. The verdict of a pipeline or list is that of its most
//! dangerous part.
//!
//! The walk looks through wrappers (`sudo`, `env`, `timeout`, `xargs`, ...) to the
//! program that really runs, and judges recursively what runs inside `sh -c`, `eval`,
//! `su -c`, `ssh`, `docker exec`, `kubectl exec`, `find -exec`, `watch` and command
//! substitutions. Program invocations are then matched against the rules of
//! [`policy::Policy`]; what no rule knows is decided by who proposed it ([`Source`]).

mod options;
pub mod policy;
mod scripts;
mod secrets;
mod walk;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use policy::{Policy, UnknownPolicy};

/// What Jarvis will do with a command. Ordered from harmless to forbidden.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Read-only: runs without counting as a remediation attempt.
    Diagnostic,
    /// Changes state; permitted by policy.
    Allowed,
    /// Held until a person approves it.
    ApprovalRequired,
    /// Never runs. The default, so that anything unset fails closed.
    #[default]
    Blocked,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Diagnostic => "diagnostic",
            Self::Allowed => "allowed",
            Self::ApprovalRequired => "approval_required",
            Self::Blocked => "blocked",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "diagnostic" => Ok(Self::Diagnostic),
            "allowed" => Ok(Self::Allowed),
            "approval_required" => Ok(Self::ApprovalRequired),
            "blocked" => Ok(Self::Blocked),
            other => Err(format!(
                "{other:?} is not one of diagnostic, allowed, approval_required, blocked"
            )),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who proposed a command. Trust differs only for commands no rule knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Configuration, pattern files, the alert rule's own remediation_commands.
    Operator,
    /// Patterns promoted from verified successes.
    Learned,
    /// Proposed by the LLM agent (reads attacker-reachable text: the strictest).
    Llm,
    /// Asked for through the API.
    Manual,
}

impl TryFrom<String> for Source {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Learned => "learned",
            Self::Llm => "llm",
            Self::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "operator" => Ok(Self::Operator),
            "learned" => Ok(Self::Learned),
            "llm" => Ok(Self::Llm),
            "manual" => Ok(Self::Manual),
            other => Err(format!(
                "{other:?} is not one of operator, learned, llm, manual"
            )),
        }
    }
}

/// The gate's answer, with the rule that decided and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
    pub rule: String,
}

/// The circumstances a command is judged in.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The host it would run on (for host-specific rules).
    pub host: Option<&'a str>,
    pub source: Source,
    /// For `learned` commands: whether this exact command was verified to work before.
    pub previously_verified: bool,
}

impl<'a> Context<'a> {
    pub fn new(host: Option<&'a str>, source: Source) -> Self {
        Self {
            host,
            source,
            previously_verified: false,
        }
    }
}

impl Policy {
    /// The policy a configuration asks for: built-in rules, `[safety]` rules first,
    /// `[self]` protected containers, and Jarvis's own data paths protected.
    pub fn for_config(config: &crate::config::Config) -> Result<Self, String> {
        let mut protected = vec![config.database.spool_dir.clone()];
        let url = config.database.url.expose();
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or("");
            if !path.is_empty() && !path.starts_with(":memory:") {
                protected.push(path.to_owned());
            }
        }
        Policy::from_config(&config.safety, &config.self_protection, &protected)
    }
}

/// Joins argv into shell text that means the same argv (for `check-command -- ARGS`).
pub fn quote_argv(args: &[String]) -> String {
    if let [one] = args {
        return one.clone();
    }
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Longest command judged at all; longer ones are blocked unread.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// Judges `command` under `policy`. Pure: no IO, no clock.
pub fn judge(command: &str, ctx: &Context<'_>, policy: &Policy) -> Judgement {
    walk::judge(command, ctx, policy, None)
}

/// Judges `command` and says how: each program with its options and arguments as the
/// gate read them, each rule considered and why it did or did not match, each finding.
/// For `check-command --explain`, and stored with approvals so a person sees why a
/// command waits.
pub fn explain(command: &str, ctx: &Context<'_>, policy: &Policy) -> (Judgement, Vec<String>) {
    let mut trace = Vec::new();
    let j = walk::judge(command, ctx, policy, Some(&mut trace));
    trace.push(format!("verdict: {} [{}]: {}", j.verdict, j.rule, j.reason));
    (j, trace)
}

#[cfg(test)]
mod tests;
