//! [`ServerUser`]: the user PostgreSQL runs as (`postgres` when this
//! process is root, which PostgreSQL refuses), and the commands, files and
//! directories handed to it.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::{User, geteuid};

use crate::drill::ClusterError;

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
