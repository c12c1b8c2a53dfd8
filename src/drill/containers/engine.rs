//! The container engine: reaching it ([`engine_available`],
//! [`engine_or_skip`]), the calls testcontainers does not offer (a kill
//! with a given signal, waiting for a container to stop) and the sweep of
//! containers whose owning process died.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
};

use super::ContainerSettings;
use crate::drill::ClusterError;

/// The label every drill container carries: the owning process id.
pub(crate) const OWNER_LABEL: &str = "io.failover-pool.drill.owner";
/// Whether [`engine_or_skip`] has said why it skips.
static SKIP_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// How long asking the engine whether it is there may take.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a container engine answers at `DOCKER_HOST` (or the default
/// socket); its version when it does.
///
/// # Errors
///
/// [`ClusterError::Engine`] naming the address and what failed.
pub async fn engine_available() -> Result<String, ClusterError> {
    let engine = Engine::connect()?;
    let unreachable = |source: Box<dyn std::error::Error + Send + Sync>| ClusterError::Engine {
        node: format!("the engine at {}", engine_address()),
        operation: "reach".to_owned(),
        source,
    };
    let version = tokio::time::timeout(PING_TIMEOUT, engine.docker.version())
        .await
        .map_err(|_| unreachable(format!("no answer within {PING_TIMEOUT:?}").into()))?
        .map_err(|e| unreachable(e.into()))?;
    Ok(format!(
        "{} (API {})",
        version.version.unwrap_or_default(),
        version.api_version.unwrap_or_default()
    ))
}

/// For tests that need containers: the [`ContainerSettings`] from the
/// environment when an engine answers; otherwise `None`, and the first
/// such call of the process prints one line to standard error (past the
/// test harness's output capture) saying why the container tests skip.
///
/// # Panics
///
/// When no engine answers and `FAILOVER_POOL_REQUIRE_CONTAINERS` or `CI`
/// is set (to anything but `0`/`false`): there, a missing engine is a
/// failure, not a skip.
pub async fn engine_or_skip(name: &str) -> Option<ContainerSettings> {
    match engine_available().await {
        Ok(_) => Some(ContainerSettings::from_env()),
        Err(e) => {
            let why = crate::error::chain(&e);
            if required() {
                panic!(
                    "{name}: containers are required here (FAILOVER_POOL_REQUIRE_CONTAINERS or CI is set) but {why}"
                );
            }
            // Once per process, and past the test harness's capture of
            // `eprintln!`, so `cargo test` shows it.
            if !SKIP_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "skipping the container tests (first: {name}): no container engine ({why}); start one with `scripts/engine.sh run cargo test ...` or set DOCKER_HOST"
                );
            }
            None
        }
    }
}

/// Whether the environment says container tests must run.
fn required() -> bool {
    ["FAILOVER_POOL_REQUIRE_CONTAINERS", "CI"]
        .iter()
        .any(|var| {
            std::env::var(var)
                .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        })
}

/// `DOCKER_HOST`, or the default socket.
fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

/// A client of the engine for what testcontainers does not do.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    docker: Docker,
}

impl Engine {
    /// The engine at `DOCKER_HOST` (or the default socket); no request yet.
    pub(crate) fn connect() -> Result<Self, ClusterError> {
        let docker = Docker::connect_with_defaults().map_err(|e| ClusterError::Engine {
            node: format!("the engine at {}", engine_address()),
            operation: "connect to".to_owned(),
            source: e.into(),
        })?;
        Ok(Engine { docker })
    }

    /// Sends `signal` to container `id`'s main process.
    pub(crate) async fn signal(
        &self,
        node: &str,
        id: &str,
        signal: &str,
    ) -> Result<(), ClusterError> {
        let options = KillContainerOptions {
            signal: signal.to_owned(),
        };
        self.docker
            .kill_container(id, Some(options))
            .await
            .map_err(engine_err(node, &format!("send {signal} to")))
    }

    /// Whether container `id` runs (paused counts as running).
    pub(crate) async fn is_running(&self, node: &str, id: &str) -> Result<bool, ClusterError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(engine_err(node, "inspect"))?;
        Ok(info.state.and_then(|s| s.running).unwrap_or(false))
    }

    /// Waits until container `id` has stopped, up to `timeout`.
    pub(crate) async fn wait_stopped(
        &self,
        node: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let began = Instant::now();
        while self.is_running(node, id).await? {
            if began.elapsed() >= timeout {
                return Err(ClusterError::CommandTimeout {
                    command: format!("stopping the container of {node}"),
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Removes the drill containers whose owning process no longer runs
    /// on this host (a test process killed before its destructors ran).
    /// Best effort: errors are logged, never returned.
    pub(crate) async fn sweep_orphans(&self) {
        let filters = HashMap::from([("label".to_owned(), vec![OWNER_LABEL.to_owned()])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let Ok(containers) = self.docker.list_containers(Some(options)).await else {
            return;
        };
        for c in containers {
            let owner = c
                .labels
                .as_ref()
                .and_then(|l| l.get(OWNER_LABEL))
                .and_then(|pid| pid.parse::<i32>().ok());
            let (Some(pid), Some(id)) = (owner, c.id) else {
                continue;
            };
            if process_alive(pid) {
                continue;
            }
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            match self.docker.remove_container(&id, Some(options)).await {
                Ok(()) => {
                    tracing::info!(container = %id, owner = pid, "removed a drill container whose process died")
                }
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "could not remove an orphaned drill container")
                }
            }
        }
    }
}

/// Whether process `pid` exists on this host.
fn process_alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM still means it exists.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// Maps an engine error on `node` during `operation`.
pub(crate) fn engine_err<E: std::error::Error + Send + Sync + 'static>(
    node: &str,
    operation: &str,
) -> impl FnOnce(E) -> ClusterError {
    let (node, operation) = (node.to_owned(), operation.to_owned());
    move |e| ClusterError::Engine {
        node,
        operation,
        source: Box::new(e),
    }
}
