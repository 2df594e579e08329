//! Parse + judge arbitrary text: must never panic, and for the strictest source an
//! input that the gate cannot read must never come out `allowed`.
#![no_main]

use std::sync::OnceLock;

use jarvis::safety::{self, Context, Policy, Source, Verdict};
use libfuzzer_sys::fuzz_target;

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let policy = POLICY.get_or_init(|| {
        // libFuzzer's hook aborts on any panic, even one the gate catches (it guards
        // its parser calls and blocks). With the default hook, a caught panic is handled
        // and one escaping `judge` still aborts in libfuzzer-sys's wrapper.
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| {
            if std::env::var_os("JARVIS_FUZZ_SHOW_PANICS").is_some() {
                eprintln!("panic: {info}");
            }
        }));
        Policy::built_in()
    });
    let j = safety::judge(text, &Context::new(Some("nexus"), Source::Llm), policy);
    assert!(!j.rule.is_empty() && !j.reason.is_empty());
    if j.rule == "unparseable" {
        assert_eq!(j.verdict, Verdict::Blocked);
    }
    // Wrapping a command that parsed in sudo never weakens the verdict. (Text that does
    // not parse alone can mean something else after `sudo`: `for b` is a syntax error,
    // `sudo for b` runs a program named `for`.)
    let wrapped = safety::judge(&format!("sudo {text}"), &Context::new(Some("nexus"), Source::Llm), policy);
    // And `sudo NAME=VALUE cmd` makes the first word a variable, not the program.
    // Reserved words (`for`, `coproc`, ...) are only keywords in command position; after
    // `sudo` they are program names, so the two texts mean different things.
    const RESERVED: &[&str] = &[
        "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for", "in",
        "function", "select", "time", "coproc", "{", "}", "!", "[[", "]]",
    ];
    // The first word ends at whitespace or a shell metacharacter (`time<f` is `time`).
    let first = text
        .trim_start()
        .split(|c: char| c.is_whitespace() || "<>|&;()".contains(c))
        .next()
        .unwrap_or("");
    let first_word_sets_a_variable = first.contains('=');
    let keyword = RESERVED.contains(&first);
    if j.rule != "unparseable" && !first_word_sets_a_variable && !keyword && !text.trim_start().starts_with(['-', '#', '&', '|', ';', '(', ')', '<', '>', '{', '}', '!']) && !text.contains('\n') {
        assert!(wrapped.verdict >= j.verdict || wrapped.rule == "unparseable", "{text:?}: {j:?} vs sudo: {wrapped:?}");
    }
});
