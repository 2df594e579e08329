//! Runbooks: `*.md` files in `[runbooks] dir`, one per alert (the file name is the
//! alert name), parsed into the sections the agent and people use: Investigation Steps,
//! Common Causes, Remediation, Commands. Looked up by exact name, then by partial
//! match. The folder is re-read when a file changes (polled: no watcher dependency,
//! and it works on network mounts) and on `POST /runbooks/reload`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// One runbook with its parsed sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Runbook {
    /// The file name without `.md`: the alert it is for.
    pub alert_name: String,
    pub title: String,
    pub investigation_steps: Vec<String>,
    pub common_causes: Vec<String>,
    pub remediation: Vec<String>,
    /// Commands from the Commands section (code blocks and backticked list items).
    pub commands: Vec<String>,
    pub markdown: String,
}

/// Parses one runbook. Unknown sections are kept in `markdown` only.
pub fn parse(alert_name: &str, markdown: &str) -> Runbook {
    let mut rb = Runbook {
        alert_name: alert_name.to_owned(),
        markdown: markdown.to_owned(),
        ..Runbook::default()
    };
    let mut section = String::new();
    let mut in_code = false;
    for line in markdown.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            if section == "commands" && !t.is_empty() && !t.starts_with('#') {
                rb.commands.push(t.to_owned());
            }
            continue;
        }
        if let Some(h) = t.strip_prefix("# ") {
            if rb.title.is_empty() {
                rb.title = h.trim().to_owned();
            }
            continue;
        }
        if let Some(h) = t.strip_prefix("## ") {
            section = h.trim().to_ascii_lowercase();
            continue;
        }
        let item = t
            .trim_start_matches(['-', '*'])
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start_matches(['.', ')'])
            .trim();
        if item.is_empty() {
            continue;
        }
        let list = match section.as_str() {
            "investigation steps" | "investigation" => &mut rb.investigation_steps,
            "common causes" | "causes" => &mut rb.common_causes,
            "remediation" => &mut rb.remediation,
            "commands" => {
                if let Some(cmd) = item.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
                    rb.commands.push(cmd.to_owned());
                }
                continue;
            }
            _ => continue,
        };
        list.push(item.to_owned());
    }
    rb
}

#[derive(Default)]
struct Loaded {
    books: BTreeMap<String, Runbook>,
    /// What the folder looked like when read: name → modified time.
    stamp: BTreeMap<PathBuf, Option<SystemTime>>,
}

/// The loaded runbooks, shared by the agent and the API.
#[derive(Clone)]
pub struct Runbooks {
    dir: PathBuf,
    loaded: Arc<RwLock<Loaded>>,
}

fn stamp(dir: &Path) -> BTreeMap<PathBuf, Option<SystemTime>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            let m = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            (p, m)
        })
        .collect()
}

impl Runbooks {
    /// Reads `dir` (a missing folder is an empty library, logged once).
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        let r = Self {
            dir: dir.into(),
            loaded: Arc::default(),
        };
        let n = r.reload();
        if n == 0 {
            tracing::info!(dir = %r.dir.display(), "No runbooks found; the LLM agent works without them ([runbooks] dir).");
        }
        r
    }

    /// Re-reads the folder; returns how many runbooks are loaded.
    pub fn reload(&self) -> usize {
        let stamp = stamp(&self.dir);
        let mut books = BTreeMap::new();
        for path in stamp.keys() {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    books.insert(name.to_owned(), parse(name, &text));
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "Cannot read a runbook.")
                }
            }
        }
        let n = books.len();
        let mut l = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        *l = Loaded { books, stamp };
        if n > 0 {
            tracing::info!(runbooks = n, dir = %self.dir.display(), "Runbooks loaded.");
        }
        n
    }

    /// Reloads when a file was added, removed or changed since the last read.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.dir);
        let changed = self.loaded.read().map(|l| l.stamp != now).unwrap_or(true);
        if changed {
            self.reload();
        }
        changed
    }

    /// Watches the folder until `cancel` fires.
    pub async fn watch(self, every: Duration, cancel: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }

    pub fn list(&self) -> Vec<Runbook> {
        self.loaded
            .read()
            .map(|l| l.books.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Exact name (case-insensitive), then the shortest runbook name contained in the
    /// alert name or containing it.
    pub fn find(&self, alert_name: &str) -> Option<Runbook> {
        let l = self.loaded.read().ok()?;
        let want = alert_name.to_ascii_lowercase();
        if want.is_empty() {
            return None;
        }
        if let Some(b) = l
            .books
            .values()
            .find(|b| b.alert_name.to_ascii_lowercase() == want)
        {
            return Some(b.clone());
        }
        l.books
            .values()
            .filter(|b| {
                let name = b.alert_name.to_ascii_lowercase();
                name.contains(&want) || want.contains(&name)
            })
            .min_by_key(|b| b.alert_name.len())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Container down\n\n## Investigation Steps\n1. Check `docker ps -a`\n2. Read the logs\n\n\
        ## Common Causes\n- OOM kill\n- bad config\n\n## Remediation\n- Restart the container\n\n\
        ## Commands\n```bash\ndocker ps -a --filter name={{ container }}\n# a comment\ndocker logs --tail 50 {{ container }}\n```\n- `docker inspect {{ container }}`\n";

    #[test]
    fn sections_are_parsed() {
        let rb = parse("ContainerDown", SAMPLE);
        assert_eq!(rb.title, "Container down");
        assert_eq!(
            rb.investigation_steps,
            ["Check `docker ps -a`", "Read the logs"]
        );
        assert_eq!(rb.common_causes, ["OOM kill", "bad config"]);
        assert_eq!(rb.remediation, ["Restart the container"]);
        assert_eq!(
            rb.commands,
            [
                "docker ps -a --filter name={{ container }}",
                "docker logs --tail 50 {{ container }}",
                "docker inspect {{ container }}"
            ]
        );
    }

    /// The runbooks we ship: every alert the issue names, every section filled, and
    /// no suggested command the gate would block.
    #[test]
    fn shipped_runbooks_are_complete_and_pass_the_gate() {
        let r = Runbooks::open(concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks"));
        let policy = crate::safety::Policy::built_in();
        for name in [
            "ContainerDown",
            "ContainerUnhealthy",
            "WireGuardVPNDown",
            "DiskSpaceLow",
            "HighMemoryUsage",
            "BackupStale",
            "FrigateDatabaseError",
            "PostgreSQLDown",
            "MQTTBrokerDown",
            "Zigbee2MQTTDown",
            "TLSCertExpiringSoon",
            "JarvisRestart",
        ] {
            let rb = r.find(name).unwrap_or_else(|| panic!("no runbook {name}"));
            assert_eq!(rb.alert_name, name);
            for (section, items) in [
                ("investigation steps", &rb.investigation_steps),
                ("common causes", &rb.common_causes),
                ("remediation", &rb.remediation),
                ("commands", &rb.commands),
            ] {
                assert!(!items.is_empty(), "{name}: no {section}");
            }
            for c in &rb.commands {
                let c = c.replace("{{ container }}", "frigate");
                let j = crate::safety::judge(
                    &c,
                    &crate::safety::Context {
                        host: None,
                        source: crate::safety::Source::Operator,
                        previously_verified: false,
                    },
                    &policy,
                );
                assert_ne!(
                    j.verdict,
                    crate::safety::Verdict::Blocked,
                    "{name}: `{c}`: {}",
                    j.reason
                );
            }
        }
    }

    #[test]
    fn lookup_is_exact_then_partial_and_reload_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ContainerDown.md"), SAMPLE).unwrap();
        std::fs::write(dir.path().join("Disk.md"), "# Disk\n").unwrap();
        let r = Runbooks::open(dir.path());
        assert_eq!(r.find("containerdown").unwrap().alert_name, "ContainerDown");
        assert_eq!(r.find("DiskSpaceLow").unwrap().alert_name, "Disk");
        assert!(r.find("Nothing").is_none());
        assert!(!r.reload_if_changed());
        std::fs::write(dir.path().join("Nothing.md"), "# N\n").unwrap();
        assert!(r.reload_if_changed());
        assert_eq!(r.find("Nothing").unwrap().title, "N");
    }
}
