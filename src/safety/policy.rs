//! Rules as data: the built-in policy (`policy.toml`, compiled in) plus `[safety]`
//! rules from the configuration, matched on a program invocation's name and
//! arguments, never on raw command text.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::options::{self, Arity, Grammar, Opt, OptSpec, Parsed, Style, word_glob};
use super::{Source, Verdict, secrets};
use crate::config::SafetyConfig;

const BUILT_IN: &str = include_str!("policy.toml");
/// Per-program option allow-lists and how each program reads its arguments.
const PROGRAMS: &str = include_str!("programs.toml");

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
    #[serde(default)]
    secret_paths: Vec<String>,
    #[serde(default)]
    inert_option_programs: Vec<String>,
}

/// How a program uses its positional arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reads {
    /// Positional arguments are not files (`echo`, `ping HOST`).
    #[default]
    None,
    /// Every positional argument is a file it reads (`cat`, `sort`).
    Files,
    /// The first is a pattern or script, the rest files (`grep`, `sed`, `awk`, `jq`),
    /// unless a script option supplies it.
    ScriptThenFiles,
}

/// What the gate knows about one program (`programs.toml`, `[programs.X]` in the policy).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    /// Options accepted in read-only use (see `options.rs` for the entry syntax): the
    /// allow-list of rules granting `diagnostic`/`allowed` that list none themselves.
    #[serde(default)]
    pub options: Vec<String>,
    /// Further options whose value is the next word (for parsing only, not accepted).
    #[serde(default)]
    pub options_with_values: Vec<String>,
    #[serde(default)]
    pub reads: Reads,
    #[serde(default)]
    pub script_options: Vec<String>,
    #[serde(default)]
    pub style: Style,
    /// Reads names and metadata only: secret paths as arguments are fine.
    #[serde(default)]
    pub metadata: bool,
    /// Queries devices: raw block devices as arguments are fine.
    #[serde(default)]
    pub device_query: bool,
    /// Talks to the network: run-time arguments are exfiltration.
    #[serde(default)]
    pub network: bool,
    /// Sends its standard input over the network (`openssl s_client`, `nc`).
    #[serde(default)]
    pub sends_stdin: bool,
    /// Options that make directory arguments read recursively (`"*"`: always).
    #[serde(default)]
    pub recursive: Vec<String>,
    /// Every argument is plain data and no word is an option (`echo`, `printf`).
    #[serde(default)]
    pub free_args: bool,
    /// No option it has is harmful, so an argument only known at run time is fine
    /// (`inert_option_programs` in policy.toml).
    #[serde(skip)]
    pub inert_options: bool,
    #[serde(skip)]
    pub accepted: Vec<OptSpec>,
    #[serde(skip)]
    pub grammar: Grammar,
    /// Options whose value is a file it reads (`=@` in its list or any rule's list).
    #[serde(skip)]
    pub read_file_options: std::collections::BTreeSet<String>,
}

impl ProgramSpec {
    fn merge(&mut self, other: ProgramSpec) {
        self.options.extend(other.options);
        self.options_with_values.extend(other.options_with_values);
        self.script_options.extend(other.script_options);
        self.recursive.extend(other.recursive);
        if other.reads != Reads::None {
            self.reads = other.reads;
        }
        if other.style != Style::Gnu {
            self.style = other.style;
        }
        self.metadata |= other.metadata;
        self.device_query |= other.device_query;
        self.network |= other.network;
        self.sends_stdin |= other.sends_stdin;
        self.free_args |= other.free_args;
    }

    /// Whether this invocation reads its directory arguments recursively.
    pub fn is_recursive(&self, inv: &Invocation<'_>) -> bool {
        self.recursive.iter().any(|r| r == "*")
            || inv.opts.iter().any(|o| self.recursive.contains(&o.name))
    }

    /// The positional arguments that are files it reads.
    pub fn file_arguments<'i, 'a>(&self, inv: &'i Invocation<'a>) -> &'i [Option<&'a str>] {
        match self.reads {
            Reads::None => &[],
            Reads::Files => &inv.positional,
            Reads::ScriptThenFiles => {
                if inv
                    .opts
                    .iter()
                    .any(|o| self.script_options.contains(&o.name))
                {
                    &inv.positional
                } else {
                    inv.positional.get(1..).unwrap_or(&[])
                }
            }
        }
    }
}

static NO_SPEC: std::sync::LazyLock<ProgramSpec> = std::sync::LazyLock::new(ProgramSpec::default);

/// One rule. See the header of `policy.toml` for the meaning of each predicate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub verdict: Verdict,
    /// Verdicts for particular sources, where they differ from `verdict`.
    #[serde(default)]
    pub operator: Option<Verdict>,
    #[serde(default)]
    pub learned: Option<Verdict>,
    #[serde(default)]
    pub llm: Option<Verdict>,
    #[serde(default)]
    pub manual: Option<Verdict>,
    #[serde(default)]
    pub reason: String,
    pub programs: Vec<String>,
    /// The options this rule accepts (entry syntax in `options.rs`). For rules granting
    /// `diagnostic` or `allowed`, absent means the program's own read-only list.
    #[serde(default)]
    pub options: Option<Vec<String>>,
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
    /// Only when no positional argument is a pattern (`systemctl restart '*'`).
    #[serde(default)]
    pub no_glob_args: bool,
    #[serde(default)]
    pub max_args: Option<usize>,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// From `[[safety.rules]]`: the operator's own decision, options unchecked unless
    /// the rule lists them.
    #[serde(skip)]
    pub configured: bool,
    #[serde(skip)]
    pub accepted: Option<Vec<OptSpec>>,
}

impl Rule {
    /// The verdict for commands from `source`.
    pub fn verdict_for(&self, source: Source) -> Verdict {
        match source {
            Source::Operator => self.operator,
            Source::Learned => self.learned,
            Source::Llm => self.llm,
            Source::Manual => self.manual,
        }
        .unwrap_or(self.verdict)
    }
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
    /// Globs of files no command may read unattended.
    pub secret_paths: Vec<String>,
    /// Warnings about the configured rules (printed by `check-config`).
    pub warnings: Vec<String>,
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
        let programs_file: PolicyFile =
            toml::from_str(PROGRAMS).map_err(|e| format!("built-in programs: {e}"))?;
        let mut programs = programs_file.programs;
        for (name, spec) in file.programs {
            programs.entry(name).or_default().merge(spec);
        }
        for name in &file.inert_option_programs {
            programs.entry(name.clone()).or_default().inert_options = true;
        }
        let mut rules = Vec::new();
        let mut warnings = Vec::new();
        for (i, r) in safety.rules.iter().enumerate() {
            let verdict = Verdict::parse(&r.verdict)
                .map_err(|e| format!("safety.rules[{i}].verdict: {e}"))?;
            if verdict <= Verdict::Allowed && r.options.is_none() {
                let shown = std::iter::once(r.command.as_str())
                    .chain(r.args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                warnings.push(format!(
                    "safety.rules[{i}] ({shown}) grants {verdict} without listing the options it accepts: any option of {} passes (add options = [...], e.g. [\"-n=\", \"--quiet\"], or [] for none)",
                    r.command
                ));
            }
            rules.push(Rule {
                id: format!("config:{i}"),
                verdict,
                reason: format!("configured rule safety.rules[{i}]"),
                programs: vec![r.command.clone()],
                args: r.args.clone(),
                hosts: r.hosts.clone(),
                options: r.options.clone(),
                configured: true,
                ..Rule::default()
            });
        }
        rules.extend(self_dependency_rules(&self_cfg.depends_on_units));
        rules.extend(file.rules);
        // Compile allow-lists, and teach each program's grammar every option named.
        for (name, spec) in programs.iter_mut() {
            spec.accepted = compile(&spec.options).map_err(|e| format!("programs.{name}: {e}"))?;
            spec.grammar.style = spec.style;
            for o in &spec.accepted {
                spec.grammar.add(&o.name, o.arity);
                if o.constraint == options::Constraint::ReadFile {
                    spec.read_file_options.insert(o.name.clone());
                }
            }
            for o in &spec.options_with_values {
                spec.grammar.add(o, Arity::Value);
            }
        }
        for rule in rules.iter_mut() {
            if let Some(list) = &rule.options {
                let accepted = compile(list).map_err(|e| format!("rule {}: {e}", rule.id))?;
                for prog in &rule.programs {
                    let spec = programs
                        .entry(prog.rsplit('/').next().unwrap_or(prog).to_owned())
                        .or_default();
                    for o in &accepted {
                        spec.grammar.add(&o.name, o.arity);
                        if o.constraint == options::Constraint::ReadFile {
                            spec.read_file_options.insert(o.name.clone());
                        }
                    }
                }
                rule.accepted = Some(accepted);
            }
        }
        let llm_unknown = match safety.llm_unknown_commands.as_str() {
            "allow" => UnknownPolicy::Allow,
            "block" => UnknownPolicy::Block,
            _ => UnknownPolicy::Approval,
        };
        let mut secret_paths = file.secret_paths;
        secret_paths.extend(safety.secret_paths.iter().cloned());
        Ok(Self {
            programs,
            rules,
            llm_unknown,
            protected_containers: self_cfg.protected_containers.clone(),
            protected_paths: protected_paths.to_vec(),
            secret_paths,
            warnings,
        })
    }

    /// Whether a configured rule names this exact program path (`/opt/x/fix.sh`).
    pub fn configured_for_path(&self, path: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.configured && r.programs.iter().any(|p| p.contains('/') && p == path))
    }

    /// What the gate knows about `program` (an empty spec when nothing).
    pub fn spec(&self, program: &str) -> &ProgramSpec {
        self.programs.get(program).unwrap_or(&NO_SPEC)
    }

    pub fn options_with_values(&self, program: &str) -> &[String] {
        &self.spec(program).options_with_values
    }

    /// The first rule matching this invocation on `host`. With `trace`, says for each
    /// rule naming the program whether it matched and why not.
    pub fn find(
        &self,
        inv: &Invocation<'_>,
        host: Option<&str>,
        source: Source,
        mut trace: Option<&mut Vec<String>>,
    ) -> Option<&Rule> {
        let spec = self.spec(inv.program);
        for r in &self.rules {
            if !r.names(inv) {
                continue;
            }
            match r.check(inv, host, source, spec) {
                Ok(()) => {
                    if let Some(t) = trace.as_deref_mut() {
                        t.push(format!("rule {} ({}): matches", r.id, r.verdict));
                    }
                    return Some(r);
                }
                Err(why) => {
                    if let Some(t) = trace.as_deref_mut() {
                        t.push(format!("rule {} ({}): no: {why}", r.id, r.verdict));
                    }
                }
            }
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    #[cfg(test)]
    pub(crate) fn programs(&self) -> &BTreeMap<String, ProgramSpec> {
        &self.programs
    }
}

/// Restarting, reloading or stopping what Jarvis itself depends on (`[self]
/// depends_on_units`, its database by default) needs a person, unless an operator
/// configured it.
fn self_dependency_rules(units: &[String]) -> Vec<Rule> {
    if units.is_empty() {
        return Vec::new();
    }
    let units = units.join("|");
    let reason = "Jarvis depends on this service ([self] depends_on_units)";
    let restart = "restart|reload|try-restart|reload-or-restart|try-reload-or-restart|force-reload|condrestart";
    let stop = "stop|kill|disable|mask|disable --now";
    vec![
        Rule {
            id: "self-dependency".into(),
            verdict: Verdict::ApprovalRequired,
            operator: Some(Verdict::Allowed),
            reason: format!("restarts or reloads a service {reason}"),
            programs: vec!["systemctl".into()],
            positional: vec![restart.into()],
            positional_any: vec![units.clone()],
            ..Rule::default()
        },
        Rule {
            id: "self-dependency-stop".into(),
            verdict: Verdict::ApprovalRequired,
            reason: format!("stops a service {reason}"),
            programs: vec!["systemctl".into()],
            positional: vec![stop.into()],
            positional_any: vec![units.clone()],
            ..Rule::default()
        },
        Rule {
            id: "self-dependency-service".into(),
            verdict: Verdict::ApprovalRequired,
            operator: Some(Verdict::Allowed),
            reason: format!("restarts, reloads or stops a service {reason}"),
            programs: vec!["service".into()],
            positional: vec![units, format!("{restart}|stop")],
            options: Some(Vec::new()),
            accepted: Some(Vec::new()),
            ..Rule::default()
        },
    ]
}

fn compile(entries: &[String]) -> Result<Vec<OptSpec>, String> {
    entries.iter().map(|e| OptSpec::parse(e)).collect()
}

/// A program invocation split into what rules look at. An argument is `None` when its
/// value is only known at run time (a variable, a substitution, input from xargs).
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The program's name (the last path segment).
    pub program: &'a str,
    /// The program as written (`/opt/x/svc.sh`; `new` sets the name, the walk the
    /// path): configured rules that name a path match it exactly, so `svc.sh`
    /// elsewhere does not pass for the one allowed.
    pub path: &'a str,
    /// Options as written (words starting with `-`, before `--`), with the value that
    /// follows an option known to take one: what `any_flag`/`no_flag` look at.
    pub flags: Vec<(&'a str, Option<Option<&'a str>>)>,
    /// Options as the program reads them (clusters split, values attached).
    pub opts: Vec<Opt<'a>>,
    pub positional: Vec<Option<&'a str>>,
    /// Arguments only known at run time that could be options.
    pub dynamic_option_slots: usize,
    /// Every argument in order.
    pub all: Vec<Option<&'a str>>,
    /// All arguments joined, lower-cased, for `text_any`.
    pub text: String,
}

impl<'a> Invocation<'a> {
    pub fn new(program: &'a str, args: &'a [Option<String>], spec: &ProgramSpec) -> Self {
        let mut flags = Vec::new();
        let mut i = 0;
        let mut only_positional = false;
        while i < args.len() {
            match args[i].as_deref() {
                Some("--") if !only_positional => only_positional = true,
                Some(w) if !only_positional && w.starts_with('-') && w.len() > 1 => {
                    let takes_value = spec.options_with_values.iter().any(|o| o == w);
                    if takes_value && i + 1 < args.len() {
                        flags.push((w, Some(args[i + 1].as_deref())));
                        i += 1;
                    } else {
                        flags.push((w, None));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let parsed = if spec.free_args {
            Parsed {
                positional: args.iter().map(|a| a.as_deref()).collect(),
                ..Parsed::default()
            }
        } else {
            options::parse(args, &spec.grammar)
        };
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
            opts: parsed.opts,
            positional: parsed.positional,
            dynamic_option_slots: parsed.dynamic_option_slots,
            all: args.iter().map(|a| a.as_deref()).collect(),
            text,
        }
    }

    /// The options as the gate read them, for `--explain`.
    pub fn describe(&self) -> String {
        let opts: Vec<String> = self
            .opts
            .iter()
            .map(|o| {
                let mut s = o.name.clone();
                for v in &o.values {
                    s.push(' ');
                    s.push_str(&v.map_or("$…".to_owned(), |v| format!("{v:?}")));
                }
                if !o.known {
                    s.push_str(" (unknown)");
                }
                s
            })
            .collect();
        let pos: Vec<String> = self
            .positional
            .iter()
            .map(|p| p.map_or("$…".to_owned(), |p| format!("{p:?}")))
            .collect();
        format!(
            "program {:?}; options [{}]; arguments [{}]",
            self.path,
            opts.join(", "),
            pos.join(", ")
        )
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
    /// Whether the rule is about this program at all.
    fn names(&self, inv: &Invocation<'_>) -> bool {
        self.programs.iter().any(|p| {
            if p.contains('/') {
                p == inv.path
            } else {
                p == inv.program
            }
        })
    }

    /// Whether the rule matches this invocation; `Err` says why not.
    fn check(
        &self,
        inv: &Invocation<'_>,
        host: Option<&str>,
        source: Source,
        spec: &ProgramSpec,
    ) -> Result<(), String> {
        if !self.hosts.is_empty() && !host.is_some_and(|h| self.hosts.iter().any(|x| x == h)) {
            return Err(format!("only for hosts {}", self.hosts.join(", ")));
        }
        if self.no_glob_args && inv.positional.iter().flatten().any(|p| secrets::is_glob(p)) {
            return Err("an argument is a pattern the program expands itself".into());
        }
        if self.no_args && !inv.positional.is_empty() {
            return Err("only without arguments".into());
        }
        if let Some(m) = self.max_args
            && inv.positional.len() > m
        {
            return Err(format!("only with at most {m} arguments"));
        }
        let consumed = if self.positional.is_empty() {
            0
        } else {
            match_positional(&self.positional, &inv.positional).ok_or_else(|| {
                format!("arguments do not start with {}", self.positional.join(" "))
            })?
        };
        if !self.args.is_empty() && match_positional(&self.args, &inv.all).is_none() {
            return Err(format!(
                "arguments do not start with {}",
                self.args.join(" ")
            ));
        }
        // Case does not matter here (`Gopher://`, `kubectl get SECRET`), and an
        // argument that is itself a pattern (`systemctl restart 'ssh*'`) counts when it
        // could match.
        // A rule that holds or blocks also matches an argument only known at run time
        // (`kubectl get $(echo secret)`); a granting rule never does.
        let holds = self.verdict_for(source) > Verdict::Allowed;
        if !self.positional_any.is_empty()
            && !inv.positional.iter().any(|p| {
                (p.is_none() && holds)
                    || p.is_some_and(|p| {
                        let p = p.to_lowercase();
                        self.positional_any.iter().any(|alts| {
                            alts.split('|').any(|a| {
                                let a = a.to_lowercase();
                                word_glob(&a, &p)
                                    || (secrets::is_glob(&p)
                                        && secrets::may_match(
                                            &p.replace('/', "\u{1}"),
                                            &a.replace('*', "**").replace('/', "\u{1}"),
                                        ))
                            })
                        })
                    })
            })
        {
            return Err(format!(
                "no argument is one of {}",
                self.positional_any.join(", ")
            ));
        }
        if !self.any_flag.is_empty() && !self.any_flag.iter().any(|f| has_flag(inv, f)) {
            return Err(format!("none of the options {}", self.any_flag.join(" ")));
        }
        if let Some(f) = self.no_flag.iter().find(|f| has_flag(inv, f)) {
            return Err(format!("has the option {f}"));
        }
        let rest = &inv.positional[consumed..];
        if !self.paths.is_empty() {
            // Every remaining argument must be a known path under one of the globs.
            if rest.is_empty() {
                return Err("no path argument".into());
            }
            let all_safe = rest.iter().all(|a| {
                a.is_some_and(|a| {
                    let n = normalize_path(a);
                    !secrets::opaque(a) && self.paths.iter().any(|g| glob(g, &n))
                })
            });
            if !all_safe {
                return Err(format!("a path is not under {}", self.paths.join(", ")));
            }
        }
        if !self.paths_any.is_empty() {
            // "Some argument is such a path": one only known at run time, or a glob
            // that could expand to one (`/et?/passwd`), counts.
            let any = rest.iter().any(|a| match a {
                None => true,
                Some(a) if secrets::opaque(a) => true,
                Some(a) => {
                    let n = normalize_path(a);
                    self.paths_any
                        .iter()
                        .any(|g| glob(g, &n) || (secrets::is_glob(&n) && secrets::may_reach(&n, g)))
                }
            });
            if !any {
                return Err(format!("no path under {}", self.paths_any.join(", ")));
            }
        }
        if !self.text_any.is_empty() && !self.text_any.iter().any(|t| inv.text.contains(t.as_str()))
        {
            return Err(format!(
                "the text contains none of {}",
                self.text_any.join(", ")
            ));
        }
        // Granting is an allow-list; holding or blocking matches whatever the options.
        if self.verdict_for(source) <= Verdict::Allowed {
            self.check_options(inv, spec)?;
        }
        Ok(())
    }

    /// A granting rule is an allow-list: every option must be on it.
    fn check_options(&self, inv: &Invocation<'_>, spec: &ProgramSpec) -> Result<(), String> {
        let accepted: &[OptSpec] = match (&self.accepted, self.configured) {
            (Some(list), _) => list,
            // A configured rule without a list: the operator's decision, as before.
            (None, true) => return Ok(()),
            (None, false) => &spec.accepted,
        };
        if spec.free_args {
            return Ok(());
        }
        if inv.dynamic_option_slots > 0 && !self.configured && !spec.inert_options {
            return Err("an argument only known at run time could be any option".into());
        }
        for o in &inv.opts {
            if !o.known {
                return Err(format!("the option {} is not one the gate knows", o.name));
            }
            let Some(entry) = accepted.iter().find(|a| a.name == o.name) else {
                return Err(format!("the option {} is not on this rule's list", o.name));
            };
            entry.accepts(o)?;
        }
        Ok(())
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
    // As the program reads it too (`-bn1` holds -b; `-s reload` is -s with a value).
    match spec.split_once('=') {
        None if inv.opts.iter().any(|o| o.name == spec) => return true,
        Some((name, g))
            if spec.starts_with('-')
                && inv.opts.iter().any(|o| {
                    o.name == name
                        && o.values
                            .first()
                            .copied()
                            .flatten()
                            .is_some_and(|v| word_glob(g, v))
                }) =>
        {
            return true;
        }
        _ => {}
    }
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

    /// A built-in rule granting diagnostic or allowed is an allow-list: it lists the
    /// options it accepts, or every program it names has a read-only list of its own
    /// (programs.toml or `[programs.X]` in policy.toml).
    #[test]
    fn granting_rules_say_which_options_they_accept() {
        let p = Policy::built_in();
        let mut missing = Vec::new();
        for r in p
            .rules()
            .iter()
            .filter(|r| !r.configured && r.options.is_none())
        {
            let grants = [
                Source::Operator,
                Source::Learned,
                Source::Llm,
                Source::Manual,
            ]
            .iter()
            .any(|s| r.verdict_for(*s) <= Verdict::Allowed);
            if !grants {
                continue;
            }
            for prog in &r.programs {
                // An empty list is a decision too (the program takes no options).
                if !p.programs().contains_key(prog.as_str()) {
                    missing.push(format!("{} ({prog})", r.id));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "granting rules without an option list: {missing:?}"
        );
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
