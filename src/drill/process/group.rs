//! [`ProcessGroup`]: signalling a server together with all of its
//! children (see the [module docs](super) on why that takes more than one
//! `killpg`), and waiting for a child to exit ([`wait_blocking`]).

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A handle on a server process that leads its own process group (it was
/// started with `process_group(0)`), able to signal the group and the
/// groups of its direct children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessGroup {
    pid: Pid,
}

impl ProcessGroup {
    /// The group led by the process `pid`.
    pub fn new(pid: u32) -> ProcessGroup {
        ProcessGroup {
            pid: Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
        }
    }

    /// The group led by `child`.
    pub fn of(child: &Child) -> ProcessGroup {
        ProcessGroup::new(child.id())
    }

    /// The leader's process id (which is also the group id).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `signal` to the whole process group (`killpg`).
    ///
    /// # Errors
    ///
    /// The `errno` from `killpg`, e.g. `ESRCH` when the group is gone.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        killpg(self.pid, signal)
    }

    /// The direct children of the leader (Linux: read from `/proc`; empty
    /// elsewhere).
    pub fn children(&self) -> Vec<Pid> {
        children_of(self.pid)
    }

    /// Sends `signal` to the leader's group and to the group of every
    /// direct child of the leader (PostgreSQL children lead their own
    /// groups, see the [module docs](super)).
    ///
    /// For `SIGSTOP` and `SIGKILL` the leader's group is stopped first so
    /// that no new child can be forked while the children are signalled;
    /// for `SIGCONT` the children are continued before the leader.
    ///
    /// # Errors
    ///
    /// The `errno` from signalling the leader's group; failures for
    /// children (which may exit concurrently) are ignored.
    pub fn signal_tree(&self, signal: Signal) -> nix::Result<()> {
        match signal {
            Signal::SIGCONT => {
                self.signal_children(signal);
                self.signal(signal)
            }
            Signal::SIGKILL => {
                // Freeze the leader so it cannot fork or reap meanwhile.
                self.signal(Signal::SIGSTOP)?;
                self.signal_children(signal);
                self.signal(signal)
            }
            _ => {
                self.signal(signal)?;
                self.signal_children(signal);
                Ok(())
            }
        }
    }

    fn signal_children(&self, signal: Signal) {
        for child in self.children() {
            // A just-forked child may not have called setsid() yet; it is
            // then still in the leader's group, so signal it directly too.
            if killpg(child, signal).is_err() {
                let _ = kill(child, signal);
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn children_of(pid: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    // Fast path: /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN).
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        let mut found_file = false;
        for task in tasks.filter_map(Result::ok) {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                found_file = true;
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .map(Pid::from_raw),
                );
            }
        }
        if found_file {
            return out;
        }
    }
    // Slow path: scan every process's parent pid.
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.filter_map(Result::ok) {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid.as_raw()) {
            out.push(Pid::from_raw(child));
        }
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn children_of(_pid: Pid) -> Vec<Pid> {
    Vec::new()
}

/// Waits up to `timeout` for `child` to exit, polling; returns whether it
/// exited (and was reaped).
pub(crate) fn wait_blocking(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
