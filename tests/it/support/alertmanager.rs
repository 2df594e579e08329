//! A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on a loopback
//! port, configured to deliver to a Jarvis under test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::in_ci;

pub struct Alertmanager {
    child: Child,
    pub url: String,
    _dir: TempDir,
}

fn binary() -> Option<&'static str> {
    ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Alertmanager {
    /// Starts Alertmanager delivering every alert at once to `webhook_url` with Basic
    /// auth. `None` (with a note) when it is not installed, except under CI.
    pub fn start(webhook_url: &str, user: &str, password: &str) -> Option<Self> {
        Self::start_on(free_port(), webhook_url, user, password)
    }

    /// Like `start`, on a port chosen beforehand (Prometheus must know it first).
    pub fn start_on(port: u16, webhook_url: &str, user: &str, password: &str) -> Option<Self> {
        let Some(bin) = binary() else {
            assert!(
                !in_ci(),
                "prometheus-alertmanager is not installed; .ci/run installs it"
            );
            eprintln!(
                "skipping: prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: jarvis\n  group_by: ['alertname']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: jarvis\n    webhook_configs:\n      - url: {webhook_url}\n        send_resolved: true\n\
                 \x20       http_config:\n          basic_auth:\n            username: {user}\n            password: {password}\n"
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("alertmanager.log")).unwrap(),
            ))
            .spawn()
            .expect("start alertmanager");
        let am = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{}/-/ready", am.url))
            .map(|r| r.status().is_success())
            .ok()
            != Some(true)
        {
            assert!(
                Instant::now() < deadline,
                "alertmanager did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(am)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
