//! Process helpers for drill clusters: finding the PostgreSQL server
//! binaries, picking free loopback ports, running commands as the server
//! user with a time limit, and signalling a server with all its children.
//!
//! PostgreSQL refuses to run as root, so when the current process is root
//! every server-side command runs as the `postgres` user ([`ServerUser`]).
//!
//! Note on process groups: a postmaster started with
//! `process_group(0)` leads its own process group, but every child it forks
//! (backends, checkpointer, WAL sender/receiver, ...) calls `setsid()` and so
//! leads a group of its own. [`ProcessGroup::signal_tree`] therefore signals
//! the postmaster's group *and* the group of each of its children, which is
//! what a crash (`SIGKILL`) or a hang (`SIGSTOP`) of the whole server needs.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, User, geteuid};

use super::ClusterError;

/// Server binaries a usable bin dir must contain.
const REQUIRED_BINARIES: [&str; 2] = ["initdb", "postgres"];

/// Locates the directory holding the PostgreSQL server binaries.
///
/// With `override_dir`, only that directory is accepted (it must contain
/// `initdb` and `postgres`). Otherwise `pg_config --bindir` is asked first,
/// then the newest `/usr/lib/postgresql/<major>/bin` that contains `initdb`
/// is used (the Debian/Ubuntu layout, where the server binaries are not on
/// `PATH`).
///
/// # Errors
///
/// [`ClusterError::NoServerBinaries`] when no directory qualifies.
pub fn find_bin_dir(override_dir: Option<&Path>) -> Result<PathBuf, ClusterError> {
    if let Some(dir) = override_dir {
        return if has_server_binaries(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(ClusterError::NoServerBinaries {
                looked_in: format!("{} (the configured bin_dir)", dir.display()),
            })
        };
    }
    if let Some(dir) = pg_config_bindir()
        && has_server_binaries(&dir)
    {
        return Ok(dir);
    }
    if let Some(dir) = newest_debian_bindir() {
        return Ok(dir);
    }
    Err(ClusterError::NoServerBinaries {
        looked_in: "`pg_config --bindir` and /usr/lib/postgresql/*/bin".to_owned(),
    })
}

fn has_server_binaries(dir: &Path) -> bool {
    REQUIRED_BINARIES
        .iter()
        .all(|b| is_executable(&dir.join(b)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

fn newest_debian_bindir() -> Option<PathBuf> {
    let entries = fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = version_key(&e.file_name().to_string_lossy())?;
            let bin = e.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`; anything else is not a version.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

/// Free space a RAM-backed directory needs before [`default_base_dir`]
/// picks it.
const MIN_SHM_FREE: u64 = 1 << 30;

/// Where drill clusters put their directories by default: `/dev/shm` (a
/// RAM-backed tmpfs on Linux) when it exists, is writable and has at least
/// 1 GiB free, otherwise [`std::env::temp_dir`].
///
/// A tmpfs makes start-up several times faster: a data directory holds
/// about a thousand files, and creating files on a disk file system
/// dominates the cost of copying the template and of `pg_basebackup`.
/// Every node takes some 40 MB of RAM there (plus its WAL).
pub fn default_base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::useless_conversion)]
    let roomy = nix::sys::statvfs::statvfs(shm).is_ok_and(|st| {
        let free = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
        free >= MIN_SHM_FREE
    });
    let writable = nix::unistd::access(
        shm,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_ok();
    if roomy && writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Ports handed out by this process, never handed out twice.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// Picks a free TCP port on 127.0.0.1: binds port 0, reads the port the
/// kernel chose and closes the socket again.
///
/// The port is free at that moment only; another process could take it
/// before it is used. Ports already handed out by this process are never
/// returned twice, and 5432 and 6379 are never returned.
///
/// # Errors
///
/// [`ClusterError::Io`] when binding a loopback socket fails.
pub fn free_port() -> Result<u16, ClusterError> {
    Ok(free_ports(1)?[0])
}

/// Picks `n` distinct free TCP ports on 127.0.0.1 (see [`free_port`]).
///
/// # Errors
///
/// [`ClusterError::Io`] when binding a loopback socket fails.
pub fn free_ports(n: usize) -> Result<Vec<u16>, ClusterError> {
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        if attempts > 1000 {
            return Err(ClusterError::io(
                "could not find a free loopback port",
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| ClusterError::io("could not bind a socket on 127.0.0.1", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| ClusterError::io("could not read a bound socket's port", e))?
            .port();
        // Keep the listener open until all ports are chosen, so the kernel
        // does not hand the same port out twice.
        listeners.push(listener);
        if port == 5432 || port == 6379 || !taken.insert(port) {
            continue;
        }
        ports.push(port);
    }
    Ok(ports)
}

/// The operating-system user that PostgreSQL server processes run as.
///
/// When the current process is root this is the `postgres` user (processes
/// are started with its uid and gid, and files handed to the server are
/// chowned to it); otherwise it is the current user and nothing is switched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    /// The user name.
    pub name: String,
    /// The numeric user id.
    pub uid: u32,
    /// The numeric primary group id.
    pub gid: u32,
    /// Whether processes and files must be switched to this user (true when
    /// running as root).
    pub switch: bool,
}

impl ServerUser {
    /// Detects the user to run servers as: `postgres` when running as root,
    /// the current user otherwise.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoServerUser`] when running as root and no usable
    /// `postgres` user exists.
    pub fn detect() -> Result<ServerUser, ClusterError> {
        let euid = geteuid();
        if !euid.is_root() {
            let name = User::from_uid(euid)
                .ok()
                .flatten()
                .map_or_else(|| euid.to_string(), |u| u.name);
            return Ok(ServerUser {
                name,
                uid: euid.as_raw(),
                gid: nix::unistd::getegid().as_raw(),
                switch: false,
            });
        }
        match User::from_name("postgres") {
            Ok(Some(user)) if !user.uid.is_root() => Ok(ServerUser {
                name: user.name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                switch: true,
            }),
            Ok(Some(_)) => Err(ClusterError::NoServerUser {
                reason: "the `postgres` user has uid 0".to_owned(),
            }),
            Ok(None) => Err(ClusterError::NoServerUser {
                reason: "there is no `postgres` user".to_owned(),
            }),
            Err(e) => Err(ClusterError::NoServerUser {
                reason: format!("looking up the `postgres` user failed: {e}"),
            }),
        }
    }

    /// A [`Command`] for `program` that runs as this user, in `cwd`, in a
    /// new process group of its own, with stdin closed and with `PG*`
    /// environment variables removed (so a caller's `PGDATA`, `PGPORT`, ...
    /// cannot redirect it). `HOME` is set to `cwd`.
    pub fn command(&self, program: impl AsRef<OsStr>, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .stdin(Stdio::null())
            .process_group(0)
            .env("HOME", cwd);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    /// Hands `path` over to this user (no-op when not switching users).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Io`] when `chown` fails.
    pub fn chown(&self, path: &Path) -> Result<(), ClusterError> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
                ClusterError::io(
                    format!("could not chown {} to {}", path.display(), self.name),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Writes `contents` to `path` and hands the file to this user.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Io`] when writing or `chown` fails.
    pub fn write_file(&self, path: &Path, contents: impl AsRef<[u8]>) -> Result<(), ClusterError> {
        fs::write(path, contents)
            .map_err(|e| ClusterError::io(format!("could not write {}", path.display()), e))?;
        self.chown(path)
    }

    /// Creates directory `path` (mode 0700) and hands it to this user.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Io`] when creating it or `chown` fails.
    pub fn create_dir(&self, path: &Path) -> Result<(), ClusterError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| ClusterError::io(format!("could not create {}", path.display()), e))?;
        self.chown(path)
    }
}

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
/// The command should have been made with [`ServerUser::command`] (so it
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
pub(crate) fn last_lines(text: &str, n: usize) -> String {
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

    /// Whether the leader still exists (it may be a zombie).
    pub fn is_alive(&self) -> bool {
        kill(self.pid, None).is_ok()
    }

    /// The direct children of the leader (Linux: read from `/proc`; empty
    /// elsewhere).
    pub fn children(&self) -> Vec<Pid> {
        children_of(self.pid)
    }

    /// Sends `signal` to the leader's group and to the group of every
    /// direct child of the leader (PostgreSQL children lead their own
    /// groups, see the [module docs](self)).
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
/// `pid_files` (each node's `postmaster.pid`) and deletes `dir`, which
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_order_numerically() {
        assert!(version_key("15") > version_key("9.6"));
        assert_eq!(version_key("main"), None);
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(5).unwrap();
        let set: HashSet<_> = ports.iter().collect();
        assert_eq!(set.len(), 5);
        assert!(!ports.contains(&5432) && !ports.contains(&6379));
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }

    #[test]
    fn empty_override_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_bin_dir(Some(dir.path())).unwrap_err();
        assert!(matches!(err, ClusterError::NoServerBinaries { .. }));
        assert!(err.to_string().contains("install the `postgresql` package"));
    }
}
