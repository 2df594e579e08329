//! The walk over a parsed command: every program that would run, every redirection,
//! every substitution, judged and folded into one verdict (the worst part wins).

use brush_parser::ast::{
    Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, Pipeline, SeparatorOperator, SimpleCommand,
};
use brush_parser::word::{self, WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

use super::policy::{Invocation, UnknownPolicy, glob, normalize_path};
use super::{Context, Judgement, MAX_COMMAND_BYTES, Policy, Source, Verdict};

/// Nesting (sh -c inside ssh inside sudo ...) deeper than this is blocked.
const MAX_DEPTH: u32 = 8;
/// Brackets nested deeper than this are blocked before parsing.
const MAX_BRACKET_DEPTH: usize = 32;

/// Runs a parser call, turning a panic inside the parser into an error: the gate fails
/// closed (blocks) rather than taking its caller down.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the shell parser failed on this input".into()))
}

/// A run of 10+ digits right before `<` or `>`: brush-parser 0.4 panics converting such
/// a file descriptor number, so it never reaches the parser.
fn has_huge_fd_number(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            run += 1;
        } else {
            if run >= 10 && (c == '<' || c == '>') {
                return true;
            }
            run = 0;
        }
    }
    false
}

/// The deepest nesting of ( { [ in the text, quotes ignored (an over-estimate is fine:
/// it only makes the gate stricter).
fn bracket_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '(' | '{' | '[' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ash",
    "ksh",
    "mksh",
    "rbash",
    "fish",
    "csh",
    "tcsh",
    "busybox-sh",
];
const INTERPRETERS: &[&str] = &[
    "python",
    "python2",
    "python3",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "php",
    "lua",
    "luajit",
    "Rscript",
    "deno",
    "bun",
    "pwsh",
    "powershell",
    "tclsh",
    "wish",
    "irb",
    "jshell",
    "osascript",
    "groovy",
    "scala",
];
const NONE: &[&str] = &[];
const AWKS: &[&str] = &["awk", "gawk", "mawk", "nawk"];
const DANGEROUS_VARS: &[&str] = &[
    "PATH",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "BASH_ENV",
    "ENV",
    "IFS",
    "PROMPT_COMMAND",
    "HISTFILE",
    "HISTSIZE",
    "HISTFILESIZE",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "GLOBIGNORE",
    "CDPATH",
];

pub(super) fn judge(command: &str, ctx: &Context<'_>, policy: &Policy) -> Judgement {
    if command.len() > MAX_COMMAND_BYTES {
        return Judgement {
            verdict: Verdict::Blocked,
            reason: format!("command longer than {MAX_COMMAND_BYTES} bytes"),
            rule: "too-long".into(),
        };
    }
    let mut w = Walker {
        policy,
        ctx,
        worst: None,
    };
    w.shell_text(command, 0, Stage::default());
    w.worst.unwrap_or(Judgement {
        verdict: Verdict::Blocked,
        reason: "empty command".into(),
        rule: "empty".into(),
    })
}

/// Where a command sits in its pipeline.
#[derive(Debug, Clone, Copy, Default)]
struct Stage {
    /// Standard input comes from a pipe.
    piped: bool,
    /// Standard input comes from a file, here-document or here-string.
    stdin_redirected: bool,
    /// Runs in the background (`&`).
    background: bool,
}

struct Walker<'a> {
    policy: &'a Policy,
    ctx: &'a Context<'a>,
    worst: Option<Judgement>,
}

/// A word after static analysis: its text if fully known before running.
type Arg = Option<String>;

fn parser_options() -> ParserOptions {
    ParserOptions::default()
}

impl Walker<'_> {
    fn record(&mut self, verdict: Verdict, rule: &str, reason: impl Into<String>) {
        if self.worst.as_ref().is_none_or(|w| verdict > w.verdict) {
            self.worst = Some(Judgement {
                verdict,
                reason: reason.into(),
                rule: rule.to_owned(),
            });
        }
    }

    fn block(&mut self, rule: &str, reason: impl Into<String>) {
        self.record(Verdict::Blocked, rule, reason);
    }

    /// Parses and walks shell text (the whole command, or `sh -c` / `eval` strings).
    fn shell_text(&mut self, text: &str, depth: u32, stage: Stage) {
        if depth > MAX_DEPTH {
            self.block(
                "too-deep",
                format!("commands nested more than {MAX_DEPTH} levels deep"),
            );
            return;
        }
        if text.trim().is_empty() {
            if depth == 0 {
                self.block("empty", "empty command");
            }
            return;
        }
        if text.contains('\0') {
            self.block("unparseable", "the command contains a NUL byte");
            return;
        }
        // Checked before parsing: the parser backtracks exponentially on some
        // arithmetic and deeply nested input, so a short string could stall the gate.
        if text.contains("((") {
            self.block(
                "arithmetic",
                "arithmetic expressions (( )) and $(( )) are not supported",
            );
            return;
        }
        if bracket_depth(text) > MAX_BRACKET_DEPTH {
            self.block(
                "too-deep",
                format!("brackets nested more than {MAX_BRACKET_DEPTH} deep"),
            );
            return;
        }
        if text.replace("<<<", "").contains("<<") {
            // brush-parser 0.4's tokenizer can loop, allocating without bound, on a
            // here-document inside $( ) (found by fuzzing). Here-documents also feed
            // shells; refusing them costs remediation nothing.
            self.block(
                "here-document",
                "here-documents (<<) are not supported; pass the text as an argument or use <<<",
            );
            return;
        }
        if text.contains("${") {
            // The parser's ${...} rules (subscripts, indirection) backtrack exponentially
            // on some input (found by fuzzing); `$NAME` covers what remediation needs.
            self.block(
                "parameter-expansion",
                "${...} parameter expansions are not supported; use $NAME",
            );
            return;
        }
        if has_huge_fd_number(text) {
            self.block(
                "unparseable",
                "a redirection's file descriptor number is too large",
            );
            return;
        }
        let parsed = guarded(|| {
            let mut parser = Parser::new(std::io::Cursor::new(text), &parser_options());
            parser.parse_program().map_err(|e| e.to_string())
        });
        let program = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.block(
                    "unparseable",
                    format!("cannot parse as shell ({e}); only commands Jarvis can read may run"),
                );
                return;
            }
        };
        if program.complete_commands.is_empty() {
            self.block("empty", "no command");
            return;
        }
        for list in &program.complete_commands {
            self.list(list, depth, stage);
        }
    }

    fn list(&mut self, list: &CompoundList, depth: u32, stage: Stage) {
        for item in &list.0 {
            let background = matches!(item.1, SeparatorOperator::Async);
            let stage = Stage {
                background: stage.background || background,
                ..stage
            };
            self.pipeline(&item.0.first, depth, stage);
            for next in &item.0.additional {
                let p = match next {
                    brush_parser::ast::AndOr::And(p) | brush_parser::ast::AndOr::Or(p) => p,
                };
                self.pipeline(p, depth, stage);
            }
        }
    }

    fn pipeline(&mut self, p: &Pipeline, depth: u32, stage: Stage) {
        for (i, cmd) in p.seq.iter().enumerate() {
            let stage = Stage {
                piped: stage.piped || i > 0,
                ..stage
            };
            self.command(cmd, depth, stage);
        }
    }

    fn command(&mut self, cmd: &Command, depth: u32, stage: Stage) {
        match cmd {
            Command::Simple(sc) => self.simple(sc, depth, stage),
            Command::Compound(cc, redirects) => {
                let mut stage = stage;
                if let Some(r) = redirects {
                    for io in &r.0 {
                        stage.stdin_redirected |= self.redirect(io, depth);
                    }
                }
                self.compound(cc, depth, stage);
            }
            Command::Function(_) => self.block(
                "function-definition",
                "function definitions are not allowed",
            ),
            Command::ExtendedTest(test, _) => {
                let text = test.to_string();
                if text.contains("$(")
                    || text.contains('`')
                    || text.contains("<(")
                    || text.contains(">(")
                {
                    self.block(
                        "substitution-in-test",
                        "command substitution inside [[ ]] is not allowed",
                    );
                } else {
                    self.record(Verdict::Diagnostic, "test", "a conditional test");
                }
            }
        }
    }

    fn compound(&mut self, cc: &CompoundCommand, depth: u32, stage: Stage) {
        match cc {
            CompoundCommand::BraceGroup(g) => self.list(&g.list, depth, stage),
            CompoundCommand::Subshell(s) => self.list(&s.list, depth, stage),
            CompoundCommand::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word(&w.value, depth);
                }
                self.list(&f.body.list, depth, stage);
            }
            CompoundCommand::CaseClause(c) => {
                self.word(&c.value.value, depth);
                for item in &c.cases {
                    for p in &item.patterns {
                        self.word(&p.value, depth);
                    }
                    if let Some(cmd) = &item.cmd {
                        self.list(cmd, depth, stage);
                    }
                }
            }
            CompoundCommand::IfClause(i) => {
                self.list(&i.condition, depth, stage);
                self.list(&i.then, depth, stage);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        self.list(c, depth, stage);
                    }
                    self.list(&e.body, depth, stage);
                }
            }
            CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
                self.list(&w.0, depth, stage);
                self.list(&w.1.list, depth, stage);
            }
            CompoundCommand::Arithmetic(_) | CompoundCommand::ArithmeticForClause(_) => {
                self.block("arithmetic", "arithmetic commands are not supported")
            }
            CompoundCommand::Coprocess(_) => {
                self.block("coprocess", "coprocesses are not supported")
            }
        }
    }

    /// Statically evaluates a word: its text if fully known, judging any command
    /// substitution inside it.
    fn word(&mut self, raw: &str, depth: u32) -> Arg {
        let pieces =
            match guarded(|| word::parse(raw, &parser_options()).map_err(|e| e.to_string())) {
                Ok(p) => p,
                Err(e) => {
                    self.block(
                        "unparseable",
                        format!("cannot parse the word {raw:?} ({e})"),
                    );
                    return None;
                }
            };
        let mut out = String::new();
        let known = self.pieces(&pieces, depth, &mut out, false);
        // Unquoted brace expansion ({a,b}, {1..3}) and globs are resolved by the shell
        // at run time: the text is not what runs.
        let unquoted_text: String = pieces
            .iter()
            .filter_map(|p| match &p.piece {
                WordPiece::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let braces = unquoted_text.contains('{')
            && (unquoted_text.contains(',') || unquoted_text.contains(".."));
        (known && !braces).then_some(out)
    }

    fn pieces(
        &mut self,
        pieces: &[WordPieceWithSource],
        depth: u32,
        out: &mut String,
        in_dquotes: bool,
    ) -> bool {
        let mut known = true;
        for p in pieces {
            match &p.piece {
                WordPiece::Text(t) => out.push_str(t),
                WordPiece::SingleQuotedText(t) => out.push_str(t),
                WordPiece::AnsiCQuotedText(t) => {
                    // $'...' escapes (\x72, \162) could spell anything: only plain text counts.
                    if t.contains('\\') {
                        known = false;
                    } else {
                        out.push_str(t);
                    }
                }
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    known &= self.pieces(inner, depth, out, true);
                }
                WordPiece::EscapeSequence(e) => {
                    let c = e.strip_prefix('\\').unwrap_or(e);
                    if in_dquotes && !matches!(c, "$" | "`" | "\"" | "\\" | "\n") {
                        out.push('\\');
                    }
                    if c != "\n" {
                        out.push_str(c);
                    }
                }
                // `~` is the home folder: known enough to judge paths under it.
                WordPiece::TildeExpansion(brush_parser::word::TildeExpr::Home) => out.push('~'),
                WordPiece::TildeExpansion(_) => {
                    out.push('~');
                    known = false;
                }
                WordPiece::ParameterExpansion(_) => known = false,
                WordPiece::CommandSubstitution(c) | WordPiece::BackquotedCommandSubstitution(c) => {
                    // Its output becomes an argument; what it runs is judged like any command.
                    self.shell_text(c, depth + 1, Stage::default());
                    known = false;
                }
                WordPiece::ArithmeticExpression(e) => {
                    let text = e.value.as_str();
                    if text.contains("$(") || text.contains('`') {
                        self.block(
                            "substitution-in-arithmetic",
                            "command substitution inside $(( )) is not allowed",
                        );
                    }
                    known = false;
                }
            }
        }
        known
    }

    /// Judges a redirection; returns whether it feeds standard input.
    fn redirect(&mut self, io: &IoRedirect, depth: u32) -> bool {
        match io {
            IoRedirect::File(fd, kind, target) => {
                let path = match target {
                    IoFileRedirectTarget::Filename(w) => self.word(&w.value, depth),
                    IoFileRedirectTarget::Fd(_) => return false,
                    IoFileRedirectTarget::Duplicate(w) => {
                        let v = self.word(&w.value, depth);
                        // `>&2`, `2>&1`, `>&-` duplicate descriptors; anything else is a file.
                        if v.as_deref()
                            .is_some_and(|v| v == "-" || v.chars().all(|c| c.is_ascii_digit()))
                        {
                            return false;
                        }
                        v
                    }
                    IoFileRedirectTarget::ProcessSubstitution(_, sub) => {
                        self.list(&sub.list, depth + 1, Stage::default());
                        return matches!(kind, IoFileRedirectKind::Read);
                    }
                };
                match kind {
                    IoFileRedirectKind::Read => fd.is_none_or(|f| f == 0),
                    IoFileRedirectKind::DuplicateInput => false,
                    IoFileRedirectKind::Write
                    | IoFileRedirectKind::Append
                    | IoFileRedirectKind::Clobber
                    | IoFileRedirectKind::DuplicateOutput => {
                        self.write_target(path.as_deref());
                        false
                    }
                    IoFileRedirectKind::ReadAndWrite => {
                        self.write_target(path.as_deref());
                        fd.is_none_or(|f| f == 0)
                    }
                }
            }
            // `shell_text` refuses `<<` before parsing; should one arrive anyway, block.
            IoRedirect::HereDocument(..) => {
                self.block("here-document", "here-documents (<<) are not supported");
                true
            }
            IoRedirect::HereString(fd, w) => {
                self.word(&w.value, depth);
                fd.is_none_or(|f| f == 0)
            }
            IoRedirect::OutputAndError(w, _) => {
                let p = self.word(&w.value, depth);
                self.write_target(p.as_deref());
                false
            }
        }
    }

    /// Judges writing to a path (a redirection, `tee`, ...).
    fn write_target(&mut self, path: Option<&str>) {
        let Some(raw) = path else {
            self.record(
                Verdict::ApprovalRequired,
                "write-dynamic",
                "writes to a path only known at run time",
            );
            return;
        };
        let p = normalize_path(raw);
        const BLOCKED: &[&str] = &["/dev/tcp/**", "/dev/udp/**"];
        const DEVICES: &[&str] = &[
            "/dev/sd*",
            "/dev/hd*",
            "/dev/vd*",
            "/dev/xvd*",
            "/dev/nvme*",
            "/dev/mmcblk*",
            "/dev/mapper/**",
            "/dev/dm-*",
            "/dev/loop*",
            "/dev/md*",
            "/dev/mem",
            "/dev/kmem",
            "/dev/port",
            "/dev/disk/**",
            "/dev/zram*",
        ];
        const SYSTEM: &[&str] = &[
            "/proc/**",
            "/sys/**",
            "/etc",
            "/etc/**",
            "/boot/**",
            "/usr/**",
            "/bin/**",
            "/sbin/**",
            "/lib/**",
            "/lib32/**",
            "/lib64/**",
            "/root/.ssh/**",
            "**/.ssh/**",
            "**/.bash_history",
            "**/.zsh_history",
            "**/.history",
            "/var/log/**",
            "/var/lib/**",
            "/",
        ];
        if BLOCKED.iter().any(|g| glob(g, &p)) {
            self.block(
                "network-redirect",
                format!("redirection to {p} opens a network connection (a reverse shell)"),
            );
        } else if DEVICES.iter().any(|g| glob(g, &p)) {
            self.block(
                "block-device-write",
                format!("writes to the block device {p}"),
            );
        } else if SYSTEM.iter().any(|g| glob(g, &p)) {
            self.block(
                "system-file-write",
                format!("writes to {p}, a system, log, SSH or kernel path"),
            );
        } else if p == "/dev/null"
            || p == "/dev/stdout"
            || p == "/dev/stderr"
            || glob("/dev/fd/*", &p)
        {
            self.record(
                Verdict::Diagnostic,
                "write-null",
                "output discarded or duplicated",
            );
        } else if glob("/tmp/**", &p) || glob("/var/tmp/**", &p) {
            self.record(
                Verdict::Allowed,
                "write-tmp",
                format!("writes {p} under a temporary folder"),
            );
        } else {
            self.record(
                Verdict::ApprovalRequired,
                "write-file",
                format!("writes to {p}"),
            );
        }
    }

    fn simple(&mut self, sc: &SimpleCommand, depth: u32, stage: Stage) {
        let mut stage = stage;
        let mut argv: Vec<Arg> = Vec::new();
        let mut assignments = 0;
        let items = sc
            .prefix
            .iter()
            .flat_map(|p| p.0.iter())
            .map(Some)
            .chain(std::iter::once(None))
            .chain(sc.suffix.iter().flat_map(|s| s.0.iter()).map(Some));
        for item in items {
            match item {
                None => {
                    if let Some(w) = &sc.word_or_name {
                        argv.push(self.word(&w.value, depth));
                    }
                }
                Some(CommandPrefixOrSuffixItem::IoRedirect(io)) => {
                    stage.stdin_redirected |= self.redirect(io, depth)
                }
                Some(CommandPrefixOrSuffixItem::Word(w)) => argv.push(self.word(&w.value, depth)),
                Some(CommandPrefixOrSuffixItem::AssignmentWord(a, w)) => {
                    if argv.is_empty() {
                        assignments += 1;
                        self.assignment(&a.name.to_string(), &w.value, depth);
                    } else {
                        // After the command name it is an ordinary argument (`env X=1`).
                        argv.push(self.word(&w.value, depth));
                    }
                }
                Some(CommandPrefixOrSuffixItem::ProcessSubstitution(_, sub)) => {
                    self.list(&sub.list, depth + 1, Stage::default());
                    argv.push(None);
                }
            }
        }
        if argv.is_empty() {
            if assignments > 0 {
                self.record(Verdict::Diagnostic, "assignment", "sets a shell variable");
            }
            return;
        }
        self.invocation(&argv, depth, stage);
    }

    fn assignment(&mut self, name: &str, value: &str, depth: u32) {
        self.dangerous_variable(name.split('[').next().unwrap_or(name));
        self.word(value, depth);
    }

    /// Blocks setting variables that change what runs (PATH, LD_*) or hide history.
    /// Returns whether it blocked.
    fn dangerous_variable(&mut self, name: &str) -> bool {
        let dangerous = DANGEROUS_VARS.contains(&name) || name.starts_with("LD_");
        if dangerous {
            self.block(
                "dangerous-variable",
                format!("setting {name} changes what programs run or hides history"),
            );
        }
        dangerous
    }

    /// Judges one program invocation, looking through wrappers and into nested commands.
    fn invocation(&mut self, argv: &[Arg], depth: u32, stage: Stage) {
        if depth > MAX_DEPTH {
            self.block(
                "too-deep",
                format!("commands nested more than {MAX_DEPTH} levels deep"),
            );
            return;
        }
        let Some(first) = argv.first() else { return };
        let Some(name) = first.as_deref() else {
            self.block(
                "dynamic-command",
                "the program to run comes from a variable or substitution, so it cannot be judged",
            );
            return;
        };
        if name.chars().any(char::is_control) {
            self.block(
                "dynamic-command",
                format!("the program name {name:?} contains control characters"),
            );
            return;
        }
        if name != "[" && name.contains(['*', '?', '[']) {
            self.block(
                "dynamic-command",
                format!("the program name {name:?} is a glob"),
            );
            return;
        }
        let program = name.rsplit('/').next().unwrap_or(name);
        let args = &argv[1..];
        if program.is_empty() {
            self.block("dynamic-command", "empty program name");
            return;
        }

        if self.self_protection(program, args) {
            return;
        }
        if self.wrapper(program, args, depth, stage) {
            return;
        }
        if self.nested(program, args, depth, stage) {
            return;
        }

        let opts = self.policy.options_with_values(program).to_vec();
        let inv = Invocation {
            path: name,
            ..Invocation::new(program, args, &opts)
        };
        let verdict = match self.policy.find(&inv, self.ctx.host) {
            Some(rule) => {
                let (v, id, reason) = (rule.verdict, rule.id.clone(), rule.reason.clone());
                self.record(v, &id, format!("{}: {reason}", display(argv)));
                v
            }
            None => {
                let (v, rule, why) = self.unknown();
                self.record(v, rule, format!("{}: {why}", display(argv)));
                v
            }
        };
        // Programs that write the files they name.
        if matches!(program, "tee") {
            for a in inv.positional.iter() {
                self.write_target(*a);
            }
        }
        if stage.background && verdict >= Verdict::Allowed {
            self.record(
                Verdict::ApprovalRequired,
                "background",
                format!(
                    "{}: a state-changing command in the background cannot be followed",
                    display(argv)
                ),
            );
        }
    }

    /// What no rule knows is decided by who proposed it.
    fn unknown(&self) -> (Verdict, &'static str, String) {
        match self.ctx.source {
            Source::Operator => (Verdict::Allowed, "unknown-operator", "no rule knows it; allowed as an operator-configured command".into()),
            Source::Learned if self.ctx.previously_verified => {
                (Verdict::Allowed, "unknown-learned-verified", "no rule knows it; allowed because it was verified to work before".into())
            }
            Source::Learned => (Verdict::ApprovalRequired, "unknown-learned", "no rule knows it and it was never verified to work".into()),
            Source::Manual => (Verdict::ApprovalRequired, "unknown-manual", "no rule knows it; a person must approve it".into()),
            Source::Llm => match self.policy.llm_unknown {
                UnknownPolicy::Allow => (Verdict::Allowed, "unknown-llm", "no rule knows it; allowed by safety.llm_unknown_commands".into()),
                UnknownPolicy::Block => (Verdict::Blocked, "unknown-llm", "no rule knows it; LLM commands must be known (safety.llm_unknown_commands = block)".into()),
                UnknownPolicy::Approval => (Verdict::ApprovalRequired, "unknown-llm", "no rule knows it; an LLM-proposed command needs approval".into()),
            },
        }
    }

    /// Blocks commands acting on Jarvis itself. Returns true when it decided.
    fn self_protection(&mut self, program: &str, args: &[Arg]) -> bool {
        let known: Vec<&str> = args.iter().filter_map(|a| a.as_deref()).collect();
        let names_protected = |w: &str| {
            self.policy.protected_containers.iter().any(|c| {
                w == c
                    || w.strip_prefix(c.as_str())
                        .is_some_and(|r| r.starts_with(['-', '_', '.', ':']))
                    || w.ends_with(&format!("/{c}"))
            })
        };
        let touches_path = known.iter().any(|w| {
            self.policy
                .protected_paths
                .iter()
                .any(|p| !p.is_empty() && normalize_path(w).starts_with(&normalize_path(p)))
        });
        let container_tools = [
            "docker",
            "podman",
            "nerdctl",
            "docker-compose",
            "podman-compose",
            "systemctl",
            "kill",
            "pkill",
            "killall",
            "ctr",
            "crictl",
        ];
        let read_only = [
            "ps",
            "logs",
            "inspect",
            "stats",
            "top",
            "port",
            "status",
            "is-active",
            "show",
        ];
        let acts_on_protected = container_tools.contains(&program)
            && known.iter().any(|w| names_protected(w))
            && !known.iter().any(|w| read_only.contains(w));
        if acts_on_protected || touches_path {
            self.block(
                "self-protection",
                format!(
                    "{}: acts on Jarvis itself (its container or data); use POST /self-restart instead",
                    display_parts(program, args)
                ),
            );
            return true;
        }
        false
    }

    /// Looks through wrapper programs to what they run. Returns true when handled.
    fn wrapper(&mut self, program: &str, args: &[Arg], depth: u32, stage: Stage) -> bool {
        // (options taking a value, options that end option parsing and mean "no command")
        let rest: Option<&[Arg]> = match program {
            "sudo" | "doas" => {
                if args.iter().any(|a| {
                    matches!(
                        a.as_deref(),
                        Some("-s" | "-i" | "--shell" | "--login" | "-e" | "--edit")
                    )
                }) {
                    self.block(
                        "interactive-shell",
                        format!("{program} -s/-i/-e opens a shell or editor"),
                    );
                    return true;
                }
                let rest = skip_options(
                    args,
                    &[
                        "-u",
                        "--user",
                        "-g",
                        "--group",
                        "-h",
                        "--host",
                        "-p",
                        "--prompt",
                        "-C",
                        "--close-from",
                        "-U",
                        "--other-user",
                        "-r",
                        "--role",
                        "-t",
                        "--type",
                        "-D",
                        "--chdir",
                        "-T",
                        "--command-timeout",
                    ],
                );
                // `sudo NAME=VALUE cmd` sets NAME for cmd: look past the assignments.
                let assignments = rest
                    .iter()
                    .take_while(|a| a.as_deref().is_some_and(looks_like_assignment))
                    .count();
                for (k, a) in rest[..assignments].iter().enumerate() {
                    let a = a.as_deref().unwrap_or("");
                    if !is_assignment(a) {
                        // Not a shell identifier: it may be taken as the program too.
                        self.invocation(&rest[k..], depth + 1, stage);
                    } else if self.dangerous_variable(a.split('=').next().unwrap_or("")) {
                        return true;
                    }
                }
                Some(&rest[assignments..])
            }
            "nice" => Some(skip_options(args, &["-n", "--adjustment"])),
            "ionice" => Some(skip_options(
                args,
                &[
                    "-c",
                    "--class",
                    "-n",
                    "--classdata",
                    "-p",
                    "--pid",
                    "-P",
                    "--pgid",
                    "-u",
                    "--uid",
                ],
            )),
            "nohup" | "builtin" | "setsid" | "time" | "unbuffer" | "catchsegv" => {
                Some(skip_options(args, NONE))
            }
            "stdbuf" => Some(skip_options(
                args,
                &["-i", "-o", "-e", "--input", "--output", "--error"],
            )),
            "taskset" => {
                let r = skip_options(args, NONE);
                Some(
                    if args
                        .iter()
                        .any(|a| matches!(a.as_deref(), Some("-c" | "--cpu-list")))
                    {
                        r
                    } else {
                        r.get(1..).unwrap_or(&[])
                    },
                )
            }
            "timeout" => {
                let r = skip_options(args, &["-s", "--signal", "-k", "--kill-after"]);
                Some(r.get(1..).unwrap_or(&[])) // the duration
            }
            "chroot" => {
                self.record(
                    Verdict::ApprovalRequired,
                    "chroot",
                    "runs a command in another root",
                );
                let r = skip_options(args, &["--userspec", "--groups"]);
                match r.get(1..) {
                    Some(c) if !c.is_empty() => Some(c),
                    _ => {
                        self.block(
                            "interactive-shell",
                            "chroot without a command opens a shell",
                        );
                        return true;
                    }
                }
            }
            "flock" => {
                let r = skip_options(args, &["-w", "--timeout", "-E", "--conflict-exit-code"]);
                if let Some(pos) = args
                    .iter()
                    .position(|a| matches!(a.as_deref(), Some("-c" | "--command")))
                {
                    return self.nested_string(program, args.get(pos + 1), depth, stage);
                }
                Some(r.get(1..).unwrap_or(&[]))
            }
            "command" => {
                if args
                    .iter()
                    .any(|a| matches!(a.as_deref(), Some("-v" | "-V")))
                {
                    self.record(Verdict::Diagnostic, "command-lookup", "looks up a command");
                    return true;
                }
                Some(skip_options(args, NONE))
            }
            "exec" => Some(skip_options(args, &["-a"])),
            "busybox" => Some(args),
            "env" => {
                let mut i = 0;
                while i < args.len() {
                    match args[i].as_deref() {
                        Some("-u" | "--unset" | "-C" | "--chdir") => i += 2,
                        Some("-S" | "--split-string") => {
                            // The string is split into words: judge it as shell text with the rest.
                            return self.nested_string(program, args.get(i + 1), depth, stage);
                        }
                        Some(a) if a.starts_with("--split-string=") => {
                            let s = a.trim_start_matches("--split-string=").to_owned();
                            return self.nested_string(program, Some(&Some(s)), depth, stage);
                        }
                        Some(a) if a.starts_with('-') => i += 1,
                        Some(a) if looks_like_assignment(a) => {
                            if !is_assignment(a) {
                                // env sets it anyway; judge the reading as a program too.
                                self.invocation(&args[i..], depth + 1, stage);
                            } else if self.dangerous_variable(a.split('=').next().unwrap_or("")) {
                                return true;
                            }
                            i += 1;
                        }
                        None => {
                            self.block("dynamic-command", "env arguments only known at run time");
                            return true;
                        }
                        Some(_) => break,
                    }
                }
                let r = &args[i.min(args.len())..];
                if r.is_empty() {
                    self.record(Verdict::Diagnostic, "env-print", "prints the environment");
                    return true;
                }
                Some(r)
            }
            "xargs" => {
                let r = skip_options(
                    args,
                    &[
                        "-a",
                        "--arg-file",
                        "-d",
                        "--delimiter",
                        "-E",
                        "-e",
                        "-I",
                        "-i",
                        "-L",
                        "-l",
                        "-n",
                        "--max-args",
                        "-P",
                        "--max-procs",
                        "-s",
                        "--max-chars",
                        "--process-slot-var",
                    ],
                );
                let mut inner: Vec<Arg> = if r.is_empty() {
                    vec![Some("echo".into())]
                } else {
                    r.to_vec()
                };
                inner.push(None); // arguments arrive on standard input
                self.invocation(
                    &inner,
                    depth + 1,
                    Stage {
                        piped: false,
                        ..stage
                    },
                );
                return true;
            }
            "watch" => {
                let r = skip_options(
                    args,
                    &["-n", "--interval", "-d", "--differences", "-q", "--equexit"],
                );
                if r.iter().any(|a| a.is_none()) {
                    self.block(
                        "dynamic-command",
                        "watch runs a command only known at run time",
                    );
                    return true;
                }
                let text = r.iter().flatten().cloned().collect::<Vec<_>>().join(" ");
                self.shell_text(&text, depth + 1, Stage::default());
                return true;
            }
            "at" | "batch" => {
                if args
                    .iter()
                    .any(|a| matches!(a.as_deref(), Some("-l" | "-c")))
                {
                    self.record(Verdict::Diagnostic, "at-list", "lists scheduled jobs");
                } else if stage.piped || stage.stdin_redirected {
                    self.block("scheduled-from-input", format!("{program} would run commands read from its input, which cannot be judged"));
                } else {
                    self.record(
                        Verdict::ApprovalRequired,
                        "scheduled",
                        format!("{program} schedules commands for later"),
                    );
                }
                return true;
            }
            _ => None,
        };
        match rest {
            None => false,
            Some([]) => {
                if matches!(
                    program,
                    "sudo" | "doas" | "exec" | "busybox" | "nohup" | "nice" | "timeout"
                ) {
                    self.block(
                        "wrapper-without-command",
                        format!("{program} with no command to run"),
                    );
                } else {
                    self.record(
                        Verdict::Diagnostic,
                        "wrapper",
                        format!("{program} with no command"),
                    );
                }
                true
            }
            Some(inner) => {
                self.invocation(inner, depth + 1, stage);
                true
            }
        }
    }

    /// Judges a string argument as shell text (`sh -c STR`, `su -c STR`, `env -S STR`).
    fn nested_string(
        &mut self,
        program: &str,
        arg: Option<&Arg>,
        depth: u32,
        stage: Stage,
    ) -> bool {
        match arg {
            Some(Some(text)) => self.shell_text(
                text,
                depth + 1,
                Stage {
                    piped: false,
                    ..stage
                },
            ),
            Some(None) => self.block(
                "dynamic-command",
                format!("{program} runs a command only known at run time"),
            ),
            None => self.block(
                "unparseable",
                format!("{program}: option expects a command"),
            ),
        }
        true
    }

    /// Programs that run other programs: shells, eval, su, ssh, container exec, find
    /// -exec, interpreters and awk. Returns true when it decided.
    fn nested(&mut self, program: &str, args: &[Arg], depth: u32, stage: Stage) -> bool {
        let shell = SHELLS.contains(&program)
            || (program == "sh" || program.ends_with("sh") && SHELLS.contains(&program));
        if shell {
            // -c (also inside clusters such as -lc, -ec) takes the command string.
            let mut i = 0;
            while i < args.len() {
                match args[i].as_deref() {
                    Some(a)
                        if a.starts_with('-')
                            && !a.starts_with("--")
                            && a.contains('c')
                            && a.len() > 1 =>
                    {
                        return self.nested_string(program, args.get(i + 1), depth, stage);
                    }
                    Some("-s") => {
                        self.block(
                            "shell-from-input",
                            format!("{program} -s reads commands from its input"),
                        );
                        return true;
                    }
                    Some("-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file") => i += 2,
                    Some(a) if a.starts_with('-') || a.starts_with('+') => i += 1,
                    _ => break,
                }
            }
            let script = args.get(i);
            match script {
                None => {
                    if stage.piped {
                        self.block("shell-from-pipe", format!("{program} fed from a pipe runs commands that cannot be judged (curl | sh)"));
                    } else if stage.stdin_redirected {
                        self.block("shell-from-file", format!("{program} fed from a file or here-document runs commands that cannot be judged"));
                    } else {
                        self.block(
                            "interactive-shell",
                            format!("{program} without a command is an interactive shell"),
                        );
                    }
                }
                Some(None) => self.block(
                    "dynamic-command",
                    format!("{program} runs a script only known at run time"),
                ),
                Some(Some(path))
                    if path == "-" || path.starts_with("/dev/") || path.starts_with("/proc/") =>
                {
                    self.block(
                        "shell-from-input",
                        format!("{program} reads commands from {path}"),
                    );
                }
                Some(Some(path)) => {
                    let (v, rule, why) = self.unknown();
                    self.record(
                        v,
                        rule,
                        format!(
                            "{program} {path}: runs a script whose contents cannot be judged; {why}"
                        ),
                    );
                }
            }
            return true;
        }
        match program {
            "export" | "declare" | "typeset" | "readonly" | "local" => {
                for a in args.iter() {
                    match a.as_deref() {
                        Some(a) => {
                            if self.dangerous_variable(a.split('=').next().unwrap_or("")) {
                                return true;
                            }
                        }
                        None => {
                            self.block(
                                "dynamic-command",
                                format!("{program} of names only known at run time"),
                            );
                            return true;
                        }
                    }
                }
                self.record(Verdict::Diagnostic, "assignment", "sets shell variables");
                true
            }
            "eval" => {
                if args.iter().any(|a| a.is_none()) {
                    self.block("dynamic-command", "eval of text only known at run time");
                } else {
                    let text = args.iter().flatten().cloned().collect::<Vec<_>>().join(" ");
                    self.shell_text(&text, depth + 1, stage);
                }
                true
            }
            "source" | "." => {
                self.block(
                    "source",
                    format!(
                        "{program} runs a file's commands in the shell, which cannot be judged"
                    ),
                );
                true
            }
            "su" | "runuser" => {
                if let Some(pos) = args
                    .iter()
                    .position(|a| matches!(a.as_deref(), Some("-c" | "--command")))
                {
                    return self.nested_string(program, args.get(pos + 1), depth, stage);
                }
                if let Some(Some(a)) = args
                    .iter()
                    .find(|a| a.as_deref().is_some_and(|a| a.starts_with("--command=")))
                {
                    let s = a.trim_start_matches("--command=").to_owned();
                    return self.nested_string(program, Some(&Some(s)), depth, stage);
                }
                if program == "runuser"
                    && let Some(pos) = args.iter().position(|a| a.as_deref() == Some("--"))
                {
                    self.invocation(&args[pos + 1..], depth + 1, stage);
                    return true;
                }
                self.block(
                    "interactive-shell",
                    format!("{program} without -c opens a shell"),
                );
                true
            }
            "ssh" => {
                let r = skip_options(
                    args,
                    &[
                        "-p", "-i", "-l", "-o", "-F", "-J", "-L", "-R", "-D", "-b", "-c", "-E",
                        "-e", "-m", "-O", "-Q", "-S", "-W", "-w", "-B", "-I",
                    ],
                );
                if r.len() < 2 {
                    self.block(
                        "interactive-shell",
                        "ssh without a remote command opens a shell",
                    );
                } else if r[1..].iter().any(|a| a.is_none()) {
                    self.block(
                        "dynamic-command",
                        "ssh runs a remote command only known at run time",
                    );
                } else {
                    let text = r[1..]
                        .iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ");
                    self.record(Verdict::Allowed, "ssh", "runs a command on another host");
                    self.shell_text(&text, depth + 1, Stage::default());
                }
                true
            }
            "docker" | "podman" | "nerdctl" => self.container_exec(program, args, depth),
            "kubectl" => {
                if args.first().and_then(|a| a.as_deref()) == Some("exec") {
                    match args.iter().position(|a| a.as_deref() == Some("--")) {
                        Some(pos) if pos + 1 < args.len() => {
                            self.invocation(&args[pos + 1..], depth + 1, Stage::default())
                        }
                        _ => self.block("interactive-shell", "kubectl exec without `-- COMMAND`"),
                    }
                    return true;
                }
                false
            }
            "find" => self.find(args, depth, stage),
            p if INTERPRETERS.contains(&p)
                || p.starts_with("python3.")
                || p.starts_with("python2.")
                || p.starts_with("perl5") =>
            {
                let inline = args
                    .iter()
                    .flatten()
                    .take_while(|a| a.starts_with('-') && *a != "--")
                    .any(|a| {
                        let flags = a.trim_start_matches('-');
                        matches!(
                            a.as_str(),
                            "--eval" | "--print" | "--command" | "-command" | "-Command"
                        ) || (!a.starts_with("--")
                            && flags
                                .chars()
                                .any(|c| matches!(c, 'c' | 'e' | 'E' | 'r' | 'p')))
                    });
                if inline {
                    self.block(
                        "inline-code",
                        format!("{p} with inline code (-c/-e/-r) cannot be judged"),
                    );
                } else if args
                    .iter()
                    .all(|a| a.as_deref().is_some_and(|a| a.starts_with('-')))
                    || args.iter().any(|a| a.as_deref() == Some("-"))
                {
                    if stage.piped || stage.stdin_redirected {
                        self.block(
                            "interpreter-from-input",
                            format!("{p} fed code from its input cannot be judged"),
                        );
                    } else if args
                        .iter()
                        .any(|a| matches!(a.as_deref(), Some("--version" | "-V" | "-v")))
                    {
                        self.record(
                            Verdict::Diagnostic,
                            "interpreter-version",
                            format!("{p} version"),
                        );
                    } else {
                        self.block(
                            "interactive-shell",
                            format!("{p} without a script is interactive"),
                        );
                    }
                } else {
                    let (v, rule, why) = self.unknown();
                    self.record(
                        v,
                        rule,
                        format!("{p}: runs a script whose contents cannot be judged; {why}"),
                    );
                }
                true
            }
            p if AWKS.contains(&p) => {
                self.awk(p, args);
                true
            }
            "sed" => {
                // GNU sed can run commands (`e`) and write files (`w`).
                let script: String = args
                    .iter()
                    .flatten()
                    .filter(|a| !a.starts_with('-'))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                let executes = script.split([';', '\n', '}', '{']).any(|c| {
                    let c = c.trim();
                    c == "e"
                        || c.starts_with("e ")
                        || c.ends_with("/e")
                        || c.contains("/e ")
                        || c.starts_with('w') && c.len() > 1
                        || c.contains("/w ")
                });
                if executes {
                    self.block(
                        "sed-exec",
                        "sed script that executes commands or writes files",
                    );
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    fn container_exec(&mut self, program: &str, args: &[Arg], depth: u32) -> bool {
        let opts = self.policy.options_with_values(program).to_vec();
        let top = skip_options(args, &opts);
        let (sub_rest, compose) = match top.first().and_then(|a| a.as_deref()) {
            Some("exec") | Some("container")
                if top.get(1).and_then(|a| a.as_deref()) == Some("exec")
                    || top.first().and_then(|a| a.as_deref()) == Some("exec") =>
            {
                let skip = if top.first().and_then(|a| a.as_deref()) == Some("container") {
                    2
                } else {
                    1
                };
                (&top[skip..], false)
            }
            Some("compose") => {
                let after = skip_options(&top[1..], &opts);
                if after.first().and_then(|a| a.as_deref()) == Some("exec")
                    || after.first().and_then(|a| a.as_deref()) == Some("run")
                {
                    (&after[1..], true)
                } else {
                    return false;
                }
            }
            _ => return false,
        };
        if sub_rest
            .iter()
            .any(|a| matches!(a.as_deref(), Some("--privileged")))
        {
            self.block(
                "docker-run-privileged",
                "exec with --privileged owns the host",
            );
            return true;
        }
        let rest = skip_options(
            sub_rest,
            &[
                "-e",
                "--env",
                "--env-file",
                "-u",
                "--user",
                "-w",
                "--workdir",
                "--detach-keys",
                "--index",
                "-l",
                "--label",
                "--name",
                "-v",
                "--volume",
                "-p",
                "--publish",
                "--entrypoint",
            ],
        );
        if rest.len() < 2 {
            self.block(
                "interactive-shell",
                format!("{program} exec without a command"),
            );
            return true;
        }
        let _target = &rest[0];
        let _ = compose;
        self.record(
            Verdict::Diagnostic,
            "container-exec",
            "runs a command inside a container",
        );
        self.invocation(&rest[1..], depth + 1, Stage::default());
        true
    }

    fn find(&mut self, args: &[Arg], depth: u32, stage: Stage) -> bool {
        let mut handled = false;
        let mut i = 0;
        while i < args.len() {
            match args[i].as_deref() {
                Some("-exec" | "-execdir" | "-ok" | "-okdir") => {
                    let end = args[i + 1..]
                        .iter()
                        .position(|a| matches!(a.as_deref(), Some(";" | "+")))
                        .map_or(args.len(), |p| i + 1 + p);
                    let inner: Vec<Arg> = args[i + 1..end]
                        .iter()
                        .map(|a| {
                            if a.as_deref().is_some_and(|a| a.contains("{}")) {
                                None
                            } else {
                                a.clone()
                            }
                        })
                        .collect();
                    if inner.is_empty() {
                        self.block("unparseable", "find -exec without a command");
                    } else {
                        self.invocation(&inner, depth + 1, Stage::default());
                    }
                    handled = true;
                    i = end + 1;
                }
                Some("-delete") => {
                    // Deletes what it finds under the start paths: judge as `rm -r` of
                    // something under each of them.
                    let paths: Vec<Arg> = args
                        .iter()
                        .take_while(|a| a.as_deref().is_none_or(|a| !a.starts_with('-')))
                        .map(|a| {
                            a.as_ref()
                                .map(|p| format!("{}/found-by-find", p.trim_end_matches('/')))
                        })
                        .collect();
                    let mut rm = vec![Some("rm".to_owned()), Some("-r".to_owned())];
                    if paths.is_empty() {
                        rm.push(Some(".".into()))
                    } else {
                        rm.extend(paths)
                    }
                    self.invocation(&rm, depth + 1, stage);
                    handled = true;
                    i += 1;
                }
                Some("-fprint" | "-fprint0" | "-fprintf" | "-fls") => {
                    self.write_target(args.get(i + 1).and_then(|a| a.as_deref()));
                    handled = true;
                    i += 2;
                }
                _ => i += 1,
            }
        }
        if handled {
            self.record(Verdict::Diagnostic, "find", "searches files");
        }
        handled
    }

    fn awk(&mut self, program: &str, args: &[Arg]) {
        let r = skip_options(args, &["-F", "-v", "--assign", "--field-separator"]);
        if args
            .iter()
            .any(|a| matches!(a.as_deref(), Some("-f" | "--file")))
        {
            let (v, rule, why) = self.unknown();
            self.record(
                v,
                rule,
                format!("{program} -f runs a program file that cannot be judged; {why}"),
            );
            return;
        }
        match r.first() {
            Some(Some(code)) => {
                let compact: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
                if compact.contains("system")
                    || compact.contains('|')
                    || compact.contains("getline") && compact.contains('"')
                {
                    self.block(
                        "awk-exec",
                        format!("{program} program runs commands (system() or a pipe)"),
                    );
                } else if compact.contains("print >")
                    || compact.contains("printf >")
                    || compact.contains(">>")
                    || (compact.contains("print") && compact.contains("> \""))
                {
                    self.record(
                        Verdict::ApprovalRequired,
                        "awk-write",
                        format!("{program} program writes files"),
                    );
                } else {
                    self.record(Verdict::Diagnostic, "awk", "text processing");
                }
            }
            Some(None) => self.block(
                "dynamic-command",
                format!("{program} program only known at run time"),
            ),
            None => self.block("unparseable", format!("{program} without a program")),
        }
    }
}

/// Skips leading options (and the values of those in `with_values`); returns what
/// follows.
fn skip_options<'a>(args: &'a [Arg], with_values: &[impl AsRef<str>]) -> &'a [Arg] {
    let mut i = 0;
    while i < args.len() {
        match args[i].as_deref() {
            Some("--") => return &args[i + 1..],
            Some(a) if a.starts_with('-') && a.len() > 1 => {
                let takes = with_values.iter().any(|v| v.as_ref() == a);
                i += if takes { 2 } else { 1 };
            }
            _ => break,
        }
    }
    &args[i.min(args.len())..]
}

/// A word sudo and env take for a variable: it has `=`, not first.
fn looks_like_assignment(word: &str) -> bool {
    word.find('=').is_some_and(|i| i > 0)
}

/// `NAME=VALUE` with a valid shell identifier as NAME (what sudo and env treat as a
/// variable rather than the program).
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn display(argv: &[Arg]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.clone().unwrap_or_else(|| "$…".into()))
        .collect();
    let s = words.join(" ");
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn display_parts(program: &str, args: &[Arg]) -> String {
    let mut v = vec![Some(program.to_owned())];
    v.extend(args.iter().cloned());
    display(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_panic_becomes_an_error() {
        let r: Result<(), String> = guarded(|| panic!("parser bug"));
        assert_eq!(r, Err("the shell parser failed on this input".into()));
        assert!(
            has_huge_fd_number("1234567890>x")
                && !has_huge_fd_number("123456789>x")
                && !has_huge_fd_number("x 99999999999")
        );
        assert_eq!(bracket_depth("a ( b { c [ d ] } )"), 3);
    }
}
