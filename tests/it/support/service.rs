//! A small real service for drills: a second Jarvis process (it serves `/metrics`),
//! controlled by a script `svc.sh start|noop|slow` that the remediation runs over SSH.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::alertmanager::free_port;

pub struct Service {
    pub dir: TempDir,
    pub port: u16,
}

impl Service {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let script = dir.path().join("svc.sh");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
# Drill service control. start: run it unless running; noop: change nothing;
# slow: count the run, wait 30 s, then start.
cd '{dir}' || exit 1
case "$1" in
start)
    # Running (and not a zombie nobody has reaped yet): nothing to do.
    if [ -f pid ] && kill -0 "$(cat pid)" 2>/dev/null \
        && ! grep -q '^State:.*Z' "/proc/$(cat pid)/status" 2>/dev/null; then exit 0; fi
    DATABASE_URL=sqlite://svc.db setsid '{bin}' serve --listen 127.0.0.1:{port} </dev/null >svc.log 2>&1 &
    echo $! > pid
    ;;
noop) ;;
slow)
    # A fix that takes its time: counted, so a test can tell whether it ran twice.
    echo run >> runs
    sleep 30
    exec "$0" start
    ;;
*) echo "usage: svc.sh start|noop|slow" >&2; exit 2 ;;
esac
"#,
                dir = dir.path().display(),
                bin = env!("CARGO_BIN_EXE_jarvis"),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Self { dir, port };
        assert!(
            Command::new(s.script())
                .arg("start")
                .status()
                .unwrap()
                .success()
        );
        s.wait_up();
        s
    }

    pub fn script(&self) -> PathBuf {
        self.dir.path().join("svc.sh")
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Accepting connections on its port.
    pub fn is_up(&self) -> bool {
        std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", self.port).parse().unwrap(),
            Duration::from_secs(1),
        )
        .is_ok()
    }

    pub fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.is_up() {
            assert!(Instant::now() < deadline, "drill service did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many times `svc.sh slow` has begun.
    pub fn slow_runs(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("runs"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Kills the service (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_up() {
            assert!(Instant::now() < deadline, "drill service did not die");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
