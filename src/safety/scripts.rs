//! The small languages read-only tools carry inside their arguments, parsed rather than
//! scanned: sed scripts (addresses, `s///` flags, `e`, `w`, `W`, `r`, `R`) and awk
//! programs (a tokenizer that finds `system`, pipes, output redirections, `getline`
//! from files, `@` indirect calls and rewritten `ARGV`). What cannot be parsed is
//! reported as such, and the gate never calls it read-only.

/// What a sed script does beyond printing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SedEffects {
    /// `e` commands or the `e` flag of `s`: runs shell commands.
    pub executes: bool,
    /// Files written by `w`, `W` or the `w` flag of `s`.
    pub writes: Vec<String>,
    /// Files read by `r` and `R`.
    pub reads: Vec<String>,
}

/// Parses a GNU sed script.
pub fn sed(script: &str) -> Result<SedEffects, String> {
    let c: Vec<char> = script.chars().collect();
    let mut fx = SedEffects::default();
    let mut i = 0;
    let mut depth = 0i32;
    let skip_ws = |i: &mut usize| {
        while *i < c.len() && (c[*i] == ' ' || c[*i] == '\t') {
            *i += 1;
        }
    };
    let to_eol = |i: &mut usize| -> String {
        let start = *i;
        while *i < c.len() && c[*i] != '\n' {
            *i += 1;
        }
        c[start..*i].iter().collect()
    };
    // Reads a delimited part (regex or replacement) ending with an unescaped `d`.
    let delimited = |i: &mut usize, d: char| -> Result<(), String> {
        while *i < c.len() {
            match c[*i] {
                '\\' => *i += 2,
                x if x == d => {
                    *i += 1;
                    return Ok(());
                }
                '\n' if d != '\n' => {
                    return Err("a newline inside a sed regular expression".into());
                }
                _ => *i += 1,
            }
        }
        Err(format!("unterminated sed expression (missing {d:?})"))
    };
    loop {
        while i < c.len() && (c[i].is_whitespace() || c[i] == ';') {
            i += 1;
        }
        if i >= c.len() {
            break;
        }
        // Addresses: up to two, separated by a comma.
        for n in 0..2 {
            skip_ws(&mut i);
            let Some(&ch) = c.get(i) else { break };
            match ch {
                '0'..='9' => {
                    while i < c.len() && c[i].is_ascii_digit() {
                        i += 1;
                    }
                    if c.get(i) == Some(&'~') {
                        i += 1;
                        while i < c.len() && c[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
                '$' => i += 1,
                '/' => {
                    i += 1;
                    delimited(&mut i, '/')?;
                    while matches!(c.get(i), Some('I' | 'M')) {
                        i += 1;
                    }
                }
                '\\' => {
                    let d = *c.get(i + 1).ok_or("sed address \\ without a delimiter")?;
                    i += 2;
                    delimited(&mut i, d)?;
                    while matches!(c.get(i), Some('I' | 'M')) {
                        i += 1;
                    }
                }
                '+' | '~' if n == 1 => {
                    i += 1;
                    while i < c.len() && c[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                _ => break,
            }
            skip_ws(&mut i);
            if n == 0 && c.get(i) == Some(&',') {
                i += 1;
            } else {
                break;
            }
        }
        skip_ws(&mut i);
        while c.get(i) == Some(&'!') {
            i += 1;
            skip_ws(&mut i);
        }
        let Some(&cmd) = c.get(i) else {
            return Err("a sed address without a command".into());
        };
        i += 1;
        match cmd {
            '{' => {
                depth += 1;
                continue;
            }
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced } in sed script".into());
                }
            }
            '#' => {
                // A comment ends at the newline, whatever comes before it.
                to_eol(&mut i);
            }
            'a' | 'i' | 'c' => {
                // Text to the end of the line; an odd number of trailing backslashes
                // continues it (`\\` is a literal backslash).
                loop {
                    let line = to_eol(&mut i);
                    let trailing = line.chars().rev().take_while(|&ch| ch == '\\').count();
                    if trailing % 2 == 1 && i < c.len() {
                        i += 1;
                        continue;
                    }
                    break;
                }
            }
            ':' => {
                // The label ends at whitespace too: what follows is read as a command
                // (reading more generously than sed could only hide an `e`).
                skip_ws(&mut i);
                while i < c.len() && !c[i].is_whitespace() && c[i] != ';' {
                    i += 1;
                }
                // Whatever follows on the line is read as the next command.
                continue;
            }
            'b' | 't' | 'T' | 'v' => {
                // The label (or version) is one word; what follows is a command.
                skip_ws(&mut i);
                while i < c.len() && !c[i].is_whitespace() && c[i] != ';' && c[i] != '}' {
                    i += 1;
                }
                continue;
            }
            'r' | 'R' => {
                skip_ws(&mut i);
                fx.reads.push(to_eol(&mut i).trim_end().to_owned());
            }
            'w' | 'W' => {
                skip_ws(&mut i);
                fx.writes.push(to_eol(&mut i).trim_end().to_owned());
            }
            'e' => {
                fx.executes = true;
                to_eol(&mut i);
            }
            'l' | 'q' | 'Q' | 'L' => {
                skip_ws(&mut i);
                while i < c.len() && c[i].is_ascii_digit() {
                    i += 1;
                }
            }
            '=' | 'd' | 'D' | 'F' | 'g' | 'G' | 'h' | 'H' | 'n' | 'N' | 'p' | 'P' | 'x' | 'z' => {}
            's' => {
                let d = *c.get(i).ok_or("s without a delimiter")?;
                if d == '\\' || d == '\n' {
                    return Err("s with a backslash or newline delimiter".into());
                }
                i += 1;
                delimited(&mut i, d)?;
                delimited(&mut i, d)?;
                while let Some(&f) = c.get(i) {
                    match f {
                        'g' | 'p' | 'i' | 'I' | 'm' | 'M' | '0'..='9' => i += 1,
                        'e' => {
                            fx.executes = true;
                            i += 1;
                        }
                        'w' => {
                            i += 1;
                            skip_ws(&mut i);
                            fx.writes.push(to_eol(&mut i).trim_end().to_owned());
                        }
                        _ => break,
                    }
                }
            }
            'y' => {
                let d = *c.get(i).ok_or("y without a delimiter")?;
                i += 1;
                delimited(&mut i, d)?;
                delimited(&mut i, d)?;
            }
            other => return Err(format!("unknown sed command {other:?}")),
        }
        skip_ws(&mut i);
        match c.get(i) {
            None | Some(';' | '\n' | '}') => {}
            Some('#') => {}
            Some(other) => {
                return Err(format!("unexpected {other:?} after a sed command"));
            }
        }
    }
    if depth != 0 {
        return Err("unbalanced { in sed script".into());
    }
    Ok(fx)
}

/// What an awk program does beyond reading its input and printing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AwkEffects {
    /// Why it runs commands (`system`, a pipe, `@` indirect call), if it does.
    pub executes: Option<String>,
    /// Output redirection targets; `None` when the target is computed at run time.
    pub writes: Vec<Option<String>>,
    /// Files read with `getline <`; `None` when computed at run time.
    pub reads: Vec<Option<String>>,
    /// It assigns ARGV or ARGC, so which files it reads is decided at run time.
    pub rewrites_argv: bool,
    /// String constants (checked against secret paths).
    pub strings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum AwkTok {
    Word(String),
    Str(String),
    Regex,
    Num,
    Op(String),
    Newline,
}

fn awk_tokens(src: &str) -> Result<Vec<AwkTok>, String> {
    let c: Vec<char> = src.chars().collect();
    let mut out: Vec<AwkTok> = Vec::new();
    // Parentheses opened right after `if`, `while` or `for`: after the matching `)` a
    // statement starts, so a `/` there begins a regex.
    let mut cond_parens: Vec<bool> = Vec::new();
    let mut statement_starts = false;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        match ch {
            ' ' | '\t' | '\r' => i += 1,
            '\\' if c.get(i + 1) == Some(&'\n') => i += 2,
            '\n' => {
                out.push(AwkTok::Newline);
                i += 1;
            }
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match c.get(i) {
                        None => return Err("unterminated string in awk program".into()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            match c.get(i + 1) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(&e) if e == '"' || e == '\\' || e == '/' => s.push(e),
                                // Octal and other escapes could spell anything.
                                Some(_) => s.push('\u{fffd}'),
                                None => return Err("unterminated string in awk program".into()),
                            }
                            i += 2;
                        }
                        Some(&x) => {
                            s.push(x);
                            i += 1;
                        }
                    }
                }
                out.push(AwkTok::Str(s));
            }
            '/' => {
                // A regex where an operand is expected, division after an operand.
                // Keywords (`print /#/`, `return /x/`) are not operands.
                const KEYWORDS: &[&str] = &[
                    "print", "printf", "return", "in", "do", "else", "delete", "exit", "case",
                    "getline",
                ];
                let operand_before = matches!(
                    out.last(),
                    Some(AwkTok::Word(w)) if !KEYWORDS.contains(&w.as_str())
                ) || matches!(
                    out.last(),
                    Some(AwkTok::Str(_) | AwkTok::Num | AwkTok::Regex)
                ) || matches!(out.last(), Some(AwkTok::Op(o)) if (o == ")" && !statement_starts) || o == "]" || o == "++" || o == "--");
                if operand_before {
                    out.push(AwkTok::Op("/".into()));
                    i += 1;
                } else {
                    i += 1;
                    let mut in_class = false;
                    loop {
                        match c.get(i) {
                            None | Some('\n') => {
                                return Err("unterminated regular expression in awk program".into());
                            }
                            Some('\\') => i += 2,
                            Some('[') => {
                                in_class = true;
                                i += 1;
                            }
                            Some(']') => {
                                in_class = false;
                                i += 1;
                            }
                            Some('/') if !in_class => {
                                i += 1;
                                break;
                            }
                            Some(_) => i += 1,
                        }
                    }
                    out.push(AwkTok::Regex);
                }
            }
            c0 if c0.is_ascii_alphabetic() || c0 == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(AwkTok::Word(c[start..i].iter().collect()));
            }
            c0 if c0.is_ascii_digit()
                || c0 == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit) =>
            {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
                out.push(AwkTok::Num);
            }
            _ => {
                let two: String = c[i..(i + 2).min(c.len())].iter().collect();
                let op = if [
                    "||", "&&", "|&", ">>", ">=", "<=", "==", "!=", "!~", "++", "--", "+=", "-=",
                    "*=", "/=", "%=", "^=", "**",
                ]
                .contains(&two.as_str())
                {
                    two
                } else {
                    ch.to_string()
                };
                i += op.chars().count();
                statement_starts = false;
                if op == "(" {
                    cond_parens.push(matches!(out.last(), Some(AwkTok::Word(w)) if w == "if" || w == "while" || w == "for"));
                } else if op == ")" {
                    statement_starts = cond_parens.pop().unwrap_or(false);
                }
                out.push(AwkTok::Op(op));
            }
        }
    }
    Ok(out)
}

/// Tokenizes an awk program and reports its effects.
pub fn awk(src: &str) -> Result<AwkEffects, String> {
    let toks = awk_tokens(src)?;
    let mut fx = AwkEffects::default();
    // Paren depth at which the current print/printf statement started, if any.
    let mut print_at: Option<i32> = None;
    let mut depth = 0i32;
    let target = |k: usize| -> Option<String> {
        // A redirection target: a lone string constant is known, anything else is not.
        match (toks.get(k), toks.get(k + 1)) {
            (Some(AwkTok::Str(s)), next)
                if matches!(next, None | Some(AwkTok::Newline))
                    || matches!(next, Some(AwkTok::Op(o)) if o == ";" || o == "}" || o == ")") =>
            {
                Some(s.clone())
            }
            _ => None,
        }
    };
    for (k, t) in toks.iter().enumerate() {
        match t {
            AwkTok::Str(s) => fx.strings.push(s.clone()),
            AwkTok::Word(w) => match w.as_str() {
                "system" => fx.executes = Some("calls system()".into()),
                "extension" => fx.executes = Some("loads an extension library".into()),
                "print" | "printf" => print_at = Some(depth),
                "getline" => {
                    // `getline [lvalue] < file`: the lvalue may be a variable, an array
                    // element or a field (`getline a[0] < f`, `getline $0 < f`).
                    let mut j = k + 1;
                    let mut d = 0;
                    while let Some(t) = toks.get(j) {
                        match t {
                            AwkTok::Op(o) if o == "<" && d == 0 => {
                                fx.reads.push(target(j + 1));
                                break;
                            }
                            AwkTok::Op(o) if o == "[" || o == "(" => d += 1,
                            AwkTok::Op(o) if (o == "]" || o == ")") && d > 0 => d -= 1,
                            AwkTok::Op(o) if o == "$" => {}
                            AwkTok::Word(_) | AwkTok::Num | AwkTok::Str(_) => {}
                            _ if d > 0 => {}
                            _ => break,
                        }
                        j += 1;
                    }
                }
                "ARGV" | "ARGC" => {
                    // Assigned (`ARGV[1] = ...`, `ARGC = 2`, `ARGV[n]++`...), not just read.
                    let mut j = k + 1;
                    if matches!(toks.get(j), Some(AwkTok::Op(o)) if o == "[") {
                        let mut d = 0;
                        while let Some(t) = toks.get(j) {
                            match t {
                                AwkTok::Op(o) if o == "[" => d += 1,
                                AwkTok::Op(o) if o == "]" => {
                                    d -= 1;
                                    if d == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                        j += 1;
                    }
                    let assigned = matches!(toks.get(j), Some(AwkTok::Op(o)) if ["=", "+=", "-=", "*=", "/=", "%=", "^=", "++", "--"].contains(&o.as_str()))
                        || matches!(toks.get(k.wrapping_sub(1)), Some(AwkTok::Op(o)) if o == "++" || o == "--")
                        || matches!(toks.get(k.wrapping_sub(1)), Some(AwkTok::Word(w)) if w == "delete" || w == "split" || w == "getline");
                    // `split(s, ARGV)` and `getline ARGV[1]` assign too.
                    let passed = matches!(toks.get(k.wrapping_sub(1)), Some(AwkTok::Op(o)) if o == "," || o == "(");
                    if assigned || passed {
                        fx.rewrites_argv = true;
                    }
                }
                _ => {}
            },
            AwkTok::Op(o) => match o.as_str() {
                "(" | "[" => depth += 1,
                ")" | "]" => depth -= 1,
                "|" | "|&" => fx.executes = Some("pipes to or from a command".into()),
                "@" => fx.executes = Some("makes an indirect call or directive (@)".into()),
                ";" | "}" | "{" if print_at.is_some_and(|d| depth <= d) => print_at = None,
                ">" | ">>" if print_at == Some(depth) => fx.writes.push(target(k + 1)),
                _ => {}
            },
            AwkTok::Newline => {
                if print_at.is_some_and(|d| depth <= d) {
                    print_at = None;
                }
            }
            AwkTok::Regex | AwkTok::Num => {}
        }
    }
    Ok(fx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sed_scripts() {
        let ok = [
            "1,20p",
            "s/a/b/g",
            "/ERROR/p",
            "$!d",
            "s|/x|/y|2",
            "y/abc/xyz/",
            "1~2d",
            "0,/re/d",
            "/a/,/b/{p;d}",
            "s/a\\/b/c/gI",
            "$=",
            "#n\np",
        ];
        for s in ok {
            let fx = sed(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(fx, SedEffects::default(), "{s}");
        }
        let exec = [
            "# c\\\ne id",
            "1a foo\\\\\ne id",
            "v 4.2 e id",
            "t x e id",
            ":a e id",
            "e id",
            "1e id",
            "$e",
            "/x/e id",
            "s/x/id/e",
            "1~2e date",
            "0,/x/ e id",
            "p;e",
            "/a/{e\n}",
        ];
        for s in exec {
            assert!(sed(s).unwrap().executes, "{s}");
        }
        assert_eq!(sed("/x/w /tmp/f").unwrap().writes, ["/tmp/f"]);
        assert_eq!(sed("s/a/b/w /etc/passwd").unwrap().writes, ["/etc/passwd"]);
        assert_eq!(sed("1W /tmp/x; p").unwrap().writes, ["/tmp/x; p"]);
        assert_eq!(sed("$r /etc/shadow").unwrap().reads, ["/etc/shadow"]);
        assert_eq!(sed("R /etc/shadow").unwrap().reads, ["/etc/shadow"]);
        for bad in ["s/a/b", "k", "{p", "p}", "s/a/b/x"] {
            assert!(sed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn awk_programs() {
        for ok in [
            "{print $1}",
            "$3 > 1000 {print $1}",
            "NR>1 {sum+=$3} END {print sum}",
            "$9 >= 500",
            "{ if ($1 > 5) print $2 }",
            "/error/ {c++} END {print c}",
            "{a[$1]++} END {for (k in a) print k, a[k]}",
            "{print ($1 > 2)}",
            "BEGIN{FS=\":\"} {print $1 / 2}",
        ] {
            let fx = awk(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(
                fx.executes.is_none()
                    && fx.writes.is_empty()
                    && fx.reads.is_empty()
                    && !fx.rewrites_argv,
                "{ok}: {fx:?}"
            );
        }
        for ex in [
            "BEGIN{ x = $/\"/; system(\"id\") #\"\n}",
            "BEGIN{ if (1) /\"/; system(\"id\") #\"\n}",
            "BEGIN { print /#/; system(\"id\") }",
            "function f() { return /#/ } BEGIN { system(\"id\") }",
            "BEGIN {system(\"id\")}",
            "{print | \"sh\"}",
            "BEGIN {\"id\" | getline x}",
            "BEGIN{f=\"system\"; @f(\"id\")}",
            "BEGIN{print |& \"cat\"}",
            "@load \"x\"",
        ] {
            assert!(awk(ex).unwrap().executes.is_some(), "{ex}");
        }
        assert_eq!(
            awk("{print > \"/etc/x\"}").unwrap().writes,
            [Some("/etc/x".to_owned())]
        );
        assert_eq!(awk("{print > out}").unwrap().writes, [None]);
        assert_eq!(
            awk("{printf \"%s\", $1 >> \"/tmp/y\"}").unwrap().writes,
            [Some("/tmp/y".to_owned())]
        );
        assert_eq!(
            awk("BEGIN{while ((getline l < \"/etc/shadow\") > 0) print l}")
                .unwrap()
                .reads,
            [Some("/etc/shadow".to_owned())]
        );
        assert!(
            awk("BEGIN{ARGV[1]=\"/etc/shadow\"; ARGC=2} {print}")
                .unwrap()
                .rewrites_argv
        );
        assert!(!awk("{print ARGV[1]}").unwrap().rewrites_argv);
        for lvalue in ["a[0]", "$0", "x"] {
            let src = format!(
                "BEGIN{{f=\"/etc/sh\" \"adow\"; while ((getline {lvalue} < f) > 0) print}}"
            );
            assert_eq!(awk(&src).unwrap().reads, [None], "{src}");
        }
        assert!(awk("{print \"unterminated}").is_err());
    }
}
