//! Running commands on hosts: over SSH with verified host keys ([`ssh`]), or on
//! Jarvis's own machine for hosts whose address is `local` ([`local`]); and working
//! out which configured host an alert is about ([`resolve_host`]).
//!
//! Commands reaching this module have already passed the safety gate. Here the
//! concerns are transport ones: never trusting an unverified key, bounding time and
//! output, and retrying only when nothing can have run yet.

pub mod action;
pub mod limits;
pub mod local;
pub mod monitor;
pub mod runner;
pub mod ssh;

use std::time::Duration;

use crate::config::HostConfig;
use crate::domain::alert::LabelSet;

/// Largest stdout and stderr kept per command; the rest is cut with a marker.
pub const OUTPUT_CAP_BYTES: usize = 64 * 1024;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// `None` when it was killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timed_out: bool,
    pub duration: Duration,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nothing ran: the host could not be reached. Safe to retry.
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error(
        "host key for {host} does not match: expected {expected}, the server presented {presented}; \
         if the host was reinstalled, update its host_key (ssh-keyscan -t ed25519 ADDRESS)"
    )]
    HostKeyMismatch {
        host: String,
        expected: String,
        presented: String,
    },
    #[error(
        "host key for {host} is not known: the server presented {presented}; pin it as host_key, add it \
         to known_hosts, or set trust_on_first_use = true for this host"
    )]
    UnknownHostKey { host: String, presented: String },
    #[error("authentication to {host} as {user} failed: {message}")]
    Auth {
        host: String,
        user: String,
        message: String,
    },
    /// The command may have started: never retried.
    #[error("running the command on {host} failed after it may have started: {message}")]
    Channel { host: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl ExecError {
    /// Connection-level failures count towards marking a host offline.
    pub fn is_connection_failure(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

/// Caps captured output, cutting on a character boundary.
pub(crate) struct CappedBuf {
    bytes: Vec<u8>,
    truncated: bool,
}

impl CappedBuf {
    pub(crate) fn new() -> Self {
        Self {
            bytes: Vec::new(),
            truncated: false,
        }
    }
    pub(crate) fn push(&mut self, data: &[u8]) {
        let room = OUTPUT_CAP_BYTES.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
    pub(crate) fn finish(self) -> (String, bool) {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            s.push_str(&format!(
                "\n[output cut at {} KiB]",
                OUTPUT_CAP_BYTES / 1024
            ));
        }
        (s, self.truncated)
    }
}

/// Why no host matched an alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown host: {0}")]
pub struct UnknownHost(pub String);

/// The host an alert is about: its `remediation_host` label (a name or alias), else
/// its `instance` against each host's `match_instances` globs, else its `host`,
/// `hostname` or `nodename` label, else the host part of `instance` against names,
/// aliases and addresses.
pub fn resolve_host<'a>(
    labels: &LabelSet,
    hosts: &'a [HostConfig],
) -> Result<&'a HostConfig, UnknownHost> {
    let by_name = |n: &str| {
        hosts
            .iter()
            .find(|h| h.name == n || h.aliases.iter().any(|a| a == n))
    };
    if let Some(name) = labels.get("remediation_host") {
        // An explicit choice that does not exist is an error, never a fall-through to
        // some other host.
        return by_name(name).ok_or_else(|| {
            UnknownHost(format!(
                "remediation_host {name:?} is not a configured host or alias"
            ))
        });
    }
    let instance = labels.get("instance").map(String::as_str);
    if let Some(inst) = instance
        && let Some(h) = hosts.iter().find(|h| {
            h.match_instances
                .iter()
                .any(|g| crate::safety::policy::glob(&g.replace('*', "**"), inst))
        })
    {
        return Ok(h);
    }
    for label in ["host", "hostname", "nodename"] {
        if let Some(h) = labels.get(label).and_then(|n| by_name(n)) {
            return Ok(h);
        }
    }
    if let Some(inst) = instance {
        let host_part = inst
            .rsplit_once(':')
            .map_or(inst, |(h, _)| h)
            .trim_matches(['[', ']']);
        if let Some(h) =
            by_name(host_part).or_else(|| hosts.iter().find(|h| h.address == host_part))
        {
            return Ok(h);
        }
    }
    Err(UnknownHost(match instance {
        Some(i) => format!(
            "no host matches instance {i:?} (set match_instances, or a remediation_host label)"
        ),
        None => "the alert names no host (no remediation_host, instance or host label)".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, globs: &[&str], aliases: &[&str]) -> HostConfig {
        HostConfig {
            name: name.into(),
            address: address.into(),
            match_instances: globs.iter().map(|s| s.to_string()).collect(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            ..HostConfig::default()
        }
    }

    use crate::domain::alert::labels;

    #[test]
    fn resolution_order_and_unknown_hosts() {
        let hosts = vec![
            host(
                "nexus",
                "192.168.0.11",
                &["192.168.0.11:*", "nexus:*"],
                &["nexus.lan"],
            ),
            host("outpost", "vps.example.com", &[], &["vps"]),
            host("pi", "192.168.0.20", &[], &[]),
        ];
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<&'a str, &'a str>);
        let cases: &[Case] = &[
            (
                &[
                    ("remediation_host", "outpost"),
                    ("instance", "192.168.0.11:9100"),
                ],
                Ok("outpost"),
            ),
            (&[("remediation_host", "vps")], Ok("outpost")),
            (
                &[
                    ("remediation_host", "nowhere"),
                    ("instance", "192.168.0.11:9100"),
                ],
                Err("remediation_host \"nowhere\""),
            ),
            (&[("instance", "192.168.0.11:9100")], Ok("nexus")),
            (&[("instance", "nexus:8080")], Ok("nexus")),
            (
                &[("instance", "10.9.9.9:1"), ("host", "nexus.lan")],
                Ok("nexus"),
            ),
            (&[("nodename", "pi")], Ok("pi")),
            (&[("instance", "192.168.0.20:9100")], Ok("pi")),
            (&[("instance", "vps:9100")], Ok("outpost")),
            (
                &[("instance", "10.9.9.9:9100")],
                Err("no host matches instance \"10.9.9.9:9100\""),
            ),
            (&[("alertname", "X")], Err("names no host")),
        ];
        for (l, want) in cases {
            let got = resolve_host(&labels(l), &hosts)
                .map(|h| h.name.as_str())
                .map_err(|e| e.0);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{l:?}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{l:?}: {g}"),
                (g, w) => panic!("{l:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn output_is_capped_and_marked() {
        let mut b = CappedBuf::new();
        b.push(&vec![b'x'; OUTPUT_CAP_BYTES - 10]);
        b.push(&[b'y'; 100]);
        let (s, cut) = b.finish();
        assert!(cut);
        assert!(s.ends_with("[output cut at 64 KiB]"));
        assert_eq!(s.matches('y').count(), 10);
    }
}
