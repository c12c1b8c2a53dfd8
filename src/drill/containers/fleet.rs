//! The containers of one cluster: naming, labels, the network mode, the
//! engine operations a fault needs (kill, pause, signal, start), and their
//! removal when the cluster is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::engine::{Engine, OWNER_LABEL, engine_err};
use super::{ContainerSettings, NetworkMode, split_image};
use crate::drill::ClusterError;

/// Numbers the clusters of this process (container and network names).
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// What to run in one container.
pub(crate) struct Spec<'a> {
    /// Node name (`pg0`, `redis1`, `sentinel2`).
    pub(crate) name: &'a str,
    /// `name:tag`.
    pub(crate) image: &'a str,
    /// The user the command runs as.
    pub(crate) user: &'a str,
    /// The `sh -c` script.
    pub(crate) script: String,
    /// The port it listens on, inside and (published) outside.
    pub(crate) port: u16,
}

/// The containers of one cluster and the engine they run on.
#[derive(Debug)]
pub(crate) struct Fleet {
    engine: Engine,
    settings: ContainerSettings,
    /// `fpdrill-<pid>-<n>`: container names are `<prefix>-<node>`.
    prefix: String,
}

impl Fleet {
    /// Connects to the engine and sweeps the containers of dead owners.
    pub(crate) async fn new(settings: ContainerSettings) -> Result<Self, ClusterError> {
        let engine = Engine::connect()?;
        engine.sweep_orphans().await;
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("fpdrill-{}-{n}", std::process::id());
        Ok(Fleet {
            engine,
            settings,
            prefix,
        })
    }

    /// The settings the containers run with.
    pub(crate) fn settings(&self) -> &ContainerSettings {
        &self.settings
    }

    /// The container name of node `name`: also its host name on the
    /// bridge network.
    pub(crate) fn container_name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The address other containers reach node `name` at.
    pub(crate) fn peer_host(&self, name: &str) -> String {
        match self.settings.network {
            NetworkMode::Host => "127.0.0.1".to_owned(),
            NetworkMode::Bridge => self.container_name(name),
        }
    }

    /// The address a server binds: loopback on the host network (nothing
    /// else of the host sees it), every interface inside a bridge
    /// container (the published port and the peers reach it there).
    pub(crate) fn bind_addr(&self) -> &'static str {
        match self.settings.network {
            NetworkMode::Host => "127.0.0.1",
            NetworkMode::Bridge => "0.0.0.0",
        }
    }

    /// Creates and starts a container for `spec` (pulling the image if
    /// the engine lacks it); returns once the engine runs it, not once the
    /// server answers.
    pub(crate) async fn run(&self, spec: Spec<'_>) -> Result<Member, ClusterError> {
        let (image, tag) = split_image(spec.image);
        let container_name = self.container_name(spec.name);
        let request = GenericImage::new(image, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_cmd(["sh", "-c", &spec.script])
            .with_user(spec.user)
            .with_container_name(&container_name)
            .with_labels([(OWNER_LABEL, std::process::id().to_string())])
            .with_startup_timeout(self.settings.startup_timeout);
        let request = match self.settings.network {
            NetworkMode::Host => request.with_network("host"),
            NetworkMode::Bridge => request
                .with_network(format!("{}-net", self.prefix))
                .with_mapped_port(spec.port, ContainerPort::Tcp(spec.port)),
        };
        let container = request.start().await.map_err(engine_err(
            spec.name,
            &format!("start a container of {} for", spec.image),
        ))?;
        let ip = self.ip_of(spec.name, &container).await?;
        Ok(Member {
            name: spec.name.to_owned(),
            port: spec.port,
            ip: std::sync::Mutex::new(ip),
            container: Some(container),
            running: AtomicBool::new(true),
            frozen: AtomicBool::new(false),
        })
    }

    /// The address peers reach a container at without a name lookup: its
    /// address on the bridge network, or loopback on the host network.
    async fn ip_of(
        &self,
        name: &str,
        container: &ContainerAsync<GenericImage>,
    ) -> Result<String, ClusterError> {
        match self.settings.network {
            NetworkMode::Host => Ok("127.0.0.1".to_owned()),
            NetworkMode::Bridge => container
                .get_bridge_ip_address()
                .await
                .map(|ip| ip.to_string())
                .map_err(engine_err(name, "read the network address of")),
        }
    }

    /// Crashes `m`: `SIGKILL` to the container (every process in it).
    pub(crate) async fn kill(&self, m: &Member) -> Result<(), ClusterError> {
        m.expect_running("kill")?;
        self.engine.signal(&m.name, m.id(), "SIGKILL").await?;
        self.engine
            .wait_stopped(&m.name, m.id(), Duration::from_secs(10))
            .await?;
        m.running.store(false, Ordering::SeqCst);
        m.frozen.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Freezes `m` (`pause`: the cgroup freezer).
    pub(crate) async fn freeze(&self, m: &Member) -> Result<(), ClusterError> {
        m.expect_running("freeze")?;
        m.container()
            .pause()
            .await
            .map_err(engine_err(&m.name, "pause"))?;
        m.frozen.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Thaws `m` (`unpause`).
    pub(crate) async fn thaw(&self, m: &Member) -> Result<(), ClusterError> {
        m.expect_running("thaw")?;
        m.container()
            .unpause()
            .await
            .map_err(engine_err(&m.name, "unpause"))?;
        m.frozen.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Stops `m` with `signal` (thawed first) and waits up to `timeout`
    /// for it to exit; kills it after that.
    pub(crate) async fn stop(
        &self,
        m: &Member,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        m.expect_running("stop")?;
        if m.is_frozen() {
            self.thaw(m).await?;
        }
        self.engine.signal(&m.name, m.id(), signal).await?;
        let stopped = self.engine.wait_stopped(&m.name, m.id(), timeout).await;
        if stopped.is_err() {
            let _ = self.engine.signal(&m.name, m.id(), "SIGKILL").await;
            let _ = self
                .engine
                .wait_stopped(&m.name, m.id(), Duration::from_secs(10))
                .await;
        }
        m.running.store(false, Ordering::SeqCst);
        stopped
    }

    /// Starts the stopped container of `m` again (same file system, same
    /// command); returns once the engine runs it.
    pub(crate) async fn restart(&self, m: &Member) -> Result<(), ClusterError> {
        if m.is_running() {
            return Err(ClusterError::InvalidState {
                node: m.name.clone(),
                operation: "restart".to_owned(),
                reason: "it is running; kill or stop it first".to_owned(),
            });
        }
        m.container()
            .start()
            .await
            .map_err(engine_err(&m.name, "start"))?;
        m.running.store(true, Ordering::SeqCst);
        // A restarted container may get another address on the bridge.
        let ip = self.ip_of(&m.name, m.container()).await?;
        *m.ip.lock().unwrap_or_else(|e| e.into_inner()) = ip;
        Ok(())
    }
}

/// One container of a cluster: a data node or a sentinel.
#[derive(Debug)]
pub(crate) struct Member {
    /// Node name (`pg0`, ...).
    pub(crate) name: String,
    /// The port it listens on at 127.0.0.1 (published or on the host
    /// network).
    pub(crate) port: u16,
    /// Its address as other containers reach it (no name lookup).
    ip: std::sync::Mutex<String>,
    /// `None` only while being dropped.
    container: Option<ContainerAsync<GenericImage>>,
    running: AtomicBool,
    frozen: AtomicBool,
}

impl Member {
    fn container(&self) -> &ContainerAsync<GenericImage> {
        self.container
            .as_ref()
            .expect("a member's container is only taken by Drop")
    }

    fn id(&self) -> &str {
        self.container().id()
    }

    /// Its address as other containers reach it without a name lookup
    /// (the bridge address, or 127.0.0.1 on the host network). Redis
    /// resolves names on its main thread, so sentinels and replicas are
    /// given addresses: a lookup of a dead container's name stalls them.
    pub(crate) fn ip(&self) -> String {
        self.ip.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether its server runs (possibly frozen).
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Whether it is frozen.
    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// The last lines of its output, for errors.
    pub(crate) async fn log_tail(&self) -> String {
        let (out, err) = tokio::join!(
            self.container().stdout_to_vec(),
            self.container().stderr_to_vec()
        );
        let mut text = String::from_utf8_lossy(&out.unwrap_or_default()).into_owned();
        text.push_str(&String::from_utf8_lossy(&err.unwrap_or_default()));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("container {} output ends with:\n{tail}", self.name)
    }

    fn expect_running(&self, operation: &str) -> Result<(), ClusterError> {
        if self.is_running() {
            Ok(())
        } else {
            Err(ClusterError::InvalidState {
                node: self.name.clone(),
                operation: operation.to_owned(),
                reason: "it is not running".to_owned(),
            })
        }
    }
}

impl Drop for Member {
    /// Removes the container (testcontainers' own drop, which needs a
    /// runtime: one is made when the cluster is dropped outside of any).
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(container);
            return;
        }
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let _entered = rt.enter();
                drop(container);
            }
            Err(e) => {
                tracing::warn!(node = %self.name, error = %e, "could not remove a drill container: no runtime")
            }
        }
    }
}

/// Polls `check` every 50 ms until it is true or `timeout` passes; the
/// error names `what` was awaited on `node` and the last failure.
pub(crate) async fn wait_until<F, Fut>(
    node: &Member,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<(), ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, ClusterError>>,
{
    let began = Instant::now();
    loop {
        let last = match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => "condition not met yet".to_owned(),
            Err(e) => crate::error::chain(&e),
        };
        if began.elapsed() >= timeout {
            return Err(ClusterError::NotReady {
                node: node.name.clone(),
                what: what.to_owned(),
                waited: began.elapsed(),
                last_error: last,
                log_tail: node.log_tail().await,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
