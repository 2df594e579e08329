//! Options as the programs themselves read them: clustered short flags (`-bn1`),
//! attached values (`-k2`, `--key=2`), values in the next word, whole-word options of
//! single-dash programs (`find -name`, `openssl -noout`), and the allow-list entries
//! that say which of them a rule accepts.
//!
//! A rule that grants `diagnostic` or `allowed` is an allow-list: every option of the
//! invocation must be on it, with a value it accepts. So an option nobody has looked at
//! (`sort -o`, `rg --pre`, `tar --to-command`) can never make a command read-only.

use std::collections::BTreeMap;

use super::policy::glob;

/// How many values an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Flag,
    /// `--color[=WHEN]`: a value only when attached with `=`.
    OptionalAttached,
    Value,
    /// `jq --arg NAME VALUE`.
    TwoValues,
}

/// What an accepted option's value may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    Any,
    /// The value must match one of these globs.
    Glob(Vec<String>),
    /// The value must match none of these globs.
    NotGlob(Vec<String>),
    /// The value is a file the program reads as data (checked against secret paths).
    ReadFile,
    /// The value is a file of configuration or code (a compose file, a web server's
    /// configuration, a repository): it must be a spelled-out absolute path outside the
    /// folders anything may write (`-c=^`).
    TrustedPath,
}

/// One allow-list entry, parsed from `"-k="`, `"--color[=]"`, `"-o=/dev/null"`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptSpec {
    pub name: String,
    pub arity: Arity,
    pub constraint: Constraint,
}

impl OptSpec {
    pub fn parse(entry: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "option entry {entry:?} is not -x, --long, -x=, -x=GLOB, -x=!GLOB, -x=@, -x=^, --long[=], -x== or -#"
            )
        };
        if !entry.starts_with('-') || entry.len() < 2 {
            return Err(bad());
        }
        if let Some(name) = entry.strip_suffix("[=]") {
            return Ok(Self {
                name: name.into(),
                arity: Arity::OptionalAttached,
                constraint: Constraint::Any,
            });
        }
        // The name ends at the first `=` after the leading dashes.
        let body_start = entry.len() - entry.trim_start_matches('-').len();
        let (name, rest) = match entry[body_start..].find('=') {
            Some(i) => (&entry[..body_start + i], Some(&entry[body_start + i + 1..])),
            None => (entry, None),
        };
        if name.len() <= body_start {
            return Err(bad());
        }
        let (arity, constraint) = match rest {
            None => (Arity::Flag, Constraint::Any),
            Some("") => (Arity::Value, Constraint::Any),
            Some("=") => (Arity::TwoValues, Constraint::Any),
            Some("@") => (Arity::Value, Constraint::ReadFile),
            Some("^") => (Arity::Value, Constraint::TrustedPath),
            Some(g) if g.starts_with('!') => (
                Arity::Value,
                Constraint::NotGlob(g[1..].split('|').map(str::to_owned).collect()),
            ),
            Some(g) => (
                Arity::Value,
                Constraint::Glob(g.split('|').map(str::to_owned).collect()),
            ),
        };
        Ok(Self {
            name: name.into(),
            arity,
            constraint,
        })
    }

    /// Whether a parsed option is this entry with an acceptable value; `Err` says why not.
    pub fn accepts(&self, opt: &Opt<'_>) -> Result<(), String> {
        let value = opt.values.first().copied();
        match (&self.constraint, value) {
            (Constraint::Any | Constraint::ReadFile, _) => Ok(()),
            (Constraint::TrustedPath, Some(Some(v))) => {
                if super::walk::trusted_path(v) {
                    Ok(())
                } else {
                    Err(format!(
                        "{} {v:?} is not a spelled-out path outside temporary folders",
                        opt.name
                    ))
                }
            }
            (_, None) => Ok(()),
            (_, Some(None)) => Err(format!(
                "the value of {} is only known at run time",
                opt.name
            )),
            (Constraint::Glob(globs), Some(Some(v))) => {
                if globs.iter().any(|g| word_glob(g, v)) {
                    Ok(())
                } else {
                    Err(format!(
                        "{} {v:?} is not one of the accepted values ({})",
                        opt.name,
                        globs.join(", ")
                    ))
                }
            }
            (Constraint::NotGlob(globs), Some(Some(v))) => {
                match globs.iter().find(|g| word_glob(g, v)) {
                    Some(g) => Err(format!("{} {v:?} matches the refused form {g:?}", opt.name)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A glob for words (not paths): `*` matches anything, `/` included.
pub fn word_glob(pattern: &str, text: &str) -> bool {
    glob(&pattern.replace("**", "*").replace('*', "**"), text)
}

/// How a program writes its options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// getopt: clustered short flags, `--long[=value]`, `--` ends options.
    #[default]
    Gnu,
    /// Whole-word options with one dash (`find -name`, `openssl -noout`).
    Single,
}

/// Which options take values, for parsing (the union of every entry naming them).
#[derive(Debug, Clone, Default)]
pub struct Grammar {
    arity: BTreeMap<String, Arity>,
    pub style: Style,
}

impl Grammar {
    pub fn add(&mut self, name: &str, arity: Arity) {
        let slot = self.arity.entry(name.to_owned()).or_insert(arity);
        // Two entries disagreeing: the one taking more words wins, so a value is
        // never mistaken for a positional argument.
        if arity_rank(arity) > arity_rank(*slot) {
            *slot = arity;
        }
    }
    fn get(&self, name: &str) -> Option<Arity> {
        self.arity.get(name).copied()
    }
}

fn arity_rank(a: Arity) -> u8 {
    match a {
        Arity::Flag => 0,
        Arity::OptionalAttached => 1,
        Arity::Value => 2,
        Arity::TwoValues => 3,
    }
}

/// One option as the program will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt<'a> {
    /// `-n`, `--lines`, `-name`, or `-#` for a numeric option like `-5`.
    pub name: String,
    /// The values it took; `None` for a value only known at run time.
    pub values: Vec<Option<&'a str>>,
    /// Whether the grammar knows this option (an unknown one is never accepted).
    pub known: bool,
}

/// An argument list split into options and positional arguments.
#[derive(Debug, Clone, Default)]
pub struct Parsed<'a> {
    pub opts: Vec<Opt<'a>>,
    pub positional: Vec<Option<&'a str>>,
    /// Arguments only known at run time where an option could stand (`sort $X`).
    pub dynamic_option_slots: usize,
}

/// Splits `args` into options and positional arguments as `grammar` says.
pub fn parse<'a>(args: &'a [Option<String>], grammar: &Grammar) -> Parsed<'a> {
    let mut out = Parsed::default();
    let mut i = 0;
    let mut only_positional = false;
    // The next word as an option's value. A word that looks like an option is taken
    // as the value and read again as an option: whether the program takes it as one
    // or the other, the rules see both (`journalctl -n --vacuum-size=1` must not hide
    // --vacuum-size behind -n).
    let next_value = |i: &mut usize| -> Option<&'a str> {
        let next = args.get(*i + 1).and_then(|a| a.as_deref());
        let option_like = next.is_some_and(|w| {
            w.len() > 1 && w.starts_with('-') && !w[1..].chars().all(|c| c.is_ascii_digit())
        });
        if !option_like {
            *i += 1;
        }
        next
    };
    while i < args.len() {
        let Some(w) = args[i].as_deref() else {
            if !only_positional {
                out.dynamic_option_slots += 1;
            }
            out.positional.push(None);
            i += 1;
            continue;
        };
        if only_positional || w == "-" || !w.starts_with('-') {
            out.positional.push(Some(w));
            i += 1;
            continue;
        }
        if w == "--" {
            // Single-dash programs (find) read their expression after `--` too.
            if grammar.style != Style::Single {
                only_positional = true;
            }
            i += 1;
            continue;
        }
        let mut take =
            |name: &str, attached: Option<&'a str>, arity: Option<Arity>, i: &mut usize| {
                let mut values = Vec::new();
                match arity {
                    None => {
                        if let Some(a) = attached {
                            values.push(Some(a));
                        }
                    }
                    Some(Arity::Flag) | Some(Arity::OptionalAttached) => {
                        if let Some(a) = attached {
                            values.push(Some(a));
                        }
                    }
                    Some(Arity::Value) => values.push(match attached {
                        Some(a) => Some(a),
                        None => next_value(i),
                    }),
                    Some(Arity::TwoValues) => {
                        values.push(next_value(i));
                        values.push(next_value(i));
                    }
                }
                // A flag given a value it does not take is not the flag we know.
                let known = match arity {
                    None => false,
                    Some(Arity::Flag) => attached.is_none(),
                    Some(_) => true,
                };
                out.opts.push(Opt {
                    name: name.to_owned(),
                    values,
                    known,
                });
            };
        if let Some(long) = w.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, _)) => (format!("--{n}"), Some(&w[n.len() + 3..])),
                None => (w.to_owned(), None),
            };
            let arity = grammar.get(&name);
            take(&name, attached, arity, &mut i);
            i += 1;
            continue;
        }
        let body = &w[1..];
        if body.chars().all(|c| c.is_ascii_digit()) && grammar.get(w).is_none() {
            take("-#", None, grammar.get("-#"), &mut i);
            i += 1;
            continue;
        }
        if grammar.style == Style::Single
            || grammar.get(w).is_some() && w.len() > 2
            || body.chars().all(|c| c.is_ascii_digit())
        {
            let (name, attached) = match w.split_once('=') {
                Some((n, _)) if grammar.get(n).is_some() => (n, Some(&w[n.len() + 1..])),
                _ => (w, None),
            };
            take(name, attached, grammar.get(name), &mut i);
            i += 1;
            continue;
        }
        // A cluster of short options: flags, then at most one taking the rest as value.
        let mut rest = body;
        while let Some(c) = rest.chars().next() {
            let after = &rest[c.len_utf8()..];
            let name = format!("-{c}");
            match grammar.get(&name) {
                Some(Arity::Flag) | Some(Arity::OptionalAttached) => {
                    take(&name, None, Some(Arity::Flag), &mut i);
                    rest = after;
                }
                Some(arity) => {
                    let attached = (!after.is_empty()).then_some(after);
                    take(&name, attached, Some(arity), &mut i);
                    break;
                }
                None => {
                    // Unknown: whatever follows may be its value; the option is refused anyway.
                    take(&name, (!after.is_empty()).then_some(after), None, &mut i);
                    break;
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grammar(entries: &[&str], style: Style) -> Grammar {
        let mut g = Grammar {
            style,
            ..Grammar::default()
        };
        for e in entries {
            let s = OptSpec::parse(e).unwrap();
            g.add(&s.name, s.arity);
        }
        g
    }

    fn args(words: &[&str]) -> Vec<Option<String>> {
        words.iter().map(|w| Some((*w).to_owned())).collect()
    }

    fn names(p: &Parsed<'_>) -> Vec<String> {
        p.opts
            .iter()
            .map(|o| {
                let v: Vec<&str> = o.values.iter().map(|v| v.unwrap_or("?")).collect();
                format!(
                    "{}{}{}",
                    if o.known { "" } else { "!" },
                    o.name,
                    if v.is_empty() {
                        String::new()
                    } else {
                        format!("={}", v.join(","))
                    }
                )
            })
            .collect()
    }

    #[test]
    fn clusters_attached_values_and_long_forms() {
        let g = grammar(
            &["-b", "-n=", "-d=", "--lines=", "--color[=]", "-#"],
            Style::Gnu,
        );
        let a = args(&[
            "-bn1",
            "-n",
            "5",
            "--lines=3",
            "--color",
            "--color=auto",
            "-5",
            "file",
            "-d2",
        ]);
        let p = parse(&a, &g);
        assert_eq!(
            names(&p),
            [
                "-b",
                "-n=1",
                "-n=5",
                "--lines=3",
                "--color",
                "--color=auto",
                "-#",
                "-d=2"
            ]
        );
        assert_eq!(p.positional, [Some("file")]);
    }

    #[test]
    fn unknown_options_are_marked_and_flags_with_values_are_unknown() {
        let g = grammar(&["-b", "--quiet"], Style::Gnu);
        let a = args(&["-bo/etc/x", "--quiet=1", "--output=/tmp/x", "--", "-x"]);
        let p = parse(&a, &g);
        assert_eq!(
            names(&p),
            ["-b", "!-o=/etc/x", "!--quiet=1", "!--output=/tmp/x"]
        );
        assert_eq!(p.positional, [Some("-x")]);
    }

    #[test]
    fn a_value_that_looks_like_an_option_is_read_as_one_too() {
        let g = grammar(&["-n=", "-u="], Style::Gnu);
        let a = args(&["-n", "--vacuum-size=1", "-u", "-5", "x"]);
        let p = parse(&a, &g);
        assert_eq!(
            names(&p),
            ["-n=--vacuum-size=1", "!--vacuum-size=1", "-u=-5"]
        );
        assert_eq!(p.positional, [Some("x")]);
    }

    #[test]
    fn single_dash_words_and_run_time_values() {
        let g = grammar(&["-name=", "-noout", "-in=@"], Style::Single);
        let mut a = args(&["-noout", "-in"]);
        a.push(None);
        a.push(None);
        let p = parse(&a, &g);
        assert_eq!(names(&p), ["-noout", "-in=?"]);
        assert_eq!(p.dynamic_option_slots, 1);
    }

    #[test]
    fn entries_parse_with_constraints() {
        let s = OptSpec::parse("-o=/dev/null").unwrap();
        assert_eq!(s.constraint, Constraint::Glob(vec!["/dev/null".into()]));
        let s = OptSpec::parse("-w=!*%output{*|@*").unwrap();
        let opt = |v: &'static str| Opt {
            name: "-w".into(),
            values: vec![Some(v)],
            known: true,
        };
        assert!(s.accepts(&opt("%{http_code}")).is_ok());
        assert!(s.accepts(&opt("%output{/tmp/x}x")).is_err());
        assert!(s.accepts(&opt("@/etc/fmt")).is_err());
        assert_eq!(OptSpec::parse("--arg==").unwrap().arity, Arity::TwoValues);
        assert!(OptSpec::parse("x").is_err());
        assert!(OptSpec::parse("-=").is_err());
    }
}
