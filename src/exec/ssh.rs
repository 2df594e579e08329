//! The SSH executor (pure Rust, russh). One pooled connection per host, reconnected
//! when it drops; a bounded number of concurrent commands per host; host keys always
//! verified against a pinned key or a known_hosts file (trust on first use only where
//! a host opts in); connect timeout, per-command timeout that also stops the remote
//! process, capped output; retries on connection failures only, never once a command
//! may have started.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::{Mutex, Semaphore};

use super::{CappedBuf, CommandOutput, ExecError};
use crate::config::HostConfig;

/// How long to wait for a connection and authentication.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts to connect before giving up (connection errors only).
const CONNECT_ATTEMPTS: u32 = 3;
/// After the remote `timeout` should have fired, how long before we close the channel.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How a host's key is verified.
#[derive(Debug, Clone)]
enum Trust {
    Pinned(Box<PublicKey>),
    KnownHosts(PathBuf),
    /// Trust on first use, recording into this file.
    FirstUse(PathBuf),
}

struct HostSlot {
    cfg: HostConfig,
    trust: Trust,
    conn: Mutex<Option<Arc<Handle<Verifier>>>>,
    slots: Semaphore,
}

pub struct SshExecutor {
    hosts: HashMap<String, Arc<HostSlot>>,
    connect_timeout: Duration,
}

impl SshExecutor {
    /// `tofu_file` records keys learned on first use for hosts without a known_hosts.
    pub fn new(hosts: &[HostConfig], tofu_file: PathBuf) -> Result<Self, ExecError> {
        crate::install_crypto_provider();
        let mut map = HashMap::new();
        for h in hosts.iter().filter(|h| !h.is_local()) {
            let trust = if !h.host_key.is_empty() {
                let key = PublicKey::from_openssh(h.host_key.trim()).map_err(|e| {
                    ExecError::Config(format!(
                        "hosts {}: host_key is not an OpenSSH public key ({e})",
                        h.name
                    ))
                })?;
                Trust::Pinned(Box::new(key))
            } else if !h.known_hosts.is_empty() && !h.trust_on_first_use {
                Trust::KnownHosts(PathBuf::from(&h.known_hosts))
            } else if h.trust_on_first_use {
                Trust::FirstUse(if h.known_hosts.is_empty() {
                    tofu_file.clone()
                } else {
                    PathBuf::from(&h.known_hosts)
                })
            } else {
                return Err(ExecError::Config(format!(
                    "hosts {}: no host_key, known_hosts or trust_on_first_use",
                    h.name
                )));
            };
            map.insert(
                h.name.clone(),
                Arc::new(HostSlot {
                    cfg: h.clone(),
                    trust,
                    conn: Mutex::new(None),
                    slots: Semaphore::new(h.max_concurrent_commands.max(1) as usize),
                }),
            );
        }
        Ok(Self {
            hosts: map,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// Overrides the connect timeout (tests use short ones).
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Runs `command` on `host`. The remote side runs it under `timeout`, so a command
    /// that outlives `limit` is stopped there too, not only abandoned here.
    pub async fn run(
        &self,
        host: &str,
        command: &str,
        limit: Duration,
    ) -> Result<CommandOutput, ExecError> {
        let slot = self
            .hosts
            .get(host)
            .ok_or_else(|| ExecError::Config(format!("unknown host {host:?}")))?
            .clone();
        let _permit = slot
            .slots
            .acquire()
            .await
            .map_err(|_| ExecError::Config("executor closed".into()))?;
        let started = Instant::now();
        let mut attempt = 0;
        let channel = loop {
            attempt += 1;
            let handle = self.connection(&slot).await?;
            match handle.channel_open_session().await {
                Ok(c) => break c,
                // Nothing was sent yet: drop the stale connection and try again.
                Err(e) if attempt < CONNECT_ATTEMPTS => {
                    tracing::debug!(host, error = %e, "SSH channel failed to open; reconnecting.");
                    *slot.conn.lock().await = None;
                }
                Err(e) => {
                    *slot.conn.lock().await = None;
                    return Err(ExecError::Connect {
                        host: host.into(),
                        message: format!("cannot open a session: {e}"),
                    });
                }
            }
        };
        let secs = limit.as_secs().max(1);
        let wrapped = format!(
            "timeout --kill-after={} {secs} sh -c {}",
            KILL_GRACE.as_secs(),
            sh_quote(command)
        );
        let mut channel = channel;
        channel
            .exec(true, wrapped)
            .await
            .map_err(|e| ExecError::Channel {
                host: host.into(),
                message: e.to_string(),
            })?;

        let (mut out, mut err) = (CappedBuf::new(), CappedBuf::new());
        let mut exit_code = None;
        let mut timed_out = false;
        let deadline = tokio::time::Instant::now() + limit + KILL_GRACE * 2;
        loop {
            let msg = tokio::select! {
                m = channel.wait() => m,
                _ = tokio::time::sleep_until(deadline) => {
                    timed_out = true;
                    let _ = channel.close().await;
                    break;
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => out.push(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => err.push(&data),
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    let code = exit_status as i32;
                    // coreutils timeout: 124 when it stopped the command, 137 after SIGKILL.
                    if code == 124 || code == 137 {
                        timed_out = true;
                    }
                    exit_code = Some(code);
                }
                Some(ChannelMsg::ExitSignal { .. }) => exit_code = None,
                Some(_) => {}
                None => break,
            }
        }
        let (stdout, stdout_truncated) = out.finish();
        let (stderr, stderr_truncated) = err.finish();
        Ok(CommandOutput {
            exit_code: if timed_out { None } else { exit_code },
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            timed_out,
            duration: started.elapsed(),
        })
    }

    /// True for hosts this executor does not handle (address `local`).
    pub fn is_local(&self, host: &str) -> bool {
        !self.hosts.contains_key(host)
    }

    /// Checks that a host can be reached and authenticated (the host monitor's probe).
    pub async fn probe(&self, host: &str) -> Result<(), ExecError> {
        let slot = self
            .hosts
            .get(host)
            .ok_or_else(|| ExecError::Config(format!("unknown host {host:?}")))?;
        self.connection(slot).await.map(|_| ())
    }

    /// The pooled connection, reconnecting with backoff on connection errors.
    async fn connection(&self, slot: &HostSlot) -> Result<Arc<Handle<Verifier>>, ExecError> {
        let mut guard = slot.conn.lock().await;
        if let Some(h) = guard.as_ref()
            && !h.is_closed()
        {
            return Ok(h.clone());
        }
        *guard = None;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.connect(slot).await {
                Ok(h) => {
                    let h = Arc::new(h);
                    *guard = Some(h.clone());
                    return Ok(h);
                }
                Err(e @ ExecError::Connect { .. }) if attempt < CONNECT_ATTEMPTS => {
                    tracing::debug!(host = %slot.cfg.name, error = %e, "SSH connect failed; retrying.");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(&self, slot: &HostSlot) -> Result<Handle<Verifier>, ExecError> {
        let cfg = &slot.cfg;
        let port = u16::try_from(cfg.port)
            .map_err(|_| ExecError::Config(format!("hosts {}: bad port", cfg.name)))?;
        let rejected = Arc::new(StdMutex::new(None));
        let verifier = Verifier {
            host: cfg.name.clone(),
            address: cfg.address.clone(),
            port,
            trust: slot.trust.clone(),
            rejected: rejected.clone(),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            // Commands are small request/response exchanges; do not let Nagle's
            // algorithm hold them back (OpenSSH sets TCP_NODELAY for sessions too).
            nodelay: true,
            ..client::Config::default()
        });
        let connect_err = |message: String| ExecError::Connect {
            host: cfg.name.clone(),
            message,
        };
        let connecting = client::connect(config, (cfg.address.as_str(), port), verifier);
        let mut handle = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => {
                return Err(connect_err(format!(
                    "no answer within {:?}",
                    self.connect_timeout
                )));
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                if let Some(key_error) = rejected.lock().expect("not poisoned").take() {
                    return Err(key_error);
                }
                return Err(connect_err(e.to_string()));
            }
        };
        let key_path = if cfg.key_file.is_empty() {
            None
        } else {
            Some(cfg.key_file.as_str())
        };
        let Some(key_path) = key_path else {
            return Err(ExecError::Config(format!(
                "hosts {}: key_file is not set",
                cfg.name
            )));
        };
        let passphrase = if cfg.key_passphrase_file.is_empty() {
            None
        } else {
            Some(
                std::fs::read_to_string(&cfg.key_passphrase_file)
                    .map_err(|e| {
                        ExecError::Config(format!("hosts {}: key_passphrase_file: {e}", cfg.name))
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            )
        };
        let key = russh::keys::load_secret_key(key_path, passphrase.as_deref()).map_err(|e| {
            ExecError::Config(format!(
                "hosts {}: cannot load key_file {key_path}: {e}",
                cfg.name
            ))
        })?;
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        let auth = tokio::time::timeout(
            self.connect_timeout,
            handle.authenticate_publickey(
                cfg.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            ),
        )
        .await
        .map_err(|_| connect_err("authentication timed out".into()))?
        .map_err(|e| connect_err(format!("authentication failed: {e}")))?;
        if !auth.success() {
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            return Err(ExecError::Auth {
                host: cfg.name.clone(),
                user: cfg.user.clone(),
                message: "the server refused the key".into(),
            });
        }
        Ok(handle)
    }
}

/// Single-quotes text for `sh -c`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Verifies the server's host key; records why it refused one.
pub struct Verifier {
    host: String,
    address: String,
    port: u16,
    trust: Trust,
    rejected: Arc<StdMutex<Option<ExecError>>>,
}

impl Verifier {
    fn refuse(&self, e: ExecError) -> Result<bool, russh::Error> {
        tracing::error!(host = %self.host, error = %e, "SSH host key refused.");
        *self.rejected.lock().expect("not poisoned") = Some(e);
        Ok(false)
    }

    fn check_file(
        &self,
        path: &std::path::Path,
        presented: &PublicKey,
        learn: bool,
    ) -> Result<bool, russh::Error> {
        match russh::keys::check_known_hosts_path(&self.address, self.port, presented, path) {
            Ok(true) => Ok(true),
            Ok(false) if learn => {
                russh::keys::known_hosts::learn_known_hosts_path(
                    &self.address,
                    self.port,
                    presented,
                    path,
                )?;
                tracing::warn!(host = %self.host, key = %fingerprint(presented), file = %path.display(), "SSH host key trusted on first use and recorded.");
                Ok(true)
            }
            Ok(false) => self.refuse(ExecError::UnknownHostKey {
                host: self.host.clone(),
                presented: fingerprint(presented),
            }),
            Err(russh::keys::Error::KeyChanged { line }) => {
                let expected =
                    russh::keys::known_hosts::known_host_keys_path(&self.address, self.port, path)
                        .ok()
                        .and_then(|keys| {
                            keys.into_iter()
                                .find(|(l, _)| *l == line)
                                .map(|(_, k)| fingerprint(&k))
                        })
                        .unwrap_or_else(|| format!("the key on line {line} of {}", path.display()));
                self.refuse(ExecError::HostKeyMismatch {
                    host: self.host.clone(),
                    expected,
                    presented: fingerprint(presented),
                })
            }
            Err(e) => self.refuse(ExecError::Config(format!(
                "hosts {}: cannot read {}: {e}",
                self.host,
                path.display()
            ))),
        }
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(_) => {
                return self.refuse(ExecError::Config(format!(
                    "hosts {}: host certificates are not supported; pin the host key",
                    self.host
                )));
            }
        };
        match self.trust.clone() {
            Trust::Pinned(expected) => {
                if expected.key_data() == presented.key_data() {
                    Ok(true)
                } else {
                    self.refuse(ExecError::HostKeyMismatch {
                        host: self.host.clone(),
                        expected: fingerprint(&expected),
                        presented: fingerprint(&presented),
                    })
                }
            }
            Trust::KnownHosts(path) => self.check_file(&path, &presented, false),
            Trust::FirstUse(path) => self.check_file(&path, &presented, true),
        }
    }
}
