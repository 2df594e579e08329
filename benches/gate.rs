//! The safety gate's cost per command (numbers, not assertions): every line of the
//! escape corpus (`tests/gate_corpus.tsv`), judged for the LLM, plain and with the
//! explanation the runner stores with approvals; and the policy's load time.
//!
//!     cargo bench --bench gate

use std::time::{Duration, Instant};

use jarvis::safety::{self, Context, Policy, Source};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let corpus: Vec<&str> = include_str!("../tests/gate_corpus.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .collect();
    let started = Instant::now();
    let policy = Policy::built_in();
    let load = started.elapsed();
    let ctx = Context::new(Some("nexus"), Source::Llm);
    println!("| what | commands | mean | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (name, explained) in [("judge", false), ("judge + explain", true)] {
        let mut times = Vec::with_capacity(corpus.len() * 5);
        for _ in 0..5 {
            for cmd in &corpus {
                let t = Instant::now();
                if explained {
                    std::hint::black_box(safety::explain(cmd, &ctx, &policy));
                } else {
                    std::hint::black_box(safety::judge(cmd, &ctx, &policy));
                }
                times.push(t.elapsed());
            }
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "| {name} | {} | {:?} | {:?} | {:?} | {:?} |",
            corpus.len(),
            mean,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
    println!("\npolicy load (built-in rules and allow-lists): {load:?}");
}
