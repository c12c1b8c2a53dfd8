//! What this machine offers drill clusters: the PostgreSQL server
//! binaries ([`find_bin_dir`]), the Redis server binary
//! ([`find_redis_server`]), a directory to put clusters in
//! ([`default_base_dir`]) and free loopback ports ([`free_ports`]).

use std::collections::HashSet;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::drill::ClusterError;

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
            Err(no_postgres(format!(
                "{} (the configured bin_dir)",
                dir.display()
            )))
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
    Err(no_postgres(
        "`pg_config --bindir` and /usr/lib/postgresql/*/bin".to_owned(),
    ))
}

fn no_postgres(looked_in: String) -> ClusterError {
    ClusterError::NoServerBinaries {
        server: "PostgreSQL".to_owned(),
        looked_in,
        package: "postgresql".to_owned(),
    }
}

/// Directories searched for `redis-server` after those on `PATH`.
const REDIS_FALLBACK_DIRS: [&str; 3] = ["/usr/bin", "/usr/local/bin", "/usr/sbin"];

/// Locates the `redis-server` binary.
///
/// With `override_dir`, only `<override_dir>/redis-server` is accepted.
/// Otherwise every directory on `PATH` is searched, then `/usr/bin`,
/// `/usr/local/bin` and `/usr/sbin`. Sentinels need no binary of their own:
/// `redis-server <config> --sentinel` is what `redis-sentinel` (a link to
/// `redis-server`) runs, and distributions ship `redis-sentinel` in a
/// separate package.
///
/// # Errors
///
/// [`ClusterError::NoServerBinaries`] when no executable `redis-server` is
/// found.
pub fn find_redis_server(override_dir: Option<&Path>) -> Result<PathBuf, ClusterError> {
    const BINARY: &str = "redis-server";
    let no_redis = |looked_in: String| ClusterError::NoServerBinaries {
        server: "Redis".to_owned(),
        looked_in,
        package: "redis-server".to_owned(),
    };
    if let Some(dir) = override_dir {
        let path = dir.join(BINARY);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(no_redis(format!(
                "{} (the configured bin_dir)",
                dir.display()
            )))
        };
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let fallback = REDIS_FALLBACK_DIRS.iter().map(PathBuf::from);
    path_dirs
        .into_iter()
        .chain(fallback)
        .map(|dir| dir.join(BINARY))
        .find(|path| is_executable(path))
        .ok_or_else(|| no_redis(format!("PATH, {}", REDIS_FALLBACK_DIRS.join(", "))))
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
    fn empty_override_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_bin_dir(Some(dir.path())).unwrap_err();
        assert!(matches!(err, ClusterError::NoServerBinaries { .. }));
        assert!(err.to_string().contains("install the `postgresql` package"));
        let err = find_redis_server(Some(dir.path())).unwrap_err();
        assert!(matches!(err, ClusterError::NoServerBinaries { .. }));
        assert!(err.to_string().contains("no Redis server binaries found"));
        assert!(
            err.to_string()
                .contains("install the `redis-server` package")
        );
    }
}
