//! The cached `initdb` template: `initdb` runs once per server version,
//! bin dir and user, and every new primary is a copy of the result (see
//! the [module docs](super)).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{ClusterError, DB_USER, NODE_CONF, remove_if_exists};
use crate::drill::process::{self, ServerUser};

/// Marks a finished template data directory.
const TEMPLATE_MARKER: &str = "failover_pool_template";
/// Bumped whenever what the template contains changes.
const TEMPLATE_FORMAT: &str = "failover-pool template v1";

/// Runs `initdb` into `data_dir` and prepares it for the cluster (its
/// settings in `drill_node.conf`, replication from loopback trusted).
pub(super) async fn initdb(
    bin_dir: &Path,
    user: &ServerUser,
    data_dir: &Path,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let cwd = data_dir.parent().unwrap_or(Path::new("/"));
    let mut cmd = user.command(bin_dir.join("initdb"), cwd);
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-A", "trust", "-U", DB_USER, "-E", "UTF8", "--locale=C"])
        .args(["--no-sync", "--no-instructions"]);
    process::run(cmd, timeout).await?;
    // Settings go to drill_node.conf; replication from loopback is trusted
    // (initdb's defaults already allow it; this keeps that explicit).
    append(
        &data_dir.join("postgresql.conf"),
        &format!("\ninclude_if_exists = '{NODE_CONF}'\n"),
    )?;
    append(
        &data_dir.join("pg_hba.conf"),
        "\nhost replication all 127.0.0.1/32 trust\n",
    )
}

fn append(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| ClusterError::io(format!("could not append to {}", path.display()), e))
}

/// Makes `data_dir` a copy of the cached template for `bin_dir`, creating
/// the template first if needed.
pub(super) async fn copy_to(
    bin_dir: &Path,
    user: &ServerUser,
    data_dir: &Path,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let template = template_dir(bin_dir, user, timeout).await?;
    let cwd = data_dir.parent().unwrap_or(Path::new("/"));
    let mut cmd = user.command("cp", cwd);
    cmd.arg("-a").arg(&template).arg(data_dir);
    process::run(cmd, timeout).await?;
    remove_if_exists(&data_dir.join(TEMPLATE_MARKER))
}

/// The cached template data directory for `bin_dir`, created on first use
/// (once per process, and shared between processes through a fixed path
/// in the system temporary directory, published with an atomic rename).
async fn template_dir(
    bin_dir: &Path,
    user: &ServerUser,
    timeout: Duration,
) -> Result<PathBuf, ClusterError> {
    type Cells = Mutex<HashMap<(PathBuf, u32), Arc<tokio::sync::OnceCell<PathBuf>>>>;
    static CELLS: OnceLock<Cells> = OnceLock::new();
    let cell = CELLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((bin_dir.to_path_buf(), user.uid))
        .or_default()
        .clone();
    let dir = cell
        .get_or_try_init(|| create_template(bin_dir, user, timeout))
        .await?;
    if dir.join(TEMPLATE_MARKER).exists() {
        Ok(dir.clone())
    } else {
        // Removed meanwhile (say by a temp-file cleaner): make it again.
        create_template(bin_dir, user, timeout).await
    }
}

async fn create_template(
    bin_dir: &Path,
    user: &ServerUser,
    timeout: Duration,
) -> Result<PathBuf, ClusterError> {
    let tmp = std::env::temp_dir();
    let mut cmd = user.command(bin_dir.join("postgres"), &tmp);
    cmd.arg("--version");
    let version = process::run(cmd, timeout).await?;
    let key = fnv1a(&[
        TEMPLATE_FORMAT.as_bytes(),
        &version.stdout,
        bin_dir.as_os_str().as_encoded_bytes(),
    ]);
    let dir = tmp.join(format!("failover-pool-pg-template-{}-{key:016x}", user.uid));
    if dir.join(TEMPLATE_MARKER).exists() {
        return Ok(dir);
    }
    let began = Instant::now();
    let staging = tempfile::Builder::new()
        .prefix(".failover-pool-pg-template-")
        .tempdir_in(&tmp)
        .map_err(|e| {
            ClusterError::io(
                format!("could not create a directory in {}", tmp.display()),
                e,
            )
        })?;
    user.chown(staging.path())?;
    let data = staging.path().join("data");
    initdb(bin_dir, user, &data, timeout).await?;
    user.write_file(&data.join(TEMPLATE_MARKER), TEMPLATE_FORMAT)?;
    match fs::rename(&data, &dir) {
        Ok(()) => {}
        // Another process published one first: use that.
        Err(_) if dir.join(TEMPLATE_MARKER).exists() => {}
        Err(e) => {
            return Err(ClusterError::io(
                format!("could not move the template to {}", dir.display()),
                e,
            ));
        }
    }
    tracing::debug!(dir = %dir.display(), elapsed = ?began.elapsed(), "created PostgreSQL template");
    Ok(dir)
}

/// FNV-1a over several byte strings (stable across Rust versions, unlike
/// `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(&[b"a"]), fnv1a(&[b"a"]));
        assert_ne!(fnv1a(&[b"a", b"b"]), fnv1a(&[b"ab"]));
    }
}
