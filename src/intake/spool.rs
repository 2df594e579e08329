//! The local spool: where accepted alerts go while the database is unreachable.
//!
//! One JSON line per webhook payload, appended and fsync'd before the webhook is
//! answered, so a 200 means the alerts are on disk even if Jarvis is killed at once.
//! The file is replayed in order when the database returns; replay is idempotent
//! (events keep their ids and their (fingerprint, status, starts_at) identity), so a
//! crash in the middle of a replay only means some lines are offered twice.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::alert::{AlertName, AlertStatus, Fingerprint, LabelSet, NewAlertEvent};

const SPOOL_FILE: &str = "spool.jsonl";

#[derive(Serialize, Deserialize)]
struct SpoolLine {
    v: u32,
    events: Vec<SpoolEvent>,
}

#[derive(Serialize, Deserialize)]
struct SpoolEvent {
    id: String,
    fingerprint: String,
    status: String,
    alertname: String,
    labels: LabelSet,
    annotations: LabelSet,
    starts_at: i64,
    ends_at: Option<i64>,
    generator_url: String,
    receiver: String,
    group_key: String,
    received_at: i64,
}

impl From<&NewAlertEvent> for SpoolEvent {
    fn from(e: &NewAlertEvent) -> Self {
        Self {
            id: e.id.clone(),
            fingerprint: e.fingerprint.to_string(),
            status: e.status.as_str().into(),
            alertname: e.alertname.as_str().into(),
            labels: e.labels.clone(),
            annotations: e.annotations.clone(),
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            generator_url: e.generator_url.clone(),
            receiver: e.receiver.clone(),
            group_key: e.group_key.clone(),
            received_at: e.received_at,
        }
    }
}

impl TryFrom<SpoolEvent> for NewAlertEvent {
    type Error = String;
    fn try_from(e: SpoolEvent) -> Result<Self, String> {
        Ok(Self {
            fingerprint: Fingerprint::parse(&e.fingerprint)?,
            status: AlertStatus::parse(&e.status)?,
            alertname: AlertName::parse(&e.alertname)?,
            id: e.id,
            labels: e.labels,
            annotations: e.annotations,
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            generator_url: e.generator_url,
            receiver: e.receiver,
            group_key: e.group_key,
            received_at: e.received_at,
        })
    }
}

fn parse_line(line: &[u8]) -> Result<Vec<NewAlertEvent>, String> {
    let parsed: SpoolLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    parsed
        .events
        .into_iter()
        .map(NewAlertEvent::try_from)
        .collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// An append-only, fsync'd journal of payloads waiting for the database.
pub struct Spool {
    dir: PathBuf,
    file: File,
    pending_events: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`. A torn last line, left by a crash during an
    /// append that was therefore never acknowledged, is cut off. A line that cannot be
    /// read back (only damage to the file causes that) is moved to a `rejected-*.jsonl`
    /// file beside the spool and reported, rather than dropped or blocking the rest.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SPOOL_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(last_newline) => &bytes[..=last_newline],
            None => &[][..],
        };
        let (mut good, mut rejected, mut pending_events) = (Vec::new(), Vec::new(), 0u64);
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match parse_line(line) {
                Ok(events) => {
                    pending_events += events.len() as u64;
                    good.extend_from_slice(line);
                    good.push(b'\n');
                }
                Err(e) => {
                    tracing::error!(error = %e, dir = %dir.display(), "Spool line cannot be read; setting it aside for inspection.");
                    rejected.extend_from_slice(line);
                    rejected.push(b'\n');
                }
            }
        }
        if !rejected.is_empty() {
            let name = format!("rejected-{}.jsonl", crate::domain::ids::now_ms());
            write_synced(&dir.join(name), &rejected)?;
        }
        if good.len() != bytes.len() {
            // Rewrite atomically: the good lines must survive a crash during the repair.
            let tmp = dir.join(format!("{SPOOL_FILE}.tmp"));
            write_synced(&tmp, &good)?;
            std::fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self {
            dir: dir.to_owned(),
            file,
            pending_events,
        })
    }

    /// Alert events waiting in the spool.
    pub fn pending_events(&self) -> u64 {
        self.pending_events
    }

    /// Appends one line per payload and fsyncs once for all of them.
    pub fn append(&mut self, payloads: &[&[NewAlertEvent]]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut count = 0u64;
        for events in payloads {
            let line = SpoolLine {
                v: 1,
                events: events.iter().map(SpoolEvent::from).collect(),
            };
            serde_json::to_writer(&mut buf, &line)?;
            buf.push(b'\n');
            count += events.len() as u64;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.pending_events += count;
        Ok(())
    }

    /// Every spooled payload in order.
    pub fn read_all(&self) -> std::io::Result<Vec<Vec<NewAlertEvent>>> {
        let reader = BufReader::new(File::open(self.dir.join(SPOOL_FILE))?);
        let mut payloads = Vec::new();
        for line in reader.split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let events = parse_line(&line)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            payloads.push(events);
        }
        Ok(payloads)
    }

    /// Empties the spool after everything in it has been committed to the database.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_all()?;
        self.pending_events = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::payload::parse_payload;

    fn events(n: usize) -> Vec<NewAlertEvent> {
        let alerts: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"labels": {{"alertname": "A{i}", "x": "é\n\"q\""}}, "annotations": {{"s": "t"}}}}"#))
            .collect();
        parse_payload(
            format!(r#"{{"alerts": [{}]}}"#, alerts.join(",")).as_bytes(),
            42,
        )
        .unwrap()
    }

    #[test]
    fn payloads_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (events(2), events(3));
        {
            let mut s = Spool::open(dir.path()).unwrap();
            s.append(&[&a]).unwrap();
            s.append(&[&b]).unwrap();
            assert_eq!(s.pending_events(), 5);
        }
        let mut s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.pending_events(), 5);
        assert_eq!(s.read_all().unwrap(), vec![a, b]);
        s.clear().unwrap();
        assert_eq!(Spool::open(dir.path()).unwrap().pending_events(), 0);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_damaged_lines_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let a = events(1);
        {
            let mut s = Spool::open(dir.path()).unwrap();
            s.append(&[&a]).unwrap();
        }
        let path = dir.path().join(SPOOL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"v\":1,\"events\":[{\"id\"").unwrap();
        drop(f);
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.read_all().unwrap(), vec![a.clone()]);

        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"garbage\n").unwrap();
        drop(f);
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.read_all().unwrap(), vec![a]);
        let rejected: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("rejected-"))
            .collect();
        assert!(!rejected.is_empty());
    }
}
