//! Clean-up when the owning process dies without running destructors:
//! a watchdog per server kills it ([`spawn_watchdog`]), a janitor per
//! cluster deletes its directory ([`spawn_janitor`]).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The shell script run by [`spawn_watchdog`]: waits for EOF on stdin (the
/// owning process closed its end, possibly by dying), then kills the server
/// given as `$1` together with its children.
const WATCHDOG_SCRIPT: &str = r#"trap '' INT HUP TERM QUIT
while read -r line; do :; done
kill -STOP "$1" 2>/dev/null || exit 0
for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
kill -KILL "$1" 2>/dev/null
"#;

/// Starts a watchdog for the server `pid`: a tiny `sh` process in its own
/// process group whose stdin is a pipe from this process. When this process
/// exits without cleaning up (killed, `std::process::exit`, a cluster kept
/// in a `static`), the pipe closes and the watchdog kills the server.
///
/// The caller must kill and reap the watchdog *before* it stops the server
/// on purpose, so that the watchdog can never signal a reused pid.
pub(crate) fn spawn_watchdog(pid: u32) -> std::io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("failover-pool-watchdog")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .process_group(0)
        .spawn()
}

/// The shell script run by [`spawn_janitor`]: waits for EOF on stdin, gives
/// the watchdogs a moment to kill the servers, removes the System V shared
/// memory segments named in the given `postmaster.pid` files and deletes
/// the directory `$1`.
const JANITOR_SCRIPT: &str = r#"trap '' INT HUP TERM QUIT
while read -r line; do :; done
sleep 1
dir="$1"
shift
for f in "$@"; do
  id=$(awk 'NR == 7 { print $2 }' "$f" 2>/dev/null)
  [ -n "$id" ] && ipcrm -m "$id" 2>/dev/null
done
rm -rf -- "$dir"
"#;

/// Starts a janitor for a cluster directory: like [`spawn_watchdog`], a tiny
/// `sh` in its own process group that acts when this process exits without
/// cleaning up. It then removes the shared memory segments recorded in
/// `pid_files` (each PostgreSQL node's `postmaster.pid`; none for Redis,
/// which has no System V shared memory) and deletes `dir`, which
/// matters when `dir` is on a RAM-backed file system.
///
/// The caller must kill and reap it before cleaning up itself.
pub(crate) fn spawn_janitor(dir: &Path, pid_files: &[PathBuf]) -> std::io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(JANITOR_SCRIPT)
        .arg("failover-pool-janitor")
        .arg(dir)
        .args(pid_files)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .process_group(0)
        .spawn()
}
