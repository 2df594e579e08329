//! Secret paths as data, and the question the gate asks of every path a command may
//! read: *could* it be a secret? An argument is a shell glob (`/etc/shad?w`,
//! `/etc/[s]hadow`), a relative path (the working directory is unknown, so it could be
//! anywhere), or a directory read recursively (`grep -r x /etc`); each is turned into
//! a pattern, and the gate asks whether that pattern and a secret's glob can match a
//! common path — an intersection of two regular languages, decided exactly.

use std::collections::HashSet;

use super::policy::normalize_path;

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character other than `/` (nor `.` at the start of a name, `no_dot`).
    One {
        no_dot: bool,
    },
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class(Vec<(char, char)>, bool, bool),
    /// A shell `*` at the start of a name matches no leading dot: this token takes
    /// the first character (not `.`), a `Star` follows; or both are skipped.
    FirstOfStar,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**`: any run of characters.
    DStar,
}

/// Tokenizes a pattern; `classes` is whether `[...]` is a character class (shell globs)
/// or literal text (the policy's globs).
fn tokens(p: &str, classes: bool) -> Vec<Tok> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push(Tok::DStar);
                i += 2;
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
            }
            '*' => {
                // The shell's `*`, `?` and `[...]` never match a name's leading dot.
                if classes && (i == 0 || chars[i - 1] == '/') {
                    out.push(Tok::FirstOfStar);
                }
                out.push(Tok::Star);
                i += 1;
            }
            '?' => {
                out.push(Tok::One {
                    no_dot: classes && (i == 0 || chars[i - 1] == '/'),
                });
                i += 1;
            }
            '[' if classes => match class(&chars[i..]) {
                Some((Tok::Class(r, n, _), len)) => {
                    out.push(Tok::Class(r, n, i == 0 || chars[i - 1] == '/'));
                    i += len;
                }
                Some((tok, len)) => {
                    out.push(tok);
                    i += len;
                }
                None => {
                    out.push(Tok::Lit('['));
                    i += 1;
                }
            },
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    out
}

/// Parses `[...]` at the start of `s`: the token and how many characters it used.
fn class(s: &[char]) -> Option<(Tok, usize)> {
    let mut i = 1;
    let negated = matches!(s.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *s.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class(ranges, negated, false), i + 1));
        }
        first = false;
        if c == '[' && s.get(i + 1) == Some(&':') {
            // [:alpha:] and friends: over-approximate as "any character".
            let end = s[i + 2..].iter().position(|&c| c == ']')? + i + 2;
            ranges.push(('\0', char::MAX));
            i = end + 1;
            continue;
        }
        if s.get(i + 1) == Some(&'-') && s.get(i + 2).is_some_and(|&e| e != ']') {
            ranges.push((c, s[i + 2]));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
}

/// Whether a one-character step of `t` accepts `c`.
fn accepts(t: &Tok, c: char) -> bool {
    match t {
        Tok::Lit(l) => *l == c,
        Tok::One { no_dot } => c != '/' && !(*no_dot && c == '.'),
        Tok::Star => c != '/',
        Tok::FirstOfStar => c != '/' && c != '.',
        Tok::DStar => true,
        Tok::Class(ranges, negated, no_dot) => {
            c != '/'
                && !(*no_dot && c == '.')
                && (ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
        }
    }
}

/// Whether some character is accepted by both one-character steps.
fn compatible(a: &Tok, b: &Tok) -> bool {
    match (a, b) {
        (Tok::Lit(c), other) | (other, Tok::Lit(c)) => accepts(other, *c),
        // A leading-dot rule excludes only '.', which both could still avoid.
        (Tok::Class(ranges, false, _), other) | (other, Tok::Class(ranges, false, _)) => {
            ranges.iter().any(|&(lo, hi)| {
                // Small ranges are tried exhaustively; a huge one surely overlaps.
                (hi as u32).saturating_sub(lo as u32) > 512
                    || (lo..=hi).any(|c| accepts(other, c) && accepts(a, c) && accepts(b, c))
            })
        }
        // Both broad (any, any but '/', a negated class): some character fits both.
        _ => true,
    }
}

/// Whether the two patterns can match a common string.
fn intersect(p: &[Tok], q: &[Tok]) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        if !seen.insert((i, j)) {
            continue;
        }
        if i == p.len() && j == q.len() {
            return true;
        }
        let star = |t: Option<&Tok>| matches!(t, Some(Tok::Star | Tok::DStar));
        if star(p.get(i)) {
            stack.push((i + 1, j));
        }
        if star(q.get(j)) {
            stack.push((i, j + 1));
        }
        // An empty `*` at the start of a name: skip its first-character step and it.
        if matches!(p.get(i), Some(Tok::FirstOfStar)) {
            stack.push((i + 2, j));
        }
        if matches!(q.get(j), Some(Tok::FirstOfStar)) {
            stack.push((i, j + 2));
        }
        if let (Some(a), Some(b)) = (p.get(i), q.get(j))
            && compatible(a, b)
        {
            let ni = if star(Some(a)) { i } else { i + 1 };
            let nj = if star(Some(b)) { j } else { j + 1 };
            stack.push((ni, nj));
        }
    }
    false
}

/// Whether `candidate` (a shell glob, possibly with `**`) and the policy glob `secret`
/// can name the same path.
pub fn may_match(candidate: &str, secret: &str) -> bool {
    intersect(&tokens(candidate, true), &tokens(secret, false))
}

/// Whether a path argument (possibly a glob) may name a path of the policy glob `g`.
/// A glob whose last segment is a bare `*` (`/var/log/*`, a directory read
/// recursively: `/var/log/**`) is not taken to reach what may lie in any folder
/// (`**/.env`, `**/.ssh/**`): every folder could hold one, so every listing would be
/// refused. Globs that spell part of the name (`/srv/*.env`) still are, and so are the
/// anchored globs (`/etc/shadow`, `/root/.ssh/id_*`).
///
/// A folder read recursively (`grep -r x /srv`) is different: it does read every
/// `.env` below, so it is taken to reach them, except in folders that hold logs and
/// system data rather than anyone's configuration.
pub fn may_reach(candidate: &str, g: &str) -> bool {
    let last = candidate.rsplit('/').next().unwrap_or("");
    let bare = !last.is_empty() && last.chars().all(|c| c == '*');
    if g.starts_with("**/") && is_glob(candidate) {
        const NO_CONFIG: &[&str] = &[
            "/var/log",
            "/run/log",
            "/usr/share",
            "/usr/lib",
            "/usr/include",
            "/proc/sys",
            "/sys",
        ];
        let exempt = NO_CONFIG
            .iter()
            .any(|d| candidate.starts_with(&format!("{d}/")) && !candidate.contains(".."));
        let recursive = last == "**";
        if exempt || (bare && !recursive) {
            return false;
        }
    }
    may_match(candidate, g)
}

/// A path whose lexical reading cannot be trusted: a `..` after a folder that may be
/// a symlink (`/var/run/../etc` is `/etc`), or a glob segment that expands to `..`
/// (`/tmp/.?/etc`: dash matches `.?` and `.*` against `..`).
pub fn opaque(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').collect();
    segs.iter().enumerate().any(|(k, seg)| {
        (*seg == ".."
            && segs[..k]
                .iter()
                .any(|s| !s.is_empty() && *s != "." && *s != ".."))
            || (*seg != ".." && dotdot_glob(seg))
    })
}

/// A glob segment some shell may expand to `..` (`.?`, `.*`, `[.][.]`): only dots,
/// wildcards and bracket expressions, and at least one dot or bracket.
fn dotdot_glob(seg: &str) -> bool {
    if !is_glob(seg) || seg == "*" || seg == "**" {
        return false;
    }
    let mut outside = String::new();
    let mut depth = 0;
    for c in seg.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside.chars().all(|c| matches!(c, '.' | '?' | '*'))
        && (seg.contains('.') || seg.contains('['))
}

/// Whether the text has glob characters the shell would expand.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The patterns a path argument may stand for: absolute as written; under `~` in a
/// home directory; a relative one in the working directory, which is the home
/// directory an SSH command starts in unless the command changed it (`cwd_moved`:
/// then anywhere); with `/**` added when the program reads directories recursively.
pub fn candidates(word: &str, recursive: bool, cwd_moved: bool) -> Vec<String> {
    let w = word.trim();
    if w.is_empty() {
        return Vec::new();
    }
    // A home directory's own name never starts with a dot.
    const HOMES: [&str; 2] = ["/root", "/home/[!.]*"];
    // A path through `..` or a glob that expands to it: the part after the last such
    // step, anywhere (a symlinked folder can send it anywhere).
    if opaque(w) {
        let segs: Vec<&str> = w.split('/').collect();
        let last = segs
            .iter()
            .rposition(|seg| *seg == ".." || dotdot_glob(seg))
            .unwrap_or(0);
        let tail = segs[last + 1..].join("/");
        let base = if tail.is_empty() {
            "/**".to_owned()
        } else {
            format!("/**/{tail}")
        };
        return if recursive {
            vec![format!("{base}/**"), base]
        } else {
            vec![base]
        };
    }
    let bases: Vec<String> = if let Some(rest) = w.strip_prefix('~') {
        // `~` or `~user`: some home directory.
        let rest = rest.split_once('/').map_or("", |(_, r)| r);
        HOMES
            .iter()
            .map(|h| normalize_path(&format!("{h}/{rest}")))
            .collect()
    } else if w.starts_with('/') {
        vec![normalize_path(w)]
    } else if cwd_moved {
        let n = normalize_path(w);
        vec![if n.is_empty() {
            "/**".to_owned()
        } else {
            format!("/**/{n}")
        }]
    } else {
        HOMES
            .iter()
            .map(|h| normalize_path(&format!("{h}/{w}")))
            .collect()
    };
    let mut out = Vec::new();
    for base in bases {
        if recursive {
            out.push(format!("{}/**", base.trim_end_matches('/')));
        }
        out.push(base);
    }
    out
}

/// Public halves of key pairs and certificates: readable even where the secret globs
/// would match (only as literal paths: a glob could still expand to the private half).
fn public(path: &str) -> bool {
    const KEYRINGS: &[&str] = &[
        "/etc/apt/keyrings/",
        "/usr/share/keyrings/",
        "/etc/apt/trusted.gpg.d/",
    ];
    !is_glob(path)
        && (KEYRINGS
            .iter()
            .any(|k| path.starts_with(k) && !path.contains(".."))
            || path.ends_with(".pub")
            || path.ends_with(".crt")
            || path.ends_with("-cert.pem")
            || path.ends_with("/cert.pem")
            || path.ends_with("/chain.pem")
            || path.ends_with("/fullchain.pem"))
}

/// The first secret glob `word` could name, if any.
pub fn secret_named<'s>(
    word: &str,
    recursive: bool,
    cwd_moved: bool,
    secrets: &'s [String],
    devices: bool,
) -> Option<&'s str> {
    for cand in candidates(word, recursive, cwd_moved) {
        if public(&cand) {
            continue;
        }
        for s in secrets {
            if !devices && s.starts_with("/dev/") {
                continue;
            }
            if may_reach(&cand, s) {
                return Some(s.as_str());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_intersect_exactly() {
        let yes = [
            ("/etc/shadow", "/etc/shadow"),
            ("/etc/shad?w", "/etc/shadow"),
            ("/etc/[s]hadow", "/etc/shadow"),
            ("/etc/[a-z]hadow", "/etc/shadow"),
            ("/etc/sha*", "/etc/shadow"),
            ("/etc/*", "/etc/shadow"),
            ("/**/.ssh/id_rsa", "**/.ssh/id_*"),
            ("/root/.ssh/*", "**/.ssh/id_*"),
            ("/etc/**", "/etc/shadow"),
            ("/**", "/etc/shadow"),
            ("/proc/1/root/etc/shadow", "/proc/*/root/**"),
            ("/etc/[!x]hadow", "/etc/shadow"),
            ("/srv/.*", "**/.env"),
            ("/srv/*", "/srv/x"),
            ("*", "x"),
            (
                "/etc/letsencrypt/live/x/privkey.pem",
                "/etc/letsencrypt/**/privkey*.pem",
            ),
        ];
        for (c, s) in yes {
            assert!(may_match(c, s), "{c} should meet {s}");
        }
        let no = [
            ("/etc/passwd", "/etc/shadow"),
            ("/etc/[!s]hadow", "/etc/shadow"),
            ("/var/log/*", "/etc/shadow"),
            ("/etc/*/shadow", "/etc/shadow"),
            ("/etc/s?adow", "/etc/sh"),
            ("/srv/*.log", "**/.env.*"),
            ("/srv/?env", "**/.env"),
            ("/srv/[.]env", "**/.env"),
            ("/srv/*", "/srv/.env"),
        ];
        for (c, s) in no {
            assert!(!may_match(c, s), "{c} should not meet {s}");
        }
    }

    #[test]
    fn candidates_cover_relative_home_and_recursion() {
        assert_eq!(
            candidates("../../etc/shadow", false, false),
            ["/etc/shadow", "/etc/shadow"]
        );
        assert_eq!(
            candidates("../../etc/shadow", false, true),
            ["/**/etc/shadow"]
        );
        assert_eq!(
            candidates("~/.ssh/id_rsa", false, false),
            ["/root/.ssh/id_rsa", "/home/[!.]*/.ssh/id_rsa"]
        );
        assert!(
            secret_named(
                "~/.ssh/authorized_keys",
                false,
                false,
                &["**/.azure/**".to_owned()],
                true
            )
            .is_none()
        );
        assert_eq!(candidates("/etc", true, false), ["/etc/**", "/etc"]);
        assert_eq!(candidates(".", true, true), ["/**/**", "/**"]);
        assert_eq!(
            candidates("shadow", false, false),
            ["/root/shadow", "/home/[!.]*/shadow"]
        );
        assert_eq!(
            candidates("/var/run/../etc/shadow", false, false),
            ["/**/etc/shadow"]
        );
        assert_eq!(
            candidates("/tmp/.?/etc/shadow", false, false),
            ["/**/etc/shadow"]
        );
        assert!(opaque("/tmp/.[.]/etc") && opaque("/tmp/.*/x") && opaque("/a/../b"));
        assert!(!opaque("/tmp/.cache/x") && !opaque("../x") && !opaque("/tmp/*.log"));
        let secrets = vec![
            "/etc/shadow".to_owned(),
            "**/.ssh/id_*".to_owned(),
            "/dev/sd*".to_owned(),
            "**/*.env".to_owned(),
        ];
        assert!(secret_named("/var/log/*", false, false, &secrets, true).is_none());
        assert!(secret_named("/srv/app/*.env", false, false, &secrets, true).is_some());
        assert!(secret_named("/srv/app/.env", false, false, &secrets, true).is_some());
        assert!(secret_named("/root/.ssh/*", false, false, &secrets, true).is_none());
        assert!(secret_named("/root/.ssh/id*", false, false, &secrets, true).is_some());
        assert!(secret_named("/var/log", true, false, &secrets, true).is_none());
        assert!(
            secret_named("/srv", true, false, &secrets, true).is_some(),
            "a .env below"
        );
        assert!(secret_named("/", true, false, &secrets, true).is_some());
        assert!(secret_named("/etc", true, false, &secrets, true).is_some());
        assert!(secret_named("/etc", false, false, &secrets, true).is_none());
        assert!(secret_named("/root/.ssh/id_ed25519.pub", false, false, &secrets, true).is_none());
        assert!(secret_named("/root/.ssh/id_*", false, false, &secrets, true).is_some());
        assert!(secret_named("/dev/sda", false, false, &secrets, false).is_none());
        assert!(secret_named("/dev/sda", false, false, &secrets, true).is_some());
    }
}
