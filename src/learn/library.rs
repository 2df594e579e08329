//! The pattern library in the database: signatures, conversions between pattern files
//! and rows, seeding, and which stored patterns may be used for an alert.
//!
//! Signatures:
//! - the *symptom* is the alert name plus its identifying labels (those that say what
//!   and where, never values that change from one firing to the next);
//! - the *commands signature* hashes the normalised commands (whitespace collapsed).
//!   Failure memory and learned patterns key on both.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::patterns::{self, Applied, PatternDef};
use crate::domain::alert::LabelSet;
use crate::store::{PatternRow, RemediationStore, StoreError};

/// Labels that identify what an alert is about and where. Others (severity, summary,
/// values, team routing) do not change what fixes it.
pub const IDENTIFYING_LABELS: &[&str] = &[
    "instance",
    "job",
    "container",
    "service",
    "system",
    "unit",
    "name",
    "host",
    "hostname",
    "nodename",
    "device",
    "mountpoint",
    "remediation_host",
];

/// Prior confidence of a pattern learned from a verified fix.
pub const LEARNED_PRIOR: f64 = 0.7;

/// A fix that failed this many times for a symptom since it last worked is not tried
/// again for that symptom. One failure is not enough: restarts race, services flap.
pub const KNOWN_FAILURE_AFTER: i64 = 2;

pub fn identifying(labels: &LabelSet) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| IDENTIFYING_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `AlertName{label="value",...}` over the identifying labels.
pub fn symptom(alert_name: &str, labels: &LabelSet) -> String {
    let inner: Vec<String> = identifying(labels)
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{alert_name}{{{}}}", inner.join(","))
}

pub fn normalize(command: &str) -> String {
    command.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn commands_sig(commands: &[String]) -> String {
    let normalized: Vec<String> = commands.iter().map(|c| normalize(c)).collect();
    short_hash(&normalized.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Stable id of a file pattern: its alert name and matchers (editing its commands
/// keeps its track record; changing what it matches makes it a new pattern).
pub fn file_pattern_id(origin: &str, p: &PatternDef) -> String {
    let matchers = serde_json::to_string(&p.matchers).expect("string map serializes");
    format!(
        "{}-{}",
        if origin == "seeded" { "seed" } else { "imp" },
        short_hash(&[&p.alert_name, &matchers])
    )
}

pub fn learned_id(symptom: &str, commands_sig: &str) -> String {
    format!("learned-{}", short_hash(&[symptom, commands_sig]))
}

pub fn row_from_def(id: String, origin: &str, p: &PatternDef, now: i64) -> PatternRow {
    PatternRow {
        id,
        alert_name: p.alert_name.clone(),
        matchers: serde_json::to_string(&p.matchers).expect("string map serializes"),
        host: p.host.clone(),
        commands: serde_json::to_string(&p.commands).expect("string list serializes"),
        description: p.description.clone(),
        origin: origin.into(),
        prior: p.confidence,
        success_count: 0,
        verified_successes: 0,
        failure_count: 0,
        last_used_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// The file form of a stored pattern (what `jarvis patterns export` writes); its
/// confidence is the current one, so an export carries what was learned.
pub fn def_from_row(r: &PatternRow) -> Result<PatternDef, String> {
    let matchers = serde_json::from_str(&r.matchers)
        .map_err(|e| format!("pattern {}: matchers: {e}", r.id))?;
    let commands = serde_json::from_str(&r.commands)
        .map_err(|e| format!("pattern {}: commands: {e}", r.id))?;
    Ok(PatternDef {
        alert_name: r.alert_name.clone(),
        matchers,
        host: r.host.clone(),
        commands,
        confidence: row_confidence(r),
        description: r.description.clone(),
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Current confidence: learned patterns count verified successes only.
pub fn row_confidence(r: &PatternRow) -> f64 {
    let successes = if r.origin == "learned" {
        r.verified_successes
    } else {
        r.success_count
    };
    patterns::confidence(r.prior, count(successes), count(r.failure_count))
}

/// Whether a stored pattern may be used without asking anyone: file patterns at or
/// above the threshold; learned ones after at least two verified successes too.
pub fn usable(r: &PatternRow, min_confidence: f64) -> bool {
    if r.origin == "learned" {
        patterns::skips_llm(
            r.prior,
            count(r.verified_successes),
            count(r.failure_count),
            min_confidence,
        )
    } else {
        row_confidence(r) >= min_confidence
    }
}

/// Writes the seeded library into the store (new patterns added, changed ones
/// refreshed, track records kept). Returns how many there are.
pub async fn seed(store: &dyn RemediationStore, now: i64) -> Result<usize, StoreError> {
    let all = patterns::seeded();
    for p in &all {
        let row = row_from_def(file_pattern_id("seeded", p), "seeded", p, now);
        store.upsert_pattern(&row).await?;
    }
    Ok(all.len())
}

/// A stored pattern applied to an alert.
pub struct Candidate {
    pub row: PatternRow,
    pub host: Option<String>,
    pub commands: Vec<String>,
}

/// Usable patterns for this alert that match it, most specific first, with their
/// placeholders filled.
pub fn candidates(
    alert_name: &str,
    labels: &LabelSet,
    rows: Vec<PatternRow>,
    min_confidence: f64,
) -> Vec<Candidate> {
    let mut out: Vec<(usize, Candidate)> = Vec::new();
    for row in rows.into_iter().filter(|r| usable(r, min_confidence)) {
        let Ok(def) = def_from_row(&row) else {
            tracing::warn!(pattern = %row.id, "Stored pattern is unreadable; skipped.");
            continue;
        };
        let one = [def];
        if let Some(Applied { host, commands, .. }) = patterns::find(alert_name, labels, &one) {
            out.push((
                one[0].matchers.len(),
                Candidate {
                    row,
                    host,
                    commands,
                },
            ));
        }
    }
    out.sort_by_key(|(specificity, c)| {
        (
            std::cmp::Reverse(*specificity),
            std::cmp::Reverse((row_confidence(&c.row) * 1e6) as i64),
        )
    });
    out.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::labels;

    #[test]
    fn symptoms_ignore_labels_that_do_not_identify() {
        let a = labels(&[
            ("alertname", "ContainerDown"),
            ("container", "frigate"),
            ("instance", "nexus:9100"),
            ("severity", "critical"),
        ]);
        let b = labels(&[
            ("alertname", "ContainerDown"),
            ("container", "frigate"),
            ("instance", "nexus:9100"),
            ("severity", "warning"),
        ]);
        assert_eq!(symptom("ContainerDown", &a), symptom("ContainerDown", &b));
        assert_eq!(
            symptom("ContainerDown", &a),
            r#"ContainerDown{container="frigate",instance="nexus:9100"}"#
        );
        let c = labels(&[("container", "mqtt")]);
        assert_ne!(symptom("ContainerDown", &a), symptom("ContainerDown", &c));
    }

    #[test]
    fn command_signatures_ignore_spacing_only() {
        let a = commands_sig(&["docker  restart frigate".into()]);
        assert_eq!(a, commands_sig(&[" docker restart frigate ".into()]));
        assert_ne!(a, commands_sig(&["docker restart mqtt".into()]));
        assert_ne!(
            commands_sig(&["a".into(), "b".into()]),
            commands_sig(&["a b".into()])
        );
    }

    fn row(origin: &str, prior: f64, s: i64, v: i64, f: i64) -> PatternRow {
        let def = PatternDef {
            alert_name: "X".into(),
            matchers: BTreeMap::new(),
            host: String::new(),
            commands: vec!["true".into()],
            confidence: prior,
            description: String::new(),
        };
        PatternRow {
            success_count: s,
            verified_successes: v,
            failure_count: f,
            ..row_from_def("id".into(), origin, &def, 0)
        }
    }

    #[test]
    fn learned_patterns_need_two_verified_successes() {
        assert!(!usable(&row("learned", LEARNED_PRIOR, 1, 1, 0), 0.75));
        assert!(!usable(&row("learned", LEARNED_PRIOR, 5, 1, 0), 0.75));
        assert!(usable(&row("learned", LEARNED_PRIOR, 2, 2, 0), 0.75));
        assert!(!usable(&row("learned", LEARNED_PRIOR, 2, 2, 3), 0.75));
        assert!(usable(&row("seeded", 0.85, 0, 0, 0), 0.75));
        assert!(!usable(&row("seeded", 0.85, 0, 0, 2), 0.75));
        assert!(!usable(&row("seeded", 0.6, 0, 0, 0), 0.75));
    }
}
