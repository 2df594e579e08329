//! The real `jarvis` binary: configuration checks, defaults, signals, `kill -9`,
//! and logs that never carry a secret.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::proxy::{DbProxy, target_of};
use crate::support::{PASSWORD, USER, eventually, fresh_postgres_url, payload};

pub(crate) fn jarvis(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jarvis"));
    c.current_dir(cwd);
    // A clean environment: no stray configuration from the developer's shell.
    for (k, _) in std::env::vars() {
        if k.starts_with("JARVIS_")
            || k.starts_with("SSH_")
            || k.starts_with("WEBHOOK_")
            || k == "DATABASE_URL"
            || k == "RUST_LOG"
        {
            c.env_remove(k);
        }
    }
    c
}

/// A `jarvis serve` child process with its output collected.
pub(crate) struct Served {
    child: Child,
    addr: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Served {
    pub(crate) fn start(mut cmd: Command) -> Self {
        jarvis::install_crypto_provider();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("jarvis starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = output
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("Jarvis is listening"))
                .cloned();
            if let Some(line) = found {
                let start = line
                    .find("127.0.0.1:")
                    .expect("address in the listening line");
                let addr: String = line[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("jarvis exited with {status}: {:#?}", output.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "jarvis did not start: {:#?}",
                output.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            addr,
            output,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, then the exit code.
    pub(crate) fn terminate(mut self) -> (i32, Vec<String>) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "jarvis ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100)); // let the reader threads finish
        (
            status.code().unwrap_or(-1),
            self.output.lock().unwrap().clone(),
        )
    }

    pub(crate) fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    /// A failed assertion must not leave a server running (it would hold its port).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn write_config(dir: &Path, db_url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("jarvis.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{db_url}\"\nspool_dir = \"{}\"\nconnect_timeout_seconds = 1\n[webhook]\npassword = \"{PASSWORD}\"\n{extra}",
        dir.join("spool").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_prints_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = jarvis(dir.path())
        .arg("check-config")
        .env("WEBHOOK_AUTH_PASSWORD", "pw-SECRET-abc")
        .env(
            "DATABASE_URL",
            "postgres://jarvis:db-SECRET-def@db.lan/jarvis",
        )
        .env("JARVIS_LLM_PROVIDER", "anthropic")
        .env("ANTHROPIC_API_KEY", "sk-SECRET-ghi")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("listen = \"127.0.0.1:8000\""), "{stdout}");
    assert!(stdout.contains("provider = \"anthropic\""), "{stdout}");
    assert!(stdout.contains("db.lan/jarvis"), "{stdout}");
    assert!(
        !stdout.contains("SECRET") && !stderr.contains("SECRET"),
        "{stdout}\n{stderr}"
    );
}

/// Writes `text` as a configuration file in `dir` and runs `check-config` on it.
fn check_config_file(dir: &Path, text: &str) -> std::process::Output {
    let path = dir.join("jarvis-under-test.toml");
    std::fs::write(&path, text).unwrap();
    jarvis(dir)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn check_config_names_every_bad_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config_file(
        dir.path(),
        "[server]\nlisten = \"0.0.0.0:8000\"\n[[hosts]]\nname = \"nexus\"\naddress = \"10.0.0.1\"\nport = 70000\n[remediation]\npattern_min_confidence = 2.0\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "webhook.password:",
        "hosts[0].port: 70000 is not a port",
        "hosts[0].host_key:",
        "remediation.pattern_min_confidence:",
    ] {
        assert!(stderr.contains(key), "missing {key} in {stderr}");
    }
    let out = jarvis(dir.path())
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be read"));
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = jarvis(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WEBHOOK_AUTH_PASSWORD"), "{stderr}");
    assert!(
        !dir.path().join("jarvis-data").exists(),
        "a refused start must change nothing"
    );
}

#[test]
fn serve_with_no_configuration_at_all_uses_the_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start({
        let mut c = jarvis(dir.path());
        c.arg("serve");
        c
    });
    assert_eq!(served.addr, "127.0.0.1:8000");
    assert!(dir.path().join("jarvis-data/jarvis.db").exists());
    assert!(dir.path().join("jarvis-data/spool").is_dir());
    let body = reqwest::blocking::get(served.url("/health"))
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(body["status"], "healthy");
    // Open on loopback when no password is set.
    let resp = reqwest::blocking::Client::new()
        .post(served.url("/webhook"))
        .header("content-type", "application/json")
        .body(payload(&["NoAuth"]))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (code, output) = served.terminate();
    assert_eq!(code, 0, "{output:#?}");
    let text = output.join("\n");
    for note in [
        "No LLM configured",
        "No hosts configured",
        "Prometheus not configured",
        "No notifications configured",
        "authentication not configured",
    ] {
        assert!(text.contains(note), "missing {note:?} in {text}");
    }
}

#[test]
fn logs_never_contain_secrets_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("sqlite://{}/j.db", dir.path().display()),
        "[api]\ntoken = \"tok-SECRET-2\"\n",
    );
    let served = Served::start({
        let mut c = jarvis(dir.path());
        c.args(["--log-format", "json", "serve", "--config"])
            .arg(&config);
        c.env("RUST_LOG", "trace")
            .env("WEBHOOK_AUTH_PASSWORD", "pw-SECRET-1")
            .env("JARVIS_LLM_PROVIDER", "anthropic")
            .env("ANTHROPIC_API_KEY", "sk-SECRET-3")
            .env(
                "DISCORD_WEBHOOK_URL",
                "https://discord.com/api/webhooks/1/hook-SECRET-4",
            );
        c
    });
    let out = jarvis(dir.path())
        .args([
            "send-test-alert",
            "--url",
            &served.url("/webhook"),
            "--password",
            "pw-SECRET-1",
            "--label",
            "instance=x:1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("200 "));
    let client = reqwest::blocking::Client::new();
    assert_eq!(
        client
            .get(served.url("/alerts"))
            .bearer_auth("tok-SECRET-2")
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        client
            .get(served.url("/alerts"))
            .basic_auth(USER, Some("wrong"))
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (code, output) = served.terminate();
    assert_eq!(code, 0);
    assert!(output.len() > 10, "trace logging produced output");
    for line in &output {
        assert!(!line.contains("SECRET"), "secret in log line: {line}");
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}

#[test]
fn version_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let out = jarvis(dir.path()).arg("version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("jarvis {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let out = jarvis(dir.path())
        .arg("migrate")
        .env("DATABASE_URL", "sqlite://m/j.db")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("m/j.db").exists());
    let out = jarvis(dir.path())
        .arg("migrate")
        .env(
            "DATABASE_URL",
            "postgres://nobody:pw-SECRET@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("127.0.0.1:1") && !stderr.contains("pw-SECRET"),
        "{stderr}"
    );
}

/// Posts `n` payloads of 5 alerts concurrently; returns the names of every alert
/// answered with 200. Requests cut off by a kill simply do not count.
async fn post_many(url: String, n: usize, prefix: &str) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let names: Vec<String> = (0..5).map(|j| format!("{prefix}{i}x{j}")).collect();
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let body = payload(&names.iter().map(String::as_str).collect::<Vec<_>>());
            let resp = client
                .post(&url)
                .basic_auth(USER, Some(PASSWORD))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .ok()?;
            (resp.status() == StatusCode::OK).then_some(names)
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        if let Ok(Some(names)) = t.await {
            accepted.extend(names);
        }
    }
    accepted
}

async fn stored(served: &Served) -> std::collections::HashSet<String> {
    let v: Value = reqwest::Client::new()
        .get(served.url("/alerts?limit=1000"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alertname"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn serve_cmd(dir: &Path, config: &Path) -> Command {
    let mut c = jarvis(dir);
    c.args(["serve", "--config"]).arg(config);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_200_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("sqlite://{}/j.db", dir.path().display()),
        "",
    );
    let served = Served::start(serve_cmd(dir.path(), &config));
    let accepted = post_many(served.url("/webhook"), 40, "K").await;
    assert_eq!(accepted.len(), 200);
    served.kill9();
    let served = Served::start(serve_cmd(dir.path(), &config));
    let have = stored(&served).await;
    for name in &accepted {
        assert!(
            have.contains(name),
            "{name} was answered 200 but is gone after kill -9"
        );
    }
    served.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_spooling_loses_nothing() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let proxy = DbProxy::start(target_of(&url).await, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &proxy.rewrite(&url), "");
    let served = Served::start(serve_cmd(dir.path(), &config));
    let before = post_many(served.url("/webhook"), 4, "Up").await;
    proxy.set_up(false);
    let during = post_many(served.url("/webhook"), 20, "Down").await;
    assert_eq!((before.len(), during.len()), (20, 100));
    served.kill9();
    proxy.set_up(true);
    let served = Served::start(serve_cmd(dir.path(), &config));
    let have = eventually(
        "the spool drains after the restart",
        Duration::from_secs(30),
        || async {
            let have = stored(&served).await;
            (have.len() >= 120).then_some(have)
        },
    )
    .await;
    for name in before.iter().chain(&during) {
        assert!(
            have.contains(name),
            "{name} was answered 200 but is gone after kill -9"
        );
    }
    let (code, _) = served.terminate();
    assert_eq!(code, 0);
}

#[test]
fn check_command_prints_the_verdict_and_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = jarvis(dir.path())
            .arg("check-command")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["--json", "--", "rm -rf /"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["verdict"].as_str(), v["rule"].as_str()),
        (Some("blocked"), Some("rm-recursive"))
    );
    assert!(v["reason"].as_str().unwrap().contains("rm -rf /"));
    // Several words are quoted so they keep their meaning.
    let (_, out, _) = run(&["--json", "--", "sh", "-c", "rm -rf /"]);
    assert!(out.contains("\"blocked\""), "{out}");
    let (_, out, _) = run(&["--source", "operator", "--", "/opt/fix.sh"]);
    assert!(
        out.starts_with("verdict: allowed\nrule: unknown-operator\nreason: "),
        "{out}"
    );
    let (_, out, _) = run(&["--", "/opt/fix.sh"]);
    assert!(out.starts_with("verdict: approval_required"), "{out}");
    let (code, _, err) = run(&["--source", "root", "--", "ls"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--source"), "{err}");
    let (code, _, err) = run(&["--host", "nexus", "--", "ls"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown host \"nexus\""), "{err}");
    let (code, _, _) = run(&[]);
    assert_eq!(code, Some(2), "a command is required");
}

/// `--explain` shows the parse, each rule considered with why it did or did not match,
/// and the verdict; `--json --explain` carries the same lines.
#[test]
fn check_command_explains_how_it_read_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = jarvis(dir.path())
        .args([
            "check-command",
            "--explain",
            "--",
            "sort -o /etc/passwd /tmp/x",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for part in [
        "program \"sort\"; options [-o \"/etc/passwd\"]; arguments [\"/tmp/x\"]",
        "rule read-only (diagnostic): no: the option -o is not on this rule's list",
        "verdict: approval_required",
    ] {
        assert!(text.contains(part), "missing {part:?} in\n{text}");
    }
    let out = jarvis(dir.path())
        .args([
            "check-command",
            "--json",
            "--explain",
            "--",
            "cat < /etc/shadow",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "blocked", "{v}");
    assert_eq!(v["rule"], "secret-read", "{v}");
    let lines: Vec<&str> = v["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("secret-read") && l.contains("/etc/shadow")),
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().starts_with("verdict: blocked"),
        "{lines:?}"
    );
}

/// The "done when": the binary, asked as `--json --source llm`, gives no
/// dangerous line of the escape corpus a diagnostic or allowed verdict. Every fifth
/// line (the unit test judges all of them in-process).
#[test]
fn check_command_holds_the_escape_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = include_str!("../gate_corpus.tsv");
    let dangerous: Vec<&str> = corpus
        .lines()
        .filter(|l| l.starts_with("dangerous\t"))
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .collect();
    assert!(dangerous.len() >= 250);
    for cmd in dangerous.iter().step_by(5) {
        let out = jarvis(dir.path())
            .args(["check-command", "--json", "--source", "llm", "--", cmd])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        let verdict = v["verdict"].as_str().unwrap();
        assert!(
            verdict == "approval_required" || verdict == "blocked",
            "{cmd:?} would run unattended: {v}"
        );
    }
}

/// A configured rule that grants diagnostic or allowed without listing its options
/// is reported by `check-config`; one that lists them is not.
#[test]
fn check_config_warns_about_rules_without_an_option_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config_file(
        dir.path(),
        "[[safety.rules]]\nverdict = \"allowed\"\ncommand = \"backup.sh\"\n\n[[safety.rules]]\nverdict = \"diagnostic\"\ncommand = \"upsc\"\noptions = [\"-l\"]\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("safety.rules[0] (backup.sh) grants allowed without listing the options"),
        "{stderr}"
    );
    assert!(!stderr.contains("safety.rules[1]"), "{stderr}");
    let out = check_config_file(
        dir.path(),
        "[[safety.rules]]\nverdict = \"allowed\"\ncommand = \"backup.sh\"\noptions = [\"out\"]\n",
    );
    assert_eq!(out.status.code(), Some(2), "a bad option entry is an error");
}
