//! The walk over a parsed command: every program that would run, every redirection,
//! every substitution, judged and folded into one verdict (the worst part wins).

use brush_parser::ast::{
    Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, Pipeline, SeparatorOperator, SimpleCommand,
};
use brush_parser::word::{self, Parameter, ParameterExpr, WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

use super::policy::{Invocation, UnknownPolicy, glob, normalize_path};
use super::{Context, Judgement, MAX_COMMAND_BYTES, Policy, Source, Verdict, scripts, secrets};

/// Nesting (sh -c inside ssh inside sudo ...) deeper than this is blocked.
const MAX_DEPTH: u32 = 8;
/// A `for` loop over more words than this is judged with its variable unknown.
const MAX_LOOP_VALUES: usize = 16;
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
/// Whether setting this variable, even unexported, changes what later commands do:
/// it is in every environment already, or programs read it.
fn significant_variable(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "HOME",
        "OLDPWD",
        "PWD",
        "USER",
        "LOGNAME",
        "SSLKEYLOGFILE",
        "TAR_OPTIONS",
        "KUBECONFIG",
        "WGETRC",
        "CURL_HOME",
        "GZIP",
        "XZ_DEFAULTS",
        "ZSTD_CLEVEL",
        "GREP_OPTIONS",
    ];
    const PREFIXES: &[&str] = &[
        "XDG_", "GIT_", "COMPOSE_", "DOCKER_", "DBUS_", "SSL_", "SYSTEMD_", "LESS", "PYTHON",
        "NODE_", "RUBY", "PERL", "JAVA_", "LD_", "MYSQL", "PG", "REDIS", "RSYNC_", "SSH_", "GNUPG",
        "GPG_", "AWS_", "HTTP", "FTP_", "NO_PROXY",
    ];
    NAMES.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || name.to_ascii_lowercase().ends_with("_proxy")
}

/// Variables a command may be given without changing what it runs, reads or writes.
const HARMLESS_VARS: &[&str] = &[
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "CLICOLOR",
    "FORCE_COLOR",
    "SYSTEMD_COLORS",
    "SYSTEMD_LOG_LEVEL",
    "SYSTEMD_URLIFY",
    "DEBIAN_FRONTEND",
    "DEBUG",
    "VERBOSE",
    "TIME_STYLE",
    "BLOCK_SIZE",
    "DF_BLOCK_SIZE",
    "DU_BLOCK_SIZE",
    "QUOTING_STYLE",
    "GREP_COLORS",
    "LS_COLORS",
    "POSIXLY_CORRECT",
    "COMPOSE_PROJECT_NAME",
    "DOCKER_CLI_HINTS",
];
/// Variables naming a program that tools run (pagers, editors, diff and ssh helpers).
const PAGER_VARS: &[&str] = &[
    "PAGER",
    "SYSTEMD_PAGER",
    "GIT_PAGER",
    "MANPAGER",
    "EDITOR",
    "VISUAL",
    "SYSTEMD_EDITOR",
    "GIT_EDITOR",
    "SUDO_EDITOR",
];
const DANGEROUS_VARS: &[&str] = &[
    "SYSTEMD_PAGERSECURE",
    "SYSTEMD_LESS",
    "LESSOPEN",
    "LESSCLOSE",
    "LESS",
    "GIT_EXTERNAL_DIFF",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "GIT_EXEC_PATH",
    "GIT_TEMPLATE_DIR",
    "GIT_DIR",
    "GIT_PROXY_COMMAND",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PERL5LIB",
    "PERL5OPT",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "BROWSER",
    "GCONV_PATH",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    "TMPDIR",
    "AWKPATH",
    "AWKLIBPATH",
    "JQ_LIBRARY_PATH",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "KUBECONFIG",
    "CURL_HOME",
    "WGETRC",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "OPENSSL_MODULES",
    "SHELL",
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

pub(super) fn judge(
    command: &str,
    ctx: &Context<'_>,
    policy: &Policy,
    trace: Option<&mut Vec<String>>,
) -> Judgement {
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
        trace,
        cwd_moved: false,
        cwd_untrusted: false,
        loop_vars: Vec::new(),
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
    /// The pipe is fed by a plain `echo`/`printf`/`true` with constant text.
    trivial_input: bool,
}

struct Walker<'a> {
    policy: &'a Policy,
    ctx: &'a Context<'a>,
    worst: Option<Judgement>,
    /// For `--explain`: every step of the walk, in order.
    trace: Option<&'a mut Vec<String>>,
    /// The command changes its working directory (`cd`, `-C DIR`, a container's own
    /// working directory): relative paths could then be anywhere.
    cwd_moved: bool,
    /// The working directory may be one anything could have written (a temporary
    /// folder, or one only known at run time): a compose file or git repository
    /// found there is not trusted.
    cwd_untrusted: bool,
    /// Variables of the `for` loops being walked, with the value of this pass.
    loop_vars: Vec<(String, String)>,
}

/// A word after static analysis: its text if fully known before running.
type Arg = Option<String>;

fn parser_options() -> ParserOptions {
    ParserOptions::default()
}

impl Walker<'_> {
    fn record(&mut self, verdict: Verdict, rule: &str, reason: impl Into<String>) {
        let reason = reason.into();
        if let Some(t) = self.trace.as_deref_mut() {
            t.push(format!("=> {verdict} [{rule}]: {reason}"));
        }
        if self.worst.as_ref().is_none_or(|w| verdict > w.verdict) {
            self.worst = Some(Judgement {
                verdict,
                reason,
                rule: rule.to_owned(),
            });
        }
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.push(text());
        }
    }

    /// A read of something that may be a secret: blocked for the LLM and learned
    /// commands, a person decides for operator and manual ones.
    fn secret(&mut self, what: String) {
        let v = match self.ctx.source {
            Source::Llm | Source::Learned => Verdict::Blocked,
            Source::Operator | Source::Manual => Verdict::ApprovalRequired,
        };
        self.record(v, "secret-read", what);
    }

    /// Whether `path`, read by a program, could be a secret; records it if so.
    fn check_secret(&mut self, program: &str, path: Option<&str>, recursive: bool, devices: bool) {
        match path {
            None => self.secret(format!(
                "{program} reads a path only known at run time, which could be a secret"
            )),
            Some(p) => {
                if let Some(s) = secrets::secret_named(
                    p,
                    recursive,
                    self.cwd_moved,
                    &self.policy.secret_paths,
                    devices,
                ) {
                    let how = if recursive { " (recursively)" } else { "" };
                    self.secret(format!(
                        "{program} reads {p}{how}, which may be a secret ({s})"
                    ));
                }
            }
        }
    }

    /// Run-time text sent into the network: blocked for every source but `operator`.
    fn exfiltration(&mut self, what: String) {
        if self.ctx.source != Source::Operator {
            self.block("exfiltration", what);
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
                trivial_input: i > 0 && trivial_feeder(&p.seq[i - 1]),
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
            Command::ExtendedTest(test, redirects) => {
                if let Some(r) = redirects {
                    for io in &r.0 {
                        self.redirect(io, depth);
                    }
                }
                let text = test.to_string();
                if text.contains(['<', '>']) {
                    // Commands run under sh (dash), where `[[` is no keyword: `<` and
                    // `>` there are redirections.
                    self.block(
                        "test-redirection",
                        "< or > inside [[ ]] redirects under sh; use test with -lt/-gt",
                    );
                } else if text.contains("$(")
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
                let values: Vec<Arg> = f
                    .values
                    .iter()
                    .flatten()
                    .map(|w| self.word(&w.value, depth))
                    .collect();
                // `for f in a b c` with known words: the body is judged once for each,
                // with $f standing for it, so `for c in x y; do docker restart $c; done`
                // is judged as what it runs.
                let bindable = !values.is_empty()
                    && values.len() <= MAX_LOOP_VALUES
                    && values.iter().all(|v| {
                        v.as_deref()
                            .is_some_and(|v| !v.contains(char::is_whitespace))
                    });
                if bindable {
                    for _ in 0..2 {
                        for v in values.iter().flatten() {
                            self.loop_vars.push((f.variable_name.clone(), v.clone()));
                            self.list(&f.body.list, depth, stage);
                            self.loop_vars.pop();
                        }
                    }
                } else {
                    self.list(&f.body.list, depth, stage);
                    self.list(&f.body.list, depth, stage);
                }
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
                // Twice: what a pass changes (a `cd`) holds for the next one.
                for _ in 0..2 {
                    self.list(&w.0, depth, stage);
                    self.list(&w.1.list, depth, stage);
                }
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
                WordPiece::ParameterExpansion(ParameterExpr::Parameter {
                    parameter: Parameter::Named(name),
                    indirect: false,
                }) => match self.loop_vars.iter().rev().find(|(n, _)| n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => known = false,
                },
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
                    IoFileRedirectKind::Read => {
                        if let Some(p) = path.as_deref()
                            && (glob("/dev/tcp/**", &normalize_path(p))
                                || glob("/dev/udp/**", &normalize_path(p)))
                        {
                            self.block(
                                "network-redirect",
                                format!("reading {p} opens a network connection"),
                            );
                        }
                        self.check_secret("a < redirection", path.as_deref(), false, true);
                        fd.is_none_or(|f| f == 0) && path.as_deref() != Some("/dev/null")
                    }
                    IoFileRedirectKind::DuplicateInput => false,
                    IoFileRedirectKind::Write
                    | IoFileRedirectKind::Append
                    | IoFileRedirectKind::Clobber
                    | IoFileRedirectKind::DuplicateOutput => {
                        self.write_target(path.as_deref());
                        false
                    }
                    IoFileRedirectKind::ReadAndWrite => {
                        self.check_secret("a <> redirection", path.as_deref(), false, true);
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
        if secrets::opaque(raw) {
            self.block(
                "path-traversal",
                format!("writes to {raw}, whose `..` or glob could lead anywhere"),
            );
            return;
        }
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
        let mut names: Vec<String> = Vec::new();
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
                        names.push(a.name.to_string());
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
        for name in &names {
            self.environment_for_command(name);
        }
        self.invocation(&argv, depth, stage);
    }

    fn assignment(&mut self, name: &str, value: &str, depth: u32) {
        // Variables the environment already holds, or that programs read, change later
        // commands of the same line even without `export` (`HOME=/tmp/h; git status`).
        if significant_variable(name) {
            self.environment_for_command(name);
        }
        let text = self.word(value, depth);
        // The parser may hand over the whole `NAME=VALUE` word.
        let text = text.map(|t| {
            t.strip_prefix(&format!("{name}="))
                .map(str::to_owned)
                .unwrap_or(t)
        });
        self.dangerous_variable(&format!("{name}={}", text.as_deref().unwrap_or("$…")));
    }

    /// A variable given to a program (`X=1 cmd`, `env X=1 cmd`, `sudo X=1 cmd`) can
    /// change what it runs, reads or writes (`TAR_OPTIONS`, `SSLKEYLOGFILE`, `HOME`):
    /// only variables known to be harmless keep a command unattended.
    fn environment_for_command(&mut self, name: &str) {
        let name = name.split('=').next().unwrap_or(name);
        let harmless = HARMLESS_VARS.contains(&name)
            || name.starts_with("LC_")
            || (PAGER_VARS.contains(&name));
        if !harmless {
            self.record(
                Verdict::ApprovalRequired,
                "environment",
                format!("{name} is set for the command; the gate does not know what {name} changes in it"),
            );
        }
    }

    /// Blocks setting variables that change what runs (PATH, LD_*) or hide history.
    /// Returns whether it blocked.
    fn dangerous_variable(&mut self, assignment: &str) -> bool {
        let (name, value) = assignment.split_once('=').unwrap_or((assignment, ""));
        let name = name.split('[').next().unwrap_or(name);
        // Pagers and editors run programs; `cat` or nothing is the only harmless value.
        let dangerous = if PAGER_VARS.contains(&name) {
            !matches!(value, "" | "cat")
        } else {
            DANGEROUS_VARS.contains(&name)
                || name.starts_with("LD_")
                || name.starts_with("GIT_CONFIG")
        };
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
        // A program named by a path is the system's program only from a system
        // folder: `/tmp/x/cat` or `./cat` is some other file, judged by its path (no
        // rule about `cat` applies; a configured rule may name that exact path).
        let base = name.rsplit('/').next().unwrap_or(name);
        let args = &argv[1..];
        if base.is_empty() {
            self.block("dynamic-command", "empty program name");
            return;
        }
        // It is some file, not the system's program: no rule about `base` makes it
        // safe, and it is judged as `base` too so that it is never weaker than that.
        if program_name(name) != base && !self.policy.configured_for_path(name) {
            let (v, rule, why) = self.unknown();
            self.record(
                v,
                rule,
                format!("{name} is not the system's {base} (programs run from outside the system folders are unknown); {why}"),
            );
        }
        let program = base;

        // SysV init scripts are services: `/etc/init.d/docker restart` is `service
        // docker restart`, not the docker CLI.
        if let Some(script) = ["/etc/init.d/", "/etc/rc.d/init.d/", "/etc/rc.d/"]
            .iter()
            .find_map(|d| normalize_path(name).strip_prefix(d).map(str::to_owned))
            && !script.is_empty()
            && !script.contains('/')
        {
            let mut svc: Vec<Arg> = vec![Some("service".into()), Some(script)];
            svc.extend(args.iter().cloned());
            self.invocation(&svc, depth + 1, stage);
            return;
        }
        if matches!(program, "cd" | "pushd") {
            let target = args
                .iter()
                .find(|a| a.as_deref().is_none_or(|a| !a.starts_with('-')));
            let dash = args.iter().any(|a| a.as_deref() == Some("-"));
            let trusted = !dash
                && match target {
                    None => true, // home
                    Some(None) => false,
                    Some(Some(t)) => trusted_path(t),
                };
            if !trusted {
                self.cwd_untrusted = true;
            }
        }
        if matches!(program, "cd" | "pushd" | "popd")
            || args.iter().flatten().any(|a| {
                matches!(
                    a.as_str(),
                    "-C" | "--chdir" | "--directory" | "-D" | "--workdir" | "-w"
                ) || a.starts_with("--chdir=")
                    || a.starts_with("--directory=")
                    || a.starts_with("--workdir=")
            })
            || matches!(program, "docker" | "podman" | "nerdctl" | "kubectl")
        {
            self.cwd_moved = true;
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

        let verdict = self.by_rules(name, program, args, stage);
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

    /// Judges an invocation (wrappers and nesting already looked through) by the first
    /// matching rule, then the checks that hold whatever rule matched.
    fn by_rules(&mut self, name: &str, program: &str, args: &[Arg], stage: Stage) -> Verdict {
        let spec = self.policy.spec(program);
        let inv = Invocation {
            path: name,
            ..Invocation::new(program, args, spec)
        };
        self.note(|| inv.describe());
        let rule = match self.trace.as_deref_mut() {
            Some(t) => self
                .policy
                .find(&inv, self.ctx.host, self.ctx.source, Some(t)),
            None => self.policy.find(&inv, self.ctx.host, self.ctx.source, None),
        };
        let shown = display_parts(name, args);
        let verdict = match rule {
            Some(rule) => {
                let v = rule.verdict_for(self.ctx.source);
                let (id, reason) = (rule.id.clone(), rule.reason.clone());
                self.record(v, &id, format!("{shown}: {reason}"));
                v
            }
            None => {
                let (v, rule, why) = self.unknown();
                self.record(v, rule, format!("{shown}: {why}"));
                v
            }
        };
        self.reads_and_network(program, &inv, stage);
        self.trusted_sources(program, &inv);
        // Programs that write the files they name.
        if matches!(program, "tee") {
            for a in inv.positional.iter() {
                self.write_target(*a);
            }
        }
        verdict
    }

    /// Compose files and git repositories hold commands (build steps, hooks,
    /// `core.fsmonitor`): taken from the working directory, that directory must not be
    /// one anything could have written.
    fn trusted_sources(&mut self, program: &str, inv: &Invocation<'_>) {
        let first = |k: usize| inv.positional.get(k).copied().flatten();
        let has = |names: &[&str]| inv.opts.iter().any(|o| names.contains(&o.name.as_str()));
        let compose = matches!(program, "docker-compose" | "podman-compose")
            || (matches!(program, "docker" | "podman") && first(0) == Some("compose"));
        if compose && !has(&["-f", "--file", "--project-directory"]) && self.cwd_untrusted {
            self.record(
                Verdict::ApprovalRequired,
                "compose-file-untrusted",
                "uses the compose file of a working directory anything could have written",
            );
        }
        if program == "git" && !has(&["-C"]) && self.cwd_untrusted {
            self.record(
                Verdict::ApprovalRequired,
                "git-repository-untrusted",
                "reads a repository (whose configuration can run programs) from a working directory anything could have written",
            );
        }
    }

    /// Judges `argv` by the rules alone (for a sub-operation such as `compose run`).
    fn rules_only(&mut self, argv: &[Arg]) {
        if let Some(Some(name)) = argv.first() {
            let program = program_name(name).to_owned();
            self.by_rules(&name.clone(), &program, &argv[1..], Stage::default());
        }
    }

    /// The checks that hold whatever rule matched: no secret is read, and nothing only
    /// known at run time is sent into the network.
    fn reads_and_network(&mut self, program: &str, inv: &Invocation<'_>, stage: Stage) {
        let spec = self.policy.spec(program);
        // git reads files out of its history: `HEAD:path`, `log -p shadow`,
        // `-L1,9:shadow`, `-- shadow`; relative to -C DIR, else the working directory.
        if program == "git" {
            let repo = inv
                .opts
                .iter()
                .find(|o| o.name == "-C")
                .and_then(|o| o.values.first().copied().flatten())
                .map(|d| d.trim_end_matches('/').to_owned());
            let sub = inv.positional.iter().position(|p| p.is_some());
            let words = inv
                .positional
                .iter()
                .enumerate()
                .filter(|(k, _)| Some(*k) != sub)
                .filter_map(|(_, p)| *p)
                .chain(
                    inv.opts
                        .iter()
                        .filter(|o| o.name != "-C")
                        .flat_map(|o| o.values.iter().flatten().copied())
                        .filter(|v| v.contains(':')),
                );
            for a in words {
                let path = a.rsplit_once(':').map_or(a, |(_, p)| p);
                if path.is_empty() || path.starts_with('/') {
                    continue;
                }
                let full = match &repo {
                    Some(r) => format!("{r}/{path}"),
                    None => path.to_owned(),
                };
                self.check_secret(program, Some(&full), false, true);
            }
        }
        // binutils' `@FILE` reads more arguments (file names) from FILE.
        if matches!(
            program,
            "strings" | "objdump" | "readelf" | "nm" | "size" | "ar"
        ) && inv
            .all
            .iter()
            .any(|p| p.is_some_and(|p| p.starts_with('@')))
        {
            self.secret(format!(
                "{program} @FILE reads the names of the files it reads from FILE"
            ));
        }
        if program == "ps" && ps_shows_environment(&inv.all) {
            self.record(
                Verdict::ApprovalRequired,
                "ps-environment",
                "ps with `e` shows every process's environment (passwords and tokens live there)",
            );
        }
        // Archive members are paths from the archive's root (`unzip -p etc.zip etc/shadow`).
        if matches!(program, "unzip" | "tar" | "bsdtar" | "7z" | "7za" | "cpio") {
            let skip = usize::from(program == "unzip" || program.starts_with("7z"));
            for m in inv.positional.iter().skip(skip).flatten() {
                let rooted = format!("/{}", m.trim_start_matches("./").trim_start_matches('/'));
                self.check_secret(program, Some(&rooted), false, true);
            }
        }
        // A dry run of rsync compares names and sizes; it sends no content anywhere.
        let dry_run = program == "rsync"
            && inv
                .opts
                .iter()
                .any(|o| o.name == "-n" || o.name == "--dry-run");
        if !spec.metadata && !spec.free_args && !dry_run {
            let recursive = spec.is_recursive(inv);
            let devices = !spec.device_query;
            let files: Vec<Option<&str>> = spec.file_arguments(inv).to_vec();
            let mut checked: Vec<&str> = Vec::new();
            for f in &files {
                self.check_secret(program, *f, recursive, devices);
                if let Some(f) = f {
                    checked.push(f);
                }
            }
            // A recursive search narrowed to some file names reaches those names
            // anywhere below (`grep -r --include='*.env' x /opt`).
            if recursive {
                let narrowed: Vec<&str> = inv
                    .opts
                    .iter()
                    .filter(|o| {
                        matches!(o.name.as_str(), "--include" | "-g" | "--glob" | "--iglob")
                    })
                    .flat_map(|o| o.values.iter().flatten().copied())
                    .collect();
                for f in files.iter().flatten() {
                    for n in &narrowed {
                        let n = n.trim_start_matches('!');
                        let base = f.trim_end_matches('/');
                        let path = if n.contains('/') {
                            format!("{base}/{n}")
                        } else {
                            format!("{base}/**/{n}")
                        };
                        self.check_secret(program, Some(&path), false, devices);
                    }
                }
            }
            // Option values that are files it reads.
            for o in &inv.opts {
                let reads_file = spec.read_file_options.contains(&o.name);
                if reads_file {
                    for v in &o.values {
                        self.check_secret(program, *v, false, devices);
                    }
                }
            }
            // Any other word that names an absolute or home path, alone or after
            // `=`, `@` or `:` (`if=/dev/sda`, `@/etc/shadow`, `--file=~/.pgpass`).
            for w in inv.all.iter().flatten() {
                if checked.contains(w) {
                    continue;
                }
                let mut parts = vec![*w];
                for sep in ['=', '@', ':'] {
                    if let Some((_, after)) = w.split_once(sep) {
                        parts.push(after);
                    }
                }
                for p in parts {
                    if p.starts_with('/')
                        || p.starts_with('~')
                        || p.starts_with("../")
                        || p.contains("/../")
                    {
                        self.check_secret(program, Some(p), recursive, devices);
                    }
                }
            }
        }
        // Some programs reach the network with some subcommands only.
        let networked = spec.network
            || match program {
                "docker" | "podman" | "nerdctl" => matches!(
                    inv.positional.first().copied().flatten(),
                    Some(
                        "pull"
                            | "push"
                            | "login"
                            | "search"
                            | "run"
                            | "create"
                            | "build"
                            | "image"
                            | "buildx"
                            | "compose"
                    )
                ),
                "git" => matches!(
                    inv.positional.first().copied().flatten(),
                    Some(
                        "fetch"
                            | "pull"
                            | "clone"
                            | "ls-remote"
                            | "push"
                            | "remote"
                            | "submodule"
                            | "archive"
                    )
                ),
                _ => false,
            };
        if networked {
            if inv.all.iter().any(|a| a.is_none()) {
                self.exfiltration(format!(
                    "{program}: an argument only known at run time (a substitution or variable) goes into the network"
                ));
            }
            // openssl only sends its input with s_client (x509 reads a certificate).
            let sends = spec.sends_stdin
                && (program != "openssl"
                    || matches!(inv.positional.first(), Some(Some("s_client" | "s_time"))));
            if sends && (stage.piped && !stage.trivial_input || stage.stdin_redirected) {
                self.exfiltration(format!(
                    "{program} sends its standard input, fed from another command or a file, into the network"
                ));
            }
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
        // A target only known at run time could be Jarvis itself.
        if container_tools.contains(&program)
            && !self.policy.protected_containers.is_empty()
            && args.iter().any(|a| a.is_none())
            && !known
                .iter()
                .any(|w| read_only.contains(w) || *w == "ps" || *w == "images")
        {
            self.record(
                Verdict::ApprovalRequired,
                "self-protection",
                format!(
                    "{}: acts on a container or unit only known at run time, which could be Jarvis itself",
                    display_parts(program, args)
                ),
            );
        }
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
                        "-R",
                        "--chroot",
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
                    } else if self.dangerous_variable(a) {
                        return true;
                    } else {
                        self.environment_for_command(a);
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
            "nohup" | "builtin" | "setsid" | "unbuffer" | "catchsegv" => {
                Some(skip_options(args, NONE))
            }
            "time" => {
                // GNU time writes its report to the file -o names.
                // (`-o F`, `-oF`, `-ao F`, `--output=F` and its abbreviations `--o=F`.)
                for (k, a) in args.iter().enumerate() {
                    let Some(a) = a.as_deref() else { continue };
                    if !a.starts_with('-') || a == "--" {
                        break;
                    }
                    if let Some(long) = a.strip_prefix("--") {
                        let (name, value) = long
                            .split_once('=')
                            .map_or((long, None), |(n, v)| (n, Some(v)));
                        if !name.is_empty() && "output".starts_with(name) {
                            let v = value.or_else(|| args.get(k + 1).and_then(|x| x.as_deref()));
                            self.write_target(v);
                        }
                    } else if let Some(at) = a.find('o') {
                        let rest = &a[at + 1..];
                        let v = if rest.is_empty() {
                            args.get(k + 1).and_then(|x| x.as_deref())
                        } else {
                            Some(rest)
                        };
                        self.write_target(v);
                    }
                }
                Some(skip_options(args, &["-o", "--output", "-f", "--format"]))
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
                // `command -v NAME` looks NAME up; `command rm -v` runs rm.
                let lookup = args
                    .iter()
                    .take_while(|a| a.as_deref().is_some_and(|a| a.starts_with('-')))
                    .any(|a| {
                        a.as_deref()
                            .is_some_and(|a| a != "--" && (a.contains('v') || a.contains('V')))
                    });
                if lookup {
                    self.record(Verdict::Diagnostic, "command-lookup", "looks up a command");
                    return true;
                }
                Some(skip_options(args, NONE))
            }
            "exec" => Some(skip_options(args, &["-a"])),
            "sudo-rs" => Some(skip_options(args, &["-u", "-g"])),
            "busybox" => Some(args),
            "env" => {
                let mut i = 0;
                'words: while i < args.len() {
                    match args[i].as_deref() {
                        Some("--") => {
                            i += 1;
                            break;
                        }
                        Some("-") => i += 1,
                        Some("--unset") => i += 2,
                        Some("--chdir") => {
                            self.cwd_moved = true;
                            if !args
                                .get(i + 1)
                                .cloned()
                                .flatten()
                                .is_some_and(|d| trusted_path(&d))
                            {
                                self.cwd_untrusted = true;
                            }
                            i += 2;
                        }
                        Some(a) if a.starts_with("--chdir=") => {
                            self.cwd_moved = true;
                            if !trusted_path(&a[8..]) {
                                self.cwd_untrusted = true;
                            }
                            i += 1;
                        }
                        Some("--split-string") => {
                            return self.nested_string(program, args.get(i + 1), depth, stage);
                        }
                        Some(a) if a.starts_with("--split-string=") => {
                            let s = a.trim_start_matches("--split-string=").to_owned();
                            return self.nested_string(program, Some(&Some(s)), depth, stage);
                        }
                        Some(a) if a.starts_with("--") => {
                            let name = a.split('=').next().unwrap_or(a);
                            if !matches!(
                                name,
                                "--ignore-environment"
                                    | "--null"
                                    | "--debug"
                                    | "--unset"
                                    | "--chdir"
                                    | "--default-signal"
                                    | "--ignore-signal"
                                    | "--block-signal"
                                    | "--list-signal-handling"
                            ) {
                                self.block(
                                    "dynamic-command",
                                    format!("env option {a} not understood"),
                                );
                                return true;
                            }
                            i += 1;
                        }
                        Some(a) if a.starts_with('-') => {
                            // A cluster: -i -0 -v are flags; -u and -C take a value (the
                            // rest, or the next word); -S takes the command line.
                            let body: Vec<char> = a[1..].chars().collect();
                            for (k, c) in body.iter().enumerate() {
                                let rest: String = body[k + 1..].iter().collect();
                                match c {
                                    'i' | '0' | 'v' => {}
                                    'u' | 'C' => {
                                        if *c == 'C' {
                                            self.cwd_moved = true;
                                            self.cwd_untrusted = true;
                                        }
                                        i += if rest.is_empty() { 2 } else { 1 };
                                        continue 'words;
                                    }
                                    'S' => {
                                        return if rest.is_empty() {
                                            self.nested_string(
                                                program,
                                                args.get(i + 1),
                                                depth,
                                                stage,
                                            )
                                        } else {
                                            self.nested_string(
                                                program,
                                                Some(&Some(rest)),
                                                depth,
                                                stage,
                                            )
                                        };
                                    }
                                    other => {
                                        self.block(
                                            "dynamic-command",
                                            format!("env option -{other} not understood"),
                                        );
                                        return true;
                                    }
                                }
                            }
                            i += 1;
                        }
                        Some(a) if looks_like_assignment(a) => {
                            if !is_assignment(a) {
                                // env sets it anyway; judge the reading as a program too.
                                self.invocation(&args[i..], depth + 1, stage);
                            } else if self.dangerous_variable(a) {
                                return true;
                            } else {
                                self.environment_for_command(a);
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
                        "-I",
                        "-L",
                        "-n",
                        "--max-args",
                        "-P",
                        "--max-procs",
                        "-s",
                        "--max-chars",
                        "--process-slot-var",
                    ],
                );
                // The file it reads its arguments from is read like any other, however
                // the option is spelled (`-a F`, `-aF`, `-0aF`, `--arg=F`, `--arg-f F`).
                let own = args.len() - r.len();
                for (k, a) in args[..own].iter().enumerate() {
                    let Some(a) = a.as_deref() else { continue };
                    if a == "--" {
                        break;
                    }
                    if !a.starts_with('-') {
                        continue; // the value of the option before
                    }
                    let long_name = a
                        .strip_prefix("--")
                        .map(|l| l.split('=').next().unwrap_or(l));
                    let file: Option<Option<&str>> =
                        if long_name.is_some_and(|n| !n.is_empty() && "arg-file".starts_with(n)) {
                            Some(match a.split_once('=') {
                                Some((_, v)) => Some(v),
                                None => args.get(k + 1).and_then(|x| x.as_deref()),
                            })
                        } else if !a.starts_with("--") {
                            a.find('a').map(|i| {
                                let rest = &a[i + 1..];
                                if rest.is_empty() {
                                    args.get(k + 1).and_then(|x| x.as_deref())
                                } else {
                                    Some(rest)
                                }
                            })
                        } else {
                            None
                        };
                    if let Some(f) = file {
                        self.check_secret("xargs", f, false, true);
                    }
                }
                // `-I REPL`: words holding REPL get what arrives on standard input.
                // (`-i` and `--replace` take the string attached, `{}` by default.)
                let repl: Option<String> =
                    args.iter()
                        .enumerate()
                        .find_map(|(k, a)| match a.as_deref() {
                            Some("-I") => args.get(k + 1).cloned().flatten().or(Some("{}".into())),
                            Some("-i" | "--replace") => Some("{}".into()),
                            Some(o) if o.starts_with("--replace=") => Some(o[10..].to_owned()),
                            Some(o) if o.starts_with("-i") || o.starts_with("-I") => {
                                Some(o[2..].to_owned())
                            }
                            _ => None,
                        });
                let mut inner: Vec<Arg> = if r.is_empty() {
                    vec![Some("echo".into())]
                } else {
                    r.iter()
                        .map(|a| match (a, &repl) {
                            (Some(w), Some(rp)) if w.contains(rp.as_str()) => None,
                            _ => a.clone(),
                        })
                        .collect()
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
                let r = skip_options(args, &["-n", "--interval", "-q", "--equexit"]);
                if r.iter().any(|a| a.is_none()) {
                    self.block(
                        "dynamic-command",
                        "watch runs a command only known at run time",
                    );
                    return true;
                }
                // With -x the words are the program and its arguments, not shell text.
                let exec = args.iter().flatten().any(|a| {
                    a == "--exec" || (a.starts_with('-') && !a.starts_with("--") && a.contains('x'))
                });
                if exec {
                    self.invocation(r, depth + 1, Stage::default());
                } else {
                    let text = r.iter().flatten().cloned().collect::<Vec<_>>().join(" ");
                    self.shell_text(&text, depth + 1, Stage::default());
                }
                return true;
            }
            "at" | "batch" => {
                let from_file = args
                    .iter()
                    .any(|a| a.as_deref().is_some_and(|a| a.starts_with("-f")));
                if !from_file
                    && args
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
        // env -S reads escapes of its own: `\_` is a space, `\t` a tab, `\n` a newline.
        let unescaped;
        let arg = match arg {
            Some(Some(t)) if program == "env" && t.contains('\\') => {
                unescaped = Some(
                    t.replace("\\_", " ")
                        .replace("\\t", "\t")
                        .replace("\\n", "\n")
                        .replace("\\c", "\n"),
                );
                Some(&unescaped)
            }
            other => other,
        };
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
                            if self.dangerous_variable(a) {
                                return true;
                            }
                            if program == "export" && !a.starts_with('-') {
                                self.environment_for_command(a);
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
                self.ssh_options(&args[..args.len() - r.len()]);
                if args
                    .iter()
                    .any(|a| matches!(a.as_deref(), Some("-G" | "-V")))
                    && r.len() <= 1
                {
                    self.record(
                        Verdict::Diagnostic,
                        "ssh-config",
                        "prints ssh's configuration or version",
                    );
                } else if r.len() < 2 {
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
                    if (stage.piped && !stage.trivial_input) || stage.stdin_redirected {
                        self.exfiltration(
                            "ssh sends its standard input, fed from another command or a file, to another host".into(),
                        );
                    }
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
            p if AWKS.contains(&p) => self.awk(p, args),
            "sed" => self.sed(args),
            "jq" | "gojq" | "jaq" | "yq" => {
                let inv = Invocation::new(program, args, self.policy.spec(program));
                if let Some(Some(filter)) = inv.positional.first()
                    && filter
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|w| w == "import" || w == "include")
                {
                    self.record(
                        Verdict::ApprovalRequired,
                        "jq-module",
                        format!("{program} filter loads modules from files"),
                    );
                }
                if let Some(Some(filter)) = inv.positional.first() {
                    // yq's load functions read files; string constants may name one.
                    if filter.contains("load") {
                        self.record(
                            Verdict::ApprovalRequired,
                            "yq-load",
                            format!("{program} filter loads files"),
                        );
                    }
                    for lit in filter.split('"').skip(1).step_by(2) {
                        if lit.starts_with('/') || lit.starts_with('~') {
                            self.check_secret(program, Some(lit), false, true);
                        }
                    }
                }
                false
            }
            _ => false,
        }
    }

    /// ssh's own options: a local command (`ProxyCommand`, `LocalCommand`), a config
    /// file that may hold one, forwarded ports and sockets, or a log file to write
    /// make it more than "run this on that host".
    fn ssh_options(&mut self, opts: &[Arg]) {
        let spec = self.policy.spec("ssh");
        let inv = Invocation::new("ssh", opts, spec);
        for o in &inv.opts {
            let value = o.values.first().copied().flatten().unwrap_or("");
            let key = value
                .split(['=', ' '])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if o.name == "-o"
                && matches!(
                    key.as_str(),
                    "proxycommand"
                        | "localcommand"
                        | "permitlocalcommand"
                        | "knownhostscommand"
                        | "proxyusefdpass"
                        | "remotecommand"
                        | "match"
                )
            {
                self.block(
                    "ssh-local-command",
                    format!("ssh -o {value} runs a command on this host"),
                );
            } else if o.name == "-o" && o.values.first().is_some_and(|v| v.is_none()) {
                self.block("dynamic-command", "ssh option only known at run time");
            } else if !spec
                .accepted
                .iter()
                .any(|a| a.name == o.name && a.accepts(o).is_ok())
            {
                self.record(
                    Verdict::ApprovalRequired,
                    "ssh-options",
                    format!("ssh {}: forwards ports, reads a config or key file, or sets an option the gate does not accept unattended", o.name),
                );
            }
        }
    }

    /// sed: judges what its script does (runs commands, writes or reads files), then
    /// lets the rules judge its options. Returns true when it decided.
    fn sed(&mut self, args: &[Arg]) -> bool {
        let inv = Invocation::new("sed", args, self.policy.spec("sed"));
        let mut scripts: Vec<Option<&str>> = inv
            .opts
            .iter()
            .filter(|o| o.name == "-e" || o.name == "--expression")
            .flat_map(|o| o.values.iter().copied())
            .collect();
        if scripts.is_empty() {
            match inv.positional.first() {
                Some(first) => scripts.push(*first),
                None => return false, // no script: sed -f, judged by its options
            }
        }
        for script in scripts {
            let Some(script) = script else {
                self.block("dynamic-command", "sed script only known at run time");
                return true;
            };
            match scripts::sed(script) {
                Err(e) => self.record(
                    Verdict::ApprovalRequired,
                    "sed-unparsed",
                    format!("the sed script {script:?} cannot be read ({e}), so it cannot be called read-only"),
                ),
                Ok(fx) => {
                    if fx.executes {
                        self.block("sed-exec", format!("sed script {script:?} runs shell commands (e)"));
                    }
                    for w in &fx.writes {
                        self.write_target(Some(w));
                    }
                    for r in &fx.reads {
                        self.check_secret("sed", Some(r), false, true);
                    }
                }
            }
        }
        false
    }

    /// awk: judges what its program does, then lets the rules judge its options.
    fn awk(&mut self, program: &str, args: &[Arg]) -> bool {
        let inv = Invocation::new(program, args, self.policy.spec(program));
        let mut sources: Vec<Option<&str>> = inv
            .opts
            .iter()
            .filter(|o| matches!(o.name.as_str(), "-e" | "--source"))
            .flat_map(|o| o.values.iter().copied())
            .collect();
        let from_file = inv
            .opts
            .iter()
            .any(|o| matches!(o.name.as_str(), "-f" | "--file" | "-E" | "--exec"));
        if sources.is_empty() && !from_file {
            match inv.positional.first() {
                Some(first) => sources.push(*first),
                None => {
                    self.block("unparseable", format!("{program} without a program"));
                    return true;
                }
            }
        }
        for src in sources {
            let Some(src) = src else {
                self.block(
                    "dynamic-command",
                    format!("{program} program only known at run time"),
                );
                return true;
            };
            match scripts::awk(src) {
                Err(e) => self.record(
                    Verdict::ApprovalRequired,
                    "awk-unparsed",
                    format!("the {program} program cannot be read ({e}), so it cannot be called read-only"),
                ),
                Ok(fx) => {
                    if let Some(why) = fx.executes {
                        self.block("awk-exec", format!("{program} program {why}"));
                    }
                    for w in &fx.writes {
                        match w {
                            Some(path) => self.write_target(Some(path)),
                            None => self.record(
                                Verdict::ApprovalRequired,
                                "awk-write",
                                format!("{program} program writes to a file named at run time"),
                            ),
                        }
                    }
                    for r in &fx.reads {
                        self.check_secret(program, r.as_deref(), false, true);
                    }
                    if fx.rewrites_argv {
                        self.secret(format!(
                            "{program} program changes ARGV, so the files it reads are only known at run time"
                        ));
                    }
                    for s in fx.strings.iter().filter(|s| s.starts_with('/') || s.starts_with('~')) {
                        self.check_secret(program, Some(s), false, true);
                    }
                }
            }
        }
        false
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
        if compose && top.iter().any(|a| a.as_deref() == Some("run")) {
            // `compose run` starts a new container: as `docker run`, with its mounts.
            let mut run: Vec<Arg> = vec![Some("run".into())];
            run.extend(sub_rest.iter().cloned());
            let argv: Vec<Arg> = std::iter::once(Some(program.to_owned()))
                .chain(run)
                .collect();
            self.rules_only(&argv);
        }
        for (k, a) in sub_rest.iter().enumerate() {
            match a.as_deref() {
                Some("--env-file") => self.check_secret(
                    program,
                    sub_rest.get(k + 1).and_then(|x| x.as_deref()),
                    false,
                    true,
                ),
                Some(o) if o.starts_with("--env-file=") => {
                    self.check_secret(program, Some(&o[11..]), false, true)
                }
                _ => {}
            }
        }
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

    /// find: its actions are judged as what they run (`-exec CMD {}` as CMD on a path
    /// somewhere under the start paths, `-delete` as `rm` of what it matches, `-fprint
    /// FILE` as a write), then the rest of the expression by the rules like any other
    /// invocation. Returns true when it decided.
    fn find(&mut self, args: &[Arg], depth: u32, stage: Stage) -> bool {
        // Start paths: after -H/-L/-P/-D/-O, before the first expression word.
        let mut k = 0;
        while let Some(Some(a)) = args.get(k) {
            match a.as_str() {
                "-H" | "-L" | "-P" => k += 1,
                "-D" => k += 2,
                o if o.starts_with("-O") => k += 1,
                _ => break,
            }
        }
        let starts: Vec<&Arg> = args[k.min(args.len())..]
            .iter()
            .take_while(|a| {
                a.as_deref()
                    .is_none_or(|a| !a.starts_with('-') && a != "(" && a != "!" && a != ",")
            })
            .collect();
        let names: Vec<&str> = args
            .windows(2)
            .filter(|w| matches!(w[0].as_deref(), Some("-name" | "-iname")))
            .filter_map(|w| w[1].as_deref())
            .collect();
        // What `{}` stands for: something under the start path, named as -name says
        // when there is exactly one -name and nothing (-o, !) that could widen it.
        let widened = args
            .iter()
            .any(|a| matches!(a.as_deref(), Some("-o" | "-or" | "," | "!" | "-not")));
        let leaf = match names.as_slice() {
            [n] if !n.contains('/') && !widened => format!("**/{n}"),
            _ => "**".to_owned(),
        };
        let found: Arg = match starts.as_slice() {
            [] => Some(format!("./{leaf}")),
            [Some(one)] => Some(format!("{}/{leaf}", one.trim_end_matches('/'))),
            _ => None,
        };
        let mut rest: Vec<Arg> = vec![Some("find".into())];
        let mut acted = false;
        let mut i = 0;
        while i < args.len() {
            match args[i].as_deref() {
                Some(action @ ("-exec" | "-execdir" | "-ok" | "-okdir")) => {
                    // `;` ends it, and `+` only right after `{}`.
                    let end = args[i + 1..]
                        .iter()
                        .enumerate()
                        .position(|(k, a)| {
                            a.as_deref() == Some(";")
                                || (a.as_deref() == Some("+")
                                    && k > 0
                                    && args[i + k].as_deref() == Some("{}"))
                        })
                        .map_or(args.len(), |p| i + 1 + p);
                    if action.ends_with("dir") {
                        // It runs in the found file's folder: relative paths are there.
                        self.cwd_moved = true;
                        self.cwd_untrusted = true;
                    }
                    let inner: Vec<Arg> = args[i + 1..end]
                        .iter()
                        .map(|a| match (a, &found) {
                            (Some(a), Some(f)) if a.contains("{}") => Some(a.replace("{}", f)),
                            (Some(a), None) if a.contains("{}") => None,
                            _ => a.clone(),
                        })
                        .collect();
                    if inner.is_empty() {
                        self.block("unparseable", "find -exec without a command");
                    } else {
                        self.note(|| {
                            format!(
                                "find {} runs: {}",
                                args[i].as_deref().unwrap_or(""),
                                display(&inner)
                            )
                        });
                        self.invocation(&inner, depth + 1, Stage::default());
                    }
                    acted = true;
                    i = end + 1;
                }
                Some("-delete") => {
                    // Deletes what it matches under the start paths: judged as `rm` of
                    // the matching names there (`rm -r` of everything without -name).
                    let mut rm = vec![Some("rm".to_owned())];
                    let bases: Vec<Arg> = if starts.is_empty() {
                        vec![Some(".".into())]
                    } else {
                        starts.iter().map(|a| (*a).clone()).collect()
                    };
                    match names.as_slice() {
                        [name] if !name.contains('/') && !widened => {
                            for b in bases {
                                rm.push(
                                    b.map(|b| format!("{}/**/{name}", b.trim_end_matches('/'))),
                                );
                            }
                        }
                        _ => {
                            rm.push(Some("-r".into()));
                            for b in bases {
                                rm.push(
                                    b.map(|b| format!("{}/found-by-find", b.trim_end_matches('/'))),
                                );
                            }
                        }
                    }
                    self.note(|| format!("find -delete judged as: {}", display(&rm)));
                    self.invocation(&rm, depth + 1, stage);
                    acted = true;
                    i += 1;
                }
                Some("-fprint" | "-fprint0" | "-fprintf" | "-fls") => {
                    self.write_target(args.get(i + 1).and_then(|a| a.as_deref()));
                    acted = true;
                    i += if args[i].as_deref() == Some("-fprintf") {
                        3
                    } else {
                        2
                    };
                }
                _ => {
                    rest.push(args[i].clone());
                    i += 1;
                }
            }
        }
        if acted {
            // The search itself, without its actions.
            self.invocation(&rest, depth, stage);
        }
        acted
    }
}

/// A path to take configuration or code from: absolute, spelled out (no glob, no
/// `..` that a symlinked folder could redirect), and not in a folder anything may
/// write (`/tmp`, `/var/tmp`, `/dev/shm`, a user's runtime folder).
pub(super) fn trusted_path(p: &str) -> bool {
    p.starts_with('/')
        && !secrets::is_glob(p)
        && !p.split('/').any(|seg| seg == "..")
        && ![
            "/tmp",
            "/var/tmp",
            "/dev/shm",
            "/run/user",
            "/proc",
            "/dev/fd",
            "/run/lock",
        ]
        .iter()
        .any(|d| {
            let n = normalize_path(p);
            n == *d || n.starts_with(&format!("{d}/"))
        })
}

/// Folders holding the system's own programs: a program named by a path there is
/// judged as that program.
const SYSTEM_BIN_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/lib/postgresql/*/bin",
    "/snap/bin",
];

/// The name rules know a program by: its basename when it is a bare name or lives in
/// a system folder, else the whole path (which only a configured rule can name).
fn program_name(name: &str) -> &str {
    let Some((dir, base)) = name.rsplit_once('/') else {
        return name;
    };
    let dir = if dir.is_empty() { "/" } else { dir };
    let system = !dir.contains("..")
        && !secrets::is_glob(dir)
        && SYSTEM_BIN_DIRS
            .iter()
            .any(|d| glob(d, &normalize_path(dir)));
    if system { base } else { name }
}

/// Whether ps is asked for environments: BSD `e` (`ps auxe`, `ps -auxwwe`, which
/// procps reads as BSD), not `-e` (every process) nor an `e` inside a format list.
fn ps_shows_environment(args: &[Option<&str>]) -> bool {
    let mut skip_next = false;
    for a in args.iter().flatten() {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        let bsd = !a.starts_with('-') && a.chars().all(|c| c.is_ascii_alphabetic());
        let dashed_bsd = a.starts_with('-')
            && !a.starts_with("--")
            && a[1..].chars().all(|c| c.is_ascii_alphabetic())
            && (a.contains('x') || a.contains('w'));
        if (bsd || dashed_bsd) && a.contains('e') {
            return true;
        }
        // BSD options that take the next word (a format, a sort key, ids).
        if bsd && a.ends_with(['o', 'O', 'k', 'p', 't', 'U']) {
            skip_next = true;
        }
        if a.starts_with('-')
            && !a.starts_with("--")
            && a.ends_with(['o', 'O', 'k', 'p', 't', 'u', 'U', 'g', 'G', 'C'])
        {
            skip_next = true;
        }
    }
    false
}

/// A pipeline stage that only prints constant text (`echo`, `printf`, `true`).
fn trivial_feeder(cmd: &Command) -> bool {
    let Command::Simple(sc) = cmd else {
        return false;
    };
    let text = sc.to_string();
    let name = sc.word_or_name.as_ref().map(|w| w.value.as_str());
    matches!(name, Some("echo" | "printf" | "true" | ":")) && !text.contains(['$', '`', '<', '>'])
}

/// Skips leading options (and the values of those in `with_values`); returns what
/// follows.
///
/// Short options may be clustered as getopt allows (`sudo -ng users`, `exec -cla x`):
/// the first one in a cluster that takes a value takes the rest of the word, or the
/// next word when it ends the cluster.
fn skip_options<'a>(args: &'a [Arg], with_values: &[impl AsRef<str>]) -> &'a [Arg] {
    let takes = |o: &str| with_values.iter().any(|v| v.as_ref() == o);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_deref() {
            Some("--") => return &args[i + 1..],
            Some(a) if a.starts_with("--") => i += if takes(a) { 2 } else { 1 },
            Some(a) if a.starts_with('-') && a.len() > 1 => {
                let body: Vec<char> = a[1..].chars().collect();
                let mut skip = 1;
                for (k, c) in body.iter().enumerate() {
                    if takes(&format!("-{c}")) {
                        if k + 1 == body.len() {
                            skip = 2;
                        }
                        break;
                    }
                }
                i += skip;
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
