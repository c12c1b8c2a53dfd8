//! [`DrillOptions`]: a drill's settings, their validation and what they
//! mean for the pool and the workload; [`DrillError`]: why a drill could
//! not run.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drill::ClusterError;
use crate::drill::scenario::{
    ClusterKind, DrillBackend, DrillReadPreference, Fault, NetworkMode, Promotion, Store,
};
use crate::drill::workload::{WorkloadConfig, WriteAck};
use crate::pool::{PoolConfig, PromotionPolicy};

/// Largest replication lag a standby may have to be promoted automatically.
const MAX_LAG_BYTES: u64 = 64 * 1024 * 1024;
/// Most worker tasks a drill may run (each may hold a connection per node;
/// the drill's servers allow 60).
const MAX_WORKERS: usize = 48;
/// Most Redis replicas a drill may start.
const MAX_REPLICAS: usize = 4;
/// How long an acknowledged Redis write waits for its replicas (`WAIT`).
const ACK_TIMEOUT: Duration = Duration::from_millis(500);

/// Settings of a drill. `Default` gives the documented defaults; check
/// them with [`validate`](Self::validate) ([`run_drill`](super::run_drill) does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DrillOptions {
    /// The store (default Postgres).
    pub store: Store,
    /// The fault (default crash).
    pub fault: Fault,
    /// Who promotes (default automatic).
    pub promotion: Promotion,
    /// Synchronous replication (default false; Postgres only).
    pub sync: bool,
    /// Replicas of the first primary (default 1; Postgres drills run
    /// exactly one standby).
    pub replicas: usize,
    /// Redis: replicas each write waits for, through
    /// [`FailoverRedis::acknowledged`](crate::redis::FailoverRedis::acknowledged)
    /// with a 500 ms `WAIT` (default 0: plain writes).
    pub ack: u32,
    /// How long the workload runs (default 20 s).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// When the fault is injected, since the workload's start (default 8 s).
    #[serde(with = "humantime_serde")]
    pub fault_at: Duration,
    /// Writer tasks (default 8, at least 1).
    pub writers: usize,
    /// Reader tasks (default 8).
    pub readers: usize,
    /// The client library (default sqlx).
    pub backend: DrillBackend,
    /// The readers' read preference (default prefer-replica).
    pub read_preference: DrillReadPreference,
    /// The automatic-promotion confirmation window (default 300 ms).
    #[serde(with = "humantime_serde")]
    pub confirmation: Duration,
    /// How long the simulated orchestrator waits with the primary
    /// unreachable before promoting (external promotion; default 1 s).
    #[serde(with = "humantime_serde")]
    pub external_delay: Duration,
    /// The pool's probe interval (default 100 ms).
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// The pool's probe timeout (default 300 ms).
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// The pool's connect timeout per node (default 500 ms).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Client-side limit of one operation; also the pool's acquire timeout
    /// (default 2 s).
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// The pool's [`test_bypass_window`](crate::pool::PoolConfig::test_bypass_window)
    /// (`None`: the backend's default).
    pub test_bypass_window: Option<Duration>,
    /// Where to write the JSON report ([`write_outputs`](super::write_outputs)).
    pub json: Option<PathBuf>,
    /// Where to write the SVG chart ([`write_outputs`](super::write_outputs)).
    pub svg: Option<PathBuf>,
    /// Whether [`run_drill`](super::run_drill) calls its progress callback.
    pub progress: bool,
    /// Where the cluster runs: local processes (default) or containers
    /// (feature `testcontainers`).
    pub cluster: ClusterKind,
    /// Containers only: the network mode (`None`: `FAILOVER_DRILL_NETWORK`,
    /// else bridge).
    pub network: Option<NetworkMode>,
    /// Containers only: the image of the drilled store, `name:tag`
    /// (`None`: `FAILOVER_DRILL_PG_IMAGE` / `FAILOVER_DRILL_REDIS_IMAGE`,
    /// else the mode's default).
    pub image: Option<String>,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            store: Store::Postgres,
            fault: Fault::Crash,
            promotion: Promotion::Automatic,
            sync: false,
            replicas: 1,
            ack: 0,
            duration: Duration::from_secs(20),
            fault_at: Duration::from_secs(8),
            writers: 8,
            readers: 8,
            backend: DrillBackend::Sqlx,
            read_preference: DrillReadPreference::PreferReplica,
            confirmation: Duration::from_millis(300),
            external_delay: Duration::from_secs(1),
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_secs(2),
            test_bypass_window: None,
            json: None,
            svg: None,
            progress: true,
            cluster: ClusterKind::Local,
            network: None,
            image: None,
        }
    }
}

impl DrillOptions {
    /// The container settings these options describe: from the
    /// environment ([`ContainerSettings::from_env`](crate::drill::containers::ContainerSettings::from_env)),
    /// then `network` and `image`.
    #[cfg(feature = "testcontainers")]
    pub fn container_settings(&self) -> crate::drill::containers::ContainerSettings {
        let mut settings = crate::drill::containers::ContainerSettings::from_env();
        if let Some(network) = self.network {
            let images = (settings.pg_image.clone(), settings.redis_image.clone());
            settings = match network {
                NetworkMode::Host => crate::drill::containers::ContainerSettings::host_network(),
                NetworkMode::Bridge => crate::drill::containers::ContainerSettings::new(),
            };
            // Images named in the environment stay.
            if std::env::var_os("FAILOVER_DRILL_PG_IMAGE").is_some() {
                settings.pg_image = images.0;
            }
            if std::env::var_os("FAILOVER_DRILL_REDIS_IMAGE").is_some() {
                settings.redis_image = images.1;
            }
        }
        if let Some(image) = &self.image {
            match self.store {
                Store::Postgres => settings.pg_image = image.clone(),
                Store::Redis => settings.redis_image = image.clone(),
            }
        }
        settings
    }

    /// Checks the settings; the error names the offending option.
    ///
    /// # Errors
    ///
    /// [`DrillError::InvalidOptions`].
    pub fn validate(&self) -> Result<(), DrillError> {
        let bad = |m: String| Err(DrillError::InvalidOptions(m));
        let d = |d: Duration| humantime_serde::re::humantime::format_duration(d).to_string();
        if self.duration.is_zero() {
            return bad("--duration must be > 0".into());
        }
        if self.duration > Duration::from_secs(3600) {
            return bad(format!(
                "--duration ({}) must be at most 1h",
                d(self.duration)
            ));
        }
        if self.fault_at.is_zero() {
            return bad("--fault-at must be > 0 (the workload needs a baseline)".into());
        }
        if self.fault_at >= self.duration {
            return bad(format!(
                "--fault-at ({}) must be less than --duration ({})",
                d(self.fault_at),
                d(self.duration)
            ));
        }
        if self.writers == 0 {
            return bad("--writers must be at least 1".into());
        }
        if self.writers + self.readers > MAX_WORKERS {
            return bad(format!(
                "--writers + --readers ({}) must be at most {MAX_WORKERS}",
                self.writers + self.readers
            ));
        }
        for (name, value) in [
            ("--confirmation", self.confirmation),
            ("--probe-interval", self.probe_interval),
            ("--probe-timeout", self.probe_timeout),
            ("--connect-timeout", self.connect_timeout),
            ("--op-timeout", self.op_timeout),
        ] {
            if value.is_zero() {
                return bad(format!("{name} must be > 0"));
            }
        }
        self.validate_store()
    }

    /// Checks the settings that depend on the store.
    fn validate_store(&self) -> Result<(), DrillError> {
        let bad = |m: String| Err(DrillError::InvalidOptions(m));
        if self.cluster == ClusterKind::Containers && !cfg!(feature = "testcontainers") {
            return bad(
                "--cluster containers needs failover-pool built with the `testcontainers` feature"
                    .into(),
            );
        }
        if self.cluster == ClusterKind::Local && (self.network.is_some() || self.image.is_some()) {
            return bad("--network and --image are for --cluster containers".into());
        }
        if self.backend.store() != self.store {
            return bad(format!(
                "--backend {} is a {} client, not a {} one",
                self.backend.as_str(),
                self.backend.store().as_str(),
                self.store.as_str()
            ));
        }
        match self.store {
            Store::Postgres => {
                if self.promotion == Promotion::Sentinel {
                    return bad("--promotion sentinel is for Redis drills".into());
                }
                if self.replicas != 1 {
                    return bad("Postgres drills run exactly one standby (replicas = 1)".into());
                }
                if self.ack != 0 {
                    return bad("--ack is for Redis drills; Postgres has --sync".into());
                }
            }
            Store::Redis => {
                if self.sync {
                    return bad(
                        "Redis replication is asynchronous: --sync does not apply (use --ack N)"
                            .into(),
                    );
                }
                if self.replicas == 0 || self.replicas > MAX_REPLICAS {
                    return bad(format!("--replicas must be 1 to {MAX_REPLICAS}"));
                }
                if self.ack as usize > self.replicas {
                    return bad(format!(
                        "--ack ({}) cannot exceed --replicas ({})",
                        self.ack, self.replicas
                    ));
                }
                if self.ack > 0 && self.backend != DrillBackend::Redis {
                    return bad("--ack needs --backend redis (FailoverRedis::acknowledged)".into());
                }
            }
        }
        Ok(())
    }

    /// The failover pool's configuration for these settings.
    pub(super) fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            name: "drill".into(),
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            acquire_timeout: self.op_timeout,
            connect_timeout: self.connect_timeout,
            promotion: match self.promotion {
                Promotion::Automatic => PromotionPolicy::Automatic {
                    confirmation: self.confirmation,
                    max_lag_bytes: MAX_LAG_BYTES,
                },
                Promotion::External | Promotion::Sentinel => PromotionPolicy::External,
            },
            read_preference: self.read_preference.into(),
            test_bypass_window: self.test_bypass_window,
            max_connections: (self.writers + self.readers) as u32,
            ..PoolConfig::default()
        }
    }

    /// The workload's configuration for these settings.
    pub(super) fn workload_config(&self) -> WorkloadConfig {
        WorkloadConfig {
            writers: self.writers,
            readers: self.readers,
            op_timeout: self.op_timeout,
            ack: (self.ack > 0).then_some(WriteAck {
                replicas: self.ack,
                timeout: ACK_TIMEOUT,
            }),
        }
    }
}

/// Errors that keep a drill from running (a drill that ran but missed a
/// goal is not an error: see [`DrillReport::goals`](crate::drill::DrillReport::goals)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// The options are inconsistent.
    #[error("invalid drill options: {0}")]
    InvalidOptions(String),
    /// Starting, controlling or querying the local cluster failed.
    #[error("{context}")]
    Cluster {
        /// What the drill was doing.
        context: String,
        /// The cluster's error.
        #[source]
        source: Box<ClusterError>,
    },
    /// The failover pool could not be created.
    #[error("could not create the failover pool")]
    Pool(#[source] crate::Error),
    /// The cache drill's cache could not be built or loaded.
    #[error("{context}")]
    Cache {
        /// What the drill was doing.
        context: String,
        /// The cache's error.
        #[source]
        source: Box<crate::cache::CacheError>,
    },
    /// A fault proxy could not be started.
    #[error("could not start the fault proxy for {node}")]
    Proxy {
        /// The node the proxy was for.
        node: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The pool found no primary to run the workload against, or none was
    /// left at the end.
    #[error("no primary: {0}")]
    NoPrimary(String),
    /// A drill task panicked.
    #[error("the drill's {0} task failed")]
    Task(String, #[source] tokio::task::JoinError),
    /// Writing an output file failed.
    #[error("could not write {}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Wraps a [`ClusterError`] with what the drill was doing.
pub(crate) fn cluster_err(context: impl Into<String>) -> impl FnOnce(ClusterError) -> DrillError {
    let context = context.into();
    move |source| DrillError::Cluster {
        context,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        DrillOptions::default().validate().unwrap();
        let o = DrillOptions {
            fault_at: Duration::from_secs(30),
            duration: Duration::from_secs(10),
            ..DrillOptions::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(
            e.contains("--fault-at (30s) must be less than --duration (10s)"),
            "{e}"
        );
        let o = DrillOptions {
            writers: 0,
            ..DrillOptions::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("--writers"));
    }

    #[test]
    fn store_specific_settings_are_checked() {
        let redis = DrillOptions {
            store: Store::Redis,
            backend: DrillBackend::Redis,
            ..DrillOptions::default()
        };
        redis.validate().unwrap();
        let sentinel_pg = DrillOptions {
            promotion: Promotion::Sentinel,
            ..DrillOptions::default()
        };
        assert!(sentinel_pg.validate().is_err());
        let mismatch = DrillOptions {
            backend: DrillBackend::Sqlx,
            ..redis.clone()
        };
        let e = mismatch.validate().unwrap_err().to_string();
        assert!(e.contains("--backend sqlx is a postgres client"), "{e}");
        let too_many_acks = DrillOptions {
            ack: 2,
            ..redis.clone()
        };
        assert!(too_many_acks.validate().is_err());
        let sync_redis = DrillOptions {
            sync: true,
            ..redis
        };
        assert!(sync_redis.validate().is_err());
    }
}
