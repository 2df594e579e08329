//! A real OpenSSH server (Debian's openssh-server) on a loopback port, with a
//! generated host key and a generated client key for the current user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jarvis::config::HostConfig;
use tempfile::TempDir;

use super::alertmanager::free_port;
use super::in_ci;

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    pub user: String,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed");
}

impl Sshd {
    /// `None` (with a note) when sshd is not installed, except under CI.
    pub fn start() -> Option<Self> {
        if !Path::new(SSHD).exists() {
            assert!(
                !in_ci(),
                "{SSHD} is missing; .ci/run installs openssh-server"
            );
            eprintln!("skipping: openssh-server is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_ed25519"));
        keygen(&dir.path().join("client"));
        std::fs::copy(
            dir.path().join("client.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        // sshd wants its privilege-separation folder when started as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut s = Self {
            child: None,
            port: free_port(),
            dir,
            user,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 MaxSessions 50\nMaxStartups 100\nLogLevel ERROR\n",
                self.port,
                d.join("host_ed25519").display(),
                d.join("sshd.pid").display(),
                d.join("authorized_keys").display()
            ),
        )
        .unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(d.join("sshd.log")).unwrap(),
            ))
            .spawn()
            .expect("sshd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server and every session it forked (as a host going down would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("pkill")
                .args(["-KILL", "-P", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_ed25519.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An executable shell script `name` in the server's folder, with `body` after
    /// the `#!/bin/sh` line; its path.
    pub fn script(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    /// A host entry for this server, with its key pinned.
    pub fn host(&self, name: &str) -> HostConfig {
        HostConfig {
            name: name.into(),
            address: "127.0.0.1".into(),
            port: u32::from(self.port),
            user: self.user.clone(),
            key_file: self.path("client").display().to_string(),
            host_key: self.host_key(),
            ..HostConfig::default()
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
