//! The `local` host: commands run on Jarvis's own machine, for single-box homelabs,
//! with the same output cap and timeout as over SSH.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{CappedBuf, CommandOutput, ExecError};

/// Runs `command` with `sh -c`; on timeout the whole process group is killed.
pub async fn run(command: &str, limit: Duration) -> Result<CommandOutput, ExecError> {
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ExecError::Channel {
            host: "local".into(),
            message: format!("cannot start sh: {e}"),
        })?;
    let (mut so, mut se) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let read = async {
        let (mut out, mut err) = (CappedBuf::new(), CappedBuf::new());
        let (mut b1, mut b2) = ([0u8; 8192], [0u8; 8192]);
        let (mut o_done, mut e_done) = (false, false);
        while !(o_done && e_done) {
            tokio::select! {
                n = so.read(&mut b1), if !o_done => match n { Ok(0) | Err(_) => o_done = true, Ok(n) => out.push(&b1[..n]) },
                n = se.read(&mut b2), if !e_done => match n { Ok(0) | Err(_) => e_done = true, Ok(n) => err.push(&b2[..n]) },
            }
        }
        (out, err)
    };
    let result = tokio::time::timeout(limit, async {
        let (out, err) = read.await;
        let status = child.wait().await;
        (out, err, status)
    })
    .await;
    match result {
        Ok((out, err, status)) => {
            let status = status.map_err(|e| ExecError::Channel {
                host: "local".into(),
                message: e.to_string(),
            })?;
            let (stdout, stdout_truncated) = out.finish();
            let (stderr, stderr_truncated) = err.finish();
            Ok(CommandOutput {
                exit_code: status.code(),
                stdout,
                stderr,
                stdout_truncated,
                stderr_truncated,
                timed_out: false,
                duration: started.elapsed(),
            })
        }
        Err(_) => {
            if let Some(pgid) = child
                .id()
                .and_then(|p| libc::pid_t::try_from(p).ok())
                .filter(|p| *p > 1)
            {
                // The child leads its own process group (process_group(0)), so this
                // stops everything it started. killpg takes the group id itself,
                // leaving no negative-pid command line to misread as "every process".
                // SAFETY: killpg only sends a signal, to a group id this function created.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
            let _ = child.kill().await;
            Ok(CommandOutput {
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                timed_out: true,
                duration: started.elapsed(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_codes_output_and_timeouts() {
        let o = run("echo out; echo err >&2; exit 3", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            (o.exit_code, o.stdout.as_str(), o.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        let o = run(
            "head -c 100000 /dev/zero | tr '\\0' x",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(o.stdout_truncated && o.success());
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let o = run(
            &format!("sleep 2; touch {}", marker.display()),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert!(o.timed_out && o.exit_code.is_none());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the timed-out command kept running");
    }
}
