//! A real Prometheus (Debian's `prometheus`) on a loopback port with 1-second scrape and
//! evaluation intervals, external labels, and the alerting rules a test gives it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::alertmanager::free_port;
use super::in_ci;

pub struct Prometheus {
    child: Child,
    pub url: String,
    pub dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) with `rules` (the body of a rule
    /// group's `rules:` list, YAML). `None` (with a note) when it is not installed,
    /// except under CI.
    pub fn start(targets: &[String], rules: &str) -> Option<Self> {
        Self::start_alerting(targets, rules, None)
    }

    /// Like `start`, sending alerts to the Alertmanager at `alertmanager` (host:port;
    /// it may start later: Prometheus keeps retrying).
    pub fn start_alerting(
        targets: &[String],
        rules: &str,
        alertmanager: Option<&str>,
    ) -> Option<Self> {
        let ok = Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(!in_ci(), "prometheus is not installed; .ci/run installs it");
            eprintln!("skipping: prometheus is not installed (apt-get install prometheus)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rules_file = dir.path().join("rules.yml");
        std::fs::write(
            &rules_file,
            format!("groups:\n  - name: test\n    interval: 1s\n    rules:\n{rules}"),
        )
        .unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    cluster: homelab\n\
                 rule_files:\n  - {}\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: [{}]\n",
                rules_file.display(),
                targets.join(", ")
            ) + &alertmanager
                .map(|am| format!("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"))
                .unwrap_or_default(),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("start prometheus");
        let p = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::blocking::get(format!("{}/-/ready", p.url))
            .map(|r| r.status().is_success())
            .ok()
            != Some(true)
        {
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready: {}",
                std::fs::read_to_string(p.dir.path().join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(p)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
