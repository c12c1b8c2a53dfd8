//! Running a command to completion with a time limit ([`run`]), and
//! the text shown when it fails ([`describe`], [`log_tail`]).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::drill::ClusterError;

/// A human-readable command line for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        s.push(' ');
        if arg.is_empty() || arg.contains([' ', '\'', '"']) {
            s.push('\'');
            s.push_str(&arg.replace('\'', "'\\''"));
            s.push('\'');
        } else {
            s.push_str(&arg);
        }
    }
    s
}

/// Runs `cmd` to completion with a time limit, capturing its output.
///
/// The command should have been made with [`ServerUser::command`](super::ServerUser::command) (so it
/// leads its own process group): on timeout the whole group is killed.
///
/// # Errors
///
/// [`ClusterError::Spawn`] when it cannot start,
/// [`ClusterError::CommandTimeout`] when it runs too long and
/// [`ClusterError::CommandFailed`] (with the tail of its output) when it
/// exits unsuccessfully.
pub async fn run(mut cmd: Command, timeout: Duration) -> Result<Output, ClusterError> {
    let command = describe(&cmd);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ClusterError::Spawn {
            command: command.clone(),
            source,
        })?;
    let pid = child.id();
    let mut waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
    let joined = match tokio::time::timeout(timeout, &mut waiter).await {
        Ok(joined) => joined,
        Err(_) => {
            if let Some(pid) = pid_of(pid) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            // Reap it; the blocking task finishes once the process is dead.
            let _ = waiter.await;
            return Err(ClusterError::CommandTimeout { command, timeout });
        }
    };
    let output = joined
        .map_err(|e| ClusterError::io(format!("waiting for `{command}` failed"), e.into()))?
        .map_err(|e| ClusterError::io(format!("waiting for `{command}` failed"), e))?;
    if output.status.success() {
        return Ok(output);
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        text.push_str(&stdout);
    }
    Err(ClusterError::CommandFailed {
        command,
        status: output.status.to_string(),
        output_tail: last_lines(&text, 30),
    })
}

fn pid_of(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().map(Pid::from_raw)
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of the file at `path` (reads at most its last 64 KiB);
/// a placeholder text when it cannot be read.
pub fn log_tail(path: &Path, n: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => "(log is empty)".to_owned(),
        Ok(text) => last_lines(&text, n),
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }
}
