//! Rules as data: the built-in policy (`policy.toml`, compiled in) plus `[safety]`
//! rules from the configuration, matched on a program invocation's name and
//! arguments, never on raw command text.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Verdict;
use crate::config::SafetyConfig;

const BUILT_IN: &str = include_str!("policy.toml");

/// What to do with an LLM-proposed command that no rule knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    Approval,
    Allow,
    Block,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    programs: BTreeMap<String, ProgramSpec>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    /// Options whose value is the next word.
    #[serde(default)]
    pub options_with_values: Vec<String>,
}

/// One rule. See the header of `policy.toml` for the meaning of each predicate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub reason: String,
    pub programs: Vec<String>,
    #[serde(default)]
    pub positional: Vec<String>,
    #[serde(default)]
    pub positional_any: Vec<String>,
    /// Leading arguments in order, options included (how `[[safety.rules]] args` read).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub any_flag: Vec<String>,
    #[serde(default)]
    pub no_flag: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub paths_any: Vec<String>,
    #[serde(default)]
    pub text_any: Vec<String>,
    #[serde(default)]
    pub no_args: bool,
    #[serde(default)]
    pub max_args: Option<usize>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// The complete policy Jarvis judges with.
#[derive(Debug, Clone)]
pub struct Policy {
    programs: BTreeMap<String, ProgramSpec>,
    /// Configured rules first, then the built-in ones; first match wins.
    rules: Vec<Rule>,
    pub llm_unknown: UnknownPolicy,
    /// Containers Jarvis runs in (and its database); commands on them are blocked.
    pub protected_containers: Vec<String>,
    /// Paths of Jarvis's own data (SQLite file, spool); commands naming them are blocked.
    pub protected_paths: Vec<String>,
}

impl Policy {
    /// The built-in policy with default settings.
    pub fn built_in() -> Self {
        Self::from_config(
            &SafetyConfig::default(),
            &crate::config::SelfConfig::default(),
            &[],
        )
        .expect("the built-in policy is valid (a unit test checks it)")
    }

    pub fn from_config(
        safety: &SafetyConfig,
        self_cfg: &crate::config::SelfConfig,
        protected_paths: &[String],
    ) -> Result<Self, String> {
        let file: PolicyFile =
            toml::from_str(BUILT_IN).map_err(|e| format!("built-in policy: {e}"))?;
        let mut rules = Vec::new();
        for (i, r) in safety.rules.iter().enumerate() {
            let verdict = Verdict::parse(&r.verdict)
                .map_err(|e| format!("safety.rules[{i}].verdict: {e}"))?;
            rules.push(Rule {
                id: format!("config:{i}"),
                verdict,
                reason: format!("configured rule safety.rules[{i}]"),
                programs: vec![r.command.clone()],
                args: r.args.clone(),
                hosts: r.hosts.clone(),
                ..Rule::default()
            });
        }
        rules.extend(file.rules);
        let llm_unknown = match safety.llm_unknown_commands.as_str() {
            "allow" => UnknownPolicy::Allow,
            "block" => UnknownPolicy::Block,
            _ => UnknownPolicy::Approval,
        };
        Ok(Self {
            programs: file.programs,
            rules,
            llm_unknown,
            protected_containers: self_cfg.protected_containers.clone(),
            protected_paths: protected_paths.to_vec(),
        })
    }

    pub fn options_with_values(&self, program: &str) -> &[String] {
        self.programs
            .get(program)
            .map_or(&[], |p| p.options_with_values.as_slice())
    }

    /// The first rule matching this invocation on `host`.
    pub fn find(&self, inv: &Invocation<'_>, host: Option<&str>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(inv, host))
    }

    #[cfg(test)]
    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// A program invocation split into what rules look at. An argument is `None` when its
/// value is only known at run time (a variable, a substitution, input from xargs).
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The program's name (the last path segment).
    pub program: &'a str,
    /// The program as written (`/opt/x/svc.sh`): configured rules that name a path
    /// match it exactly, so `svc.sh` elsewhere does not pass for the one allowed.
    pub path: &'a str,
    /// Options (words starting with `-`, before `--`), with the value that follows
    /// an option known to take one.
    pub flags: Vec<(&'a str, Option<Option<&'a str>>)>,
    pub positional: Vec<Option<&'a str>>,
    /// Every argument in order.
    pub all: Vec<Option<&'a str>>,
    /// All arguments joined, lower-cased, for `text_any`.
    pub text: String,
}

impl<'a> Invocation<'a> {
    pub fn new(
        program: &'a str,
        args: &'a [Option<String>],
        options_with_values: &[String],
    ) -> Self {
        let mut flags = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        let mut only_positional = false;
        while i < args.len() {
            let a = args[i].as_deref();
            match a {
                Some("--") if !only_positional => only_positional = true,
                Some(w) if !only_positional && w.starts_with('-') && w.len() > 1 => {
                    let takes_value = options_with_values.iter().any(|o| o == w);
                    if takes_value && i + 1 < args.len() {
                        flags.push((w, Some(args[i + 1].as_deref())));
                        i += 1;
                    } else {
                        flags.push((w, None));
                    }
                }
                other => positional.push(other),
            }
            i += 1;
        }
        let text = args
            .iter()
            .map(|a| a.as_deref().unwrap_or("$?"))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        Self {
            program,
            path: program,
            flags,
            positional,
            all: args.iter().map(|a| a.as_deref()).collect(),
            text,
        }
    }
}

/// `*` matches within one path segment, `**` across segments, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = &p[2..];
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some(b'*') => {
                let rest = &p[1..];
                for i in 0..=t.len() {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    if t.get(i) == Some(&b'/') {
                        break;
                    }
                }
                false
            }
            Some(b'?') => !t.is_empty() && t[0] != b'/' && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// A glob for words (not paths): `*` matches anything.
fn word_glob(pattern: &str, text: &str) -> bool {
    glob(&pattern.replace('*', "**"), text)
}

/// Lexically normalises a path: collapses `//` and `.`, resolves `..`. Relative paths
/// stay relative (and never match the absolute globs of the policy).
pub fn normalize_path(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

impl Rule {
    fn matches(&self, inv: &Invocation<'_>, host: Option<&str>) -> bool {
        let named = |p: &String| {
            if p.contains('/') {
                p == inv.path
            } else {
                p == inv.program
            }
        };
        if !self.programs.iter().any(named) {
            return false;
        }
        if !self.hosts.is_empty() && !host.is_some_and(|h| self.hosts.iter().any(|x| x == h)) {
            return false;
        }
        if self.no_args && !inv.positional.is_empty() {
            return false;
        }
        if self.max_args.is_some_and(|m| inv.positional.len() > m) {
            return false;
        }
        let consumed = if self.positional.is_empty() {
            0
        } else {
            match match_positional(&self.positional, &inv.positional) {
                Some(n) => n,
                None => return false,
            }
        };
        if !self.args.is_empty() && match_positional(&self.args, &inv.all).is_none() {
            return false;
        }
        if !self.positional_any.is_empty()
            && !inv.positional.iter().any(|p| {
                p.is_some_and(|p| {
                    self.positional_any
                        .iter()
                        .any(|alts| alts.split('|').any(|a| word_glob(a, p)))
                })
            })
        {
            return false;
        }
        if !self.any_flag.is_empty() && !self.any_flag.iter().any(|f| has_flag(inv, f)) {
            return false;
        }
        if self.no_flag.iter().any(|f| has_flag(inv, f)) {
            return false;
        }
        let rest = &inv.positional[consumed..];
        if !self.paths.is_empty() {
            // Every remaining argument must be a known path under one of the globs.
            if rest.is_empty() {
                return false;
            }
            let all_safe = rest.iter().all(|a| {
                a.is_some_and(|a| {
                    let n = normalize_path(a);
                    self.paths.iter().any(|g| glob(g, &n))
                })
            });
            if !all_safe {
                return false;
            }
        }
        if !self.paths_any.is_empty() {
            let any = rest.iter().any(|a| {
                a.is_some_and(|a| {
                    let n = normalize_path(a);
                    self.paths_any.iter().any(|g| glob(g, &n))
                })
            });
            if !any {
                return false;
            }
        }
        if !self.text_any.is_empty() && !self.text_any.iter().any(|t| inv.text.contains(t.as_str()))
        {
            return false;
        }
        true
    }
}

/// Matches the leading positional arguments against patterns whose alternatives may
/// span several words (`"container rm"`). Returns how many arguments were consumed.
fn match_positional(patterns: &[String], args: &[Option<&str>]) -> Option<usize> {
    fn go(patterns: &[String], args: &[Option<&str>], used: usize) -> Option<usize> {
        let Some((first, rest)) = patterns.split_first() else {
            return Some(used);
        };
        for alt in first.split('|') {
            let words: Vec<&str> = alt.split_whitespace().collect();
            if words.len() > args.len() {
                continue;
            }
            let ok = words
                .iter()
                .zip(args)
                .all(|(w, a)| a.is_some_and(|a| word_glob(w, a)));
            if ok && let Some(n) = go(rest, &args[words.len()..], used + words.len()) {
                return Some(n);
            }
        }
        None
    }
    go(patterns, args, 0)
}

/// Whether an option is present. `-r` also matches a cluster like `-rf`; `--data`
/// also matches `--data=...`; `-v=GLOB` matches the option with a value matching GLOB,
/// attached or in the next word.
fn has_flag(inv: &Invocation<'_>, spec: &str) -> bool {
    let (name, value_glob) = match spec.split_once('=') {
        Some((n, v)) if spec.starts_with('-') => (n, Some(v)),
        _ => (spec, None),
    };
    inv.flags.iter().any(|(word, next)| {
        let (word_name, attached) = match word.split_once('=') {
            Some((n, v)) if word.starts_with("--") || word.len() > 2 => (n, Some(v)),
            _ => (*word, None),
        };
        let named = word_name == name
            || (name.len() == 2
                && name.starts_with('-')
                && !name.starts_with("--")
                && word.starts_with('-')
                && !word.starts_with("--")
                && word.len() > 2
                && !word.contains('=')
                && word[1..].chars().all(|c| c.is_ascii_alphabetic())
                && word[1..].contains(&name[1..]));
        if !named {
            return false;
        }
        match value_glob {
            None => true,
            Some(g) => {
                let v = attached.or(next.flatten());
                v.is_some_and(|v| word_glob(g, v))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policy_loads_and_is_well_formed() {
        let p = Policy::built_in();
        assert!(p.rules().len() > 80);
        let mut ids = std::collections::HashSet::new();
        for r in p.rules() {
            assert!(ids.insert(r.id.clone()), "duplicate rule id {}", r.id);
            assert!(!r.reason.is_empty(), "rule {} has no reason", r.id);
            for prog in &r.programs {
                assert!(
                    !prog.contains(' '),
                    "rule {}: program {prog:?} has a space",
                    r.id
                );
            }
        }
    }

    #[test]
    fn globs() {
        let cases = [
            ("/tmp/*", "/tmp/x", true),
            ("/tmp/*", "/tmp/x/y", false),
            ("/tmp/**", "/tmp/x/y", true),
            ("/tmp/?*", "/tmp/", false),
            ("**/.ssh/**", "/home/a/.ssh/id_rsa", true),
            ("/etc/**", "/etc", false),
            ("/dev/sd*", "/dev/sda1", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} vs {t}");
        }
        assert_eq!(normalize_path("/tmp/../etc//passwd"), "/etc/passwd");
        assert_eq!(normalize_path("/tmp/./a/"), "/tmp/a");
        assert_eq!(normalize_path("/../.."), "/");
    }
}
