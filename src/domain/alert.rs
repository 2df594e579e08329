//! Alerts as Jarvis sees them: validated names, Alertmanager-compatible fingerprints,
//! and the alert event that the store keeps and the workers process.
//!
//! Values here are parsed once at the edge (intake) so that everything downstream can
//! trust them: an `AlertName` is never empty, a `Fingerprint` is always 16 hex digits.

use std::collections::BTreeMap;
use std::fmt;

/// A label or annotation set. Sorted, because Alertmanager's fingerprint and our
/// signatures are defined over the sorted label names.
pub type LabelSet = BTreeMap<String, String>;

/// The `alertname` label: non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertName(String);

impl AlertName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("alertname must not be empty".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An alert's fingerprint: Alertmanager's 16 lower-case hex digits, or whatever
/// printable string a hand-made payload carries (`"manual-smoke-1"`, as the original
/// Jarvis's test scripts, n8n flows and curl examples send; it accepted any string).
/// Kept exactly as given: deduplication and per-fingerprint serialisation compare it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

/// Longest fingerprint accepted.
pub const MAX_FINGERPRINT_CHARS: usize = 128;

const FNV_OFFSET64: u64 = 14_695_981_039_346_656_037;
const FNV_PRIME64: u64 = 1_099_511_628_211;
/// Prometheus' `model.SeparatorByte`: never valid UTF-8, so `a=bc` and `ab=c` differ.
const SEPARATOR: u8 = 0xff;

impl Fingerprint {
    /// The fingerprint Alertmanager gives an alert with these labels
    /// (`prometheus/common/model.labelSetToFingerprint`: FNV-1a 64 over sorted
    /// `name 0xff value 0xff` pairs). Computing it the same way makes hand-written
    /// payloads without a fingerprint deduplicate exactly like real ones.
    pub fn of_labels(labels: &LabelSet) -> Self {
        let mut h = FNV_OFFSET64;
        let mut add = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(FNV_PRIME64);
            }
        };
        // BTreeMap iterates in byte order of the names, as Go's sort.Strings does.
        for (name, value) in labels {
            add(name.as_bytes());
            add(&[SEPARATOR]);
            add(value.as_bytes());
            add(&[SEPARATOR]);
        }
        Self(format!("{h:016x}"))
    }

    /// Accepts any non-empty printable string of at most 128 characters, as given.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err(
                "fingerprint is empty (leave it out and Jarvis computes it from the labels)".into(),
            );
        }
        if s.chars().count() > MAX_FINGERPRINT_CHARS {
            return Err(format!(
                "fingerprint is longer than {MAX_FINGERPRINT_CHARS} characters"
            ));
        }
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(format!(
                "fingerprint {s:?} contains the control character {c:?}; use printable text"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether Alertmanager says the alert is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "firing" => Ok(Self::Firing),
            "resolved" => Ok(Self::Resolved),
            other => Err(format!(
                "status {other:?} is neither \"firing\" nor \"resolved\""
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// Where an alert event is in its life (INTERFACE §3 "Alert states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Received,
    Deduplicated,
    Suppressed,
    Remediating,
    AwaitingApproval,
    /// Parked until a root cause arrives or a dependency's remediation ends.
    WaitingDependency,
    Verifying,
    Resolved,
    Failed,
    Escalated,
}

impl AlertState {
    pub const ALL: [AlertState; 10] = [
        Self::Received,
        Self::Deduplicated,
        Self::Suppressed,
        Self::Remediating,
        Self::AwaitingApproval,
        Self::WaitingDependency,
        Self::Verifying,
        Self::Resolved,
        Self::Failed,
        Self::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Deduplicated => "deduplicated",
            Self::Suppressed => "suppressed",
            Self::Remediating => "remediating",
            Self::AwaitingApproval => "awaiting_approval",
            Self::WaitingDependency => "waiting_dependency",
            Self::Verifying => "verifying",
            Self::Resolved => "resolved",
            Self::Failed => "failed",
            Self::Escalated => "escalated",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?}; expected one of {}", names.join(", "))
            })
    }

    /// Final states need no more work; everything else is picked up again after a restart.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Deduplicated | Self::Suppressed | Self::Resolved | Self::Failed | Self::Escalated
        )
    }
}

/// One alert as delivered in one webhook, before it is stored. Identified by
/// (fingerprint, status, starts_at): Alertmanager re-sends the whole group on every
/// flush and HA replicas send the same alerts twice; those repeats share this key.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertEvent {
    /// Time-ordered UUIDv7, assigned at intake so that spooled and stored events agree.
    pub id: String,
    pub fingerprint: Fingerprint,
    pub status: AlertStatus,
    pub alertname: AlertName,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    /// Epoch milliseconds.
    pub starts_at: i64,
    /// Epoch milliseconds; `None` for firing alerts (Alertmanager's zero time).
    pub ends_at: Option<i64>,
    pub generator_url: String,
    pub receiver: String,
    pub group_key: String,
    /// Epoch milliseconds.
    pub received_at: i64,
}

impl NewAlertEvent {
    pub fn instance(&self) -> Option<&str> {
        self.labels.get("instance").map(String::as_str)
    }
}

/// A label set from pairs, for tests.
/// Stored as TEXT: read back through these, so a row with an unknown value is a
/// decode error, never a silent default.
impl TryFrom<String> for AlertStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl TryFrom<String> for AlertState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl std::fmt::Display for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
pub(crate) fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_label_set_has_the_fnv_offset_fingerprint() {
        // prometheus/common: emptyLabelSignature = hashNew() = offset64.
        assert_eq!(
            Fingerprint::of_labels(&LabelSet::new()).to_string(),
            "cbf29ce484222325"
        );
    }

    /// Captured from a real Alertmanager 0.25.0 (Debian's prometheus-alertmanager):
    /// alerts POSTed to /api/v2/alerts, fingerprints read back from GET /api/v2/alerts.
    #[test]
    fn fingerprint_matches_real_alertmanager() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("d2c6efc389df0927", &[("alertname", "A")]),
            (
                "e63590747e2a29b2",
                &[
                    ("alertname", "TestAlert"),
                    ("instance", "test:8080"),
                    ("severity", "info"),
                ],
            ),
            (
                "cbca88afa28bd47f",
                &[
                    ("alertname", "ContainerDown"),
                    ("container", "frigate"),
                    ("host", "nexus"),
                    ("instance", "10.0.0.11:9100"),
                    ("job", "cadvisor"),
                    ("severity", "critical"),
                ],
            ),
            (
                "9c216a6dae777e4a",
                &[
                    ("alertname", "WireGuardVPNDown"),
                    ("instance", "10.0.0.20:9586"),
                    ("remediation_host", "outpost"),
                    ("severity", "critical"),
                ],
            ),
            (
                // Upper-case sorts before lower-case; multi-byte UTF-8 hashed as bytes.
                "62c44e87e3d4acdc",
                &[
                    ("Zed", "upper"),
                    ("alertname", "Ünïcode ☃"),
                    ("path", "/var/lib/x"),
                ],
            ),
        ];
        for (expected, pairs) in cases {
            assert_eq!(
                Fingerprint::of_labels(&labels(pairs)).to_string(),
                *expected,
                "labels {pairs:?}"
            );
        }
    }

    #[test]
    fn fingerprint_depends_on_label_boundaries() {
        let a = Fingerprint::of_labels(&labels(&[("a", "bc")]));
        let b = Fingerprint::of_labels(&labels(&[("ab", "c")]));
        assert_ne!(a, b);
    }

    #[test]
    fn fingerprints_are_kept_as_given_and_junk_is_refused() {
        for ok in [
            "0c0ffee0c0ffee00",
            "6f1d2c7a9b3e4d10",
            "ABCDEF0123456789",
            "1",
            "manual-smoke-1",
            "n8n flow: disk check",
            "é-ü",
        ] {
            assert_eq!(Fingerprint::parse(ok).unwrap().as_str(), ok);
        }
        assert!(Fingerprint::parse(&"x".repeat(MAX_FINGERPRINT_CHARS)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(MAX_FINGERPRINT_CHARS + 1),
            "a\nb".to_owned(),
            "tab\there".to_owned(),
        ] {
            assert!(
                Fingerprint::parse(&bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        // Computed ones look like Alertmanager's.
        let fp = Fingerprint::of_labels(&labels(&[("alertname", "A")]));
        assert!(fp.as_str().len() == 16 && fp.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn states_round_trip_and_finality() {
        for st in AlertState::ALL {
            assert_eq!(AlertState::parse(st.as_str()).unwrap(), st);
        }
        assert!(AlertState::parse("done").is_err());
        assert!(!AlertState::Received.is_final());
        assert!(!AlertState::AwaitingApproval.is_final());
        assert!(AlertState::Escalated.is_final());
    }

    #[test]
    fn alertname_must_not_be_blank() {
        assert!(AlertName::parse("").is_err());
        assert!(AlertName::parse("  ").is_err());
        assert_eq!(AlertName::parse("X").unwrap().as_str(), "X");
    }
}
