//! Drill clusters in containers (feature `testcontainers`):
//! [`ContainerPgCluster`] and [`ContainerRedisCluster`], the same clusters
//! as [`LocalPgCluster`](super::LocalPgCluster) and
//! [`LocalRedisCluster`](super::LocalRedisCluster) behind the same traits
//! ([`PgCluster`](super::PgCluster), [`RedisCluster`](super::RedisCluster)),
//! so a drill or a test runs unchanged on either.
//!
//! Containers are created through testcontainers 0.28 on the engine
//! `DOCKER_HOST` names (or the default socket). Faults go through the
//! engine: kill (`SIGKILL` to the container), freeze (`pause`: the cgroup
//! freezer, a real hang), graceful stop (`SIGINT` to PostgreSQL, `SIGTERM`
//! to Redis) and restart (`start` of the same container, its file system
//! kept); the network cut is the drill's [`FaultProxy`](super::FaultProxy)
//! as for local clusters.
//!
//! # Two network modes
//!
//! * [`NetworkMode::Bridge`] (the default): official images (`postgres:17`,
//!   `redis:7`, pulled when missing), a user-defined bridge network per
//!   cluster on which the nodes reach each other by container name, and
//!   each node's port published on 127.0.0.1. Each node listens inside its
//!   container on the same port it is published on, so the ports a server
//!   reports (a replica's master port, a sentinel's answer) are the ones
//!   the host uses. Sentinels hand out the container addresses they see;
//!   a client on the host reaches those on Linux (the bridge is routed),
//!   not through Docker Desktop's VM.
//! * [`NetworkMode::Host`]: every container on the host network, on free
//!   ports of 127.0.0.1 chosen here; for engines without a bridge (like the
//!   private one CI runs, `scripts/engine.sh`) and with locally built
//!   images (`failover-pool/postgres:15`, `failover-pool/redis:7`).
//!
//! [`ContainerSettings::from_env`] reads `FAILOVER_DRILL_NETWORK`
//! (`bridge` or `host`), `FAILOVER_DRILL_PG_IMAGE` and
//! `FAILOVER_DRILL_REDIS_IMAGE`; `scripts/engine.sh` exports them. Every
//! command the containers run is given explicitly (a short `sh` script), so
//! the official images and the local ones behave the same; PostgreSQL runs
//! as user `postgres`, Redis as `redis`, both with trust/no passwords: test
//! clusters only.
//!
//! # Clean-up
//!
//! Dropping a cluster removes its containers (and its network), also when a
//! test panics. There is no reaper container (Ryuk) here: each container is
//! labelled with the owning process id, and every cluster started removes
//! the containers of owners that no longer run, so a process killed before
//! its destructors ran leaves nothing behind for long.
//!
//! # In your own tests
//!
//! [`engine_or_skip`] answers whether an engine is reachable: without one
//! a test returns early with one line saying why, unless
//! `FAILOVER_POOL_REQUIRE_CONTAINERS` or `CI` is set, where it fails.
//!
//! ```no_run
//! use failover_pool::drill::containers::{engine_or_skip, ContainerPgCluster};
//! use failover_pool::drill::{Cluster, PgClusterOptions};
//!
//! # async fn demo() -> Result<(), failover_pool::drill::ClusterError> {
//! let Some(settings) = engine_or_skip("pg_failover").await else { return Ok(()) };
//! let cluster = ContainerPgCluster::start(PgClusterOptions::new().standbys(1), settings).await?;
//! cluster.kill(0).await?;
//! cluster.promote(1).await?;
//! # Ok(()) }
//! ```

mod engine;
mod fleet;
mod pg;
mod redis;
mod scripts;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::engine::{engine_available, engine_or_skip};
pub use self::pg::ContainerPgCluster;
pub use self::redis::ContainerRedisCluster;
pub use crate::drill::scenario::NetworkMode;

/// The official PostgreSQL image [`ContainerSettings::new`] uses.
pub const OFFICIAL_PG_IMAGE: &str = "postgres:17";
/// The official Redis image [`ContainerSettings::new`] uses.
pub const OFFICIAL_REDIS_IMAGE: &str = "redis:7";
/// The locally built PostgreSQL image (`scripts/engine.sh`).
pub const LOCAL_PG_IMAGE: &str = "failover-pool/postgres:15";
/// The locally built Redis image (`scripts/engine.sh`).
pub const LOCAL_REDIS_IMAGE: &str = "failover-pool/redis:7";

/// Where and from what images container clusters run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerSettings {
    /// Bridge network with published ports, or the host network.
    pub network: NetworkMode,
    /// The PostgreSQL image, `name:tag` (any image with PostgreSQL 12 or
    /// later, `sh`, and a `postgres` user).
    pub pg_image: String,
    /// The Redis image, `name:tag` (Redis 6.2 or later, `sh`, a `redis`
    /// user).
    pub redis_image: String,
    /// How long pulling and starting a container may take.
    pub startup_timeout: Duration,
}

impl Default for ContainerSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl ContainerSettings {
    /// Bridge network, official images.
    pub fn new() -> Self {
        ContainerSettings {
            network: NetworkMode::Bridge,
            pg_image: OFFICIAL_PG_IMAGE.to_owned(),
            redis_image: OFFICIAL_REDIS_IMAGE.to_owned(),
            startup_timeout: Duration::from_secs(120),
        }
    }

    /// Host network, the locally built images of `scripts/engine.sh`.
    pub fn host_network() -> Self {
        ContainerSettings {
            network: NetworkMode::Host,
            pg_image: LOCAL_PG_IMAGE.to_owned(),
            redis_image: LOCAL_REDIS_IMAGE.to_owned(),
            ..Self::new()
        }
    }

    /// [`new`](Self::new), or [`host_network`](Self::host_network) when
    /// `FAILOVER_DRILL_NETWORK=host`, with the images
    /// `FAILOVER_DRILL_PG_IMAGE` / `FAILOVER_DRILL_REDIS_IMAGE` when set.
    /// An unknown network name is ignored with a warning (logged).
    pub fn from_env() -> Self {
        let mut settings = match std::env::var("FAILOVER_DRILL_NETWORK").as_deref() {
            Ok("host") => Self::host_network(),
            Ok("bridge") | Err(_) => Self::new(),
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "FAILOVER_DRILL_NETWORK is neither `bridge` nor `host`; using bridge"
                );
                Self::new()
            }
        };
        if let Ok(image) = std::env::var("FAILOVER_DRILL_PG_IMAGE") {
            settings.pg_image = image;
        }
        if let Ok(image) = std::env::var("FAILOVER_DRILL_REDIS_IMAGE") {
            settings.redis_image = image;
        }
        settings
    }

    /// Sets the network mode (images unchanged).
    pub fn network(mut self, network: NetworkMode) -> Self {
        self.network = network;
        self
    }

    /// Sets the PostgreSQL image (`name:tag`).
    pub fn pg_image(mut self, image: impl Into<String>) -> Self {
        self.pg_image = image.into();
        self
    }

    /// Sets the Redis image (`name:tag`).
    pub fn redis_image(mut self, image: impl Into<String>) -> Self {
        self.redis_image = image.into();
        self
    }

    /// Sets how long pulling and starting a container may take.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }
}

/// `name:tag` split at the tag's colon (a registry's `host:port/` is part
/// of the name); `latest` when there is no tag.
pub(crate) fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_at_the_tag() {
        assert_eq!(split_image("postgres:17"), ("postgres", "17"));
        assert_eq!(split_image("redis"), ("redis", "latest"));
        assert_eq!(
            split_image("localhost:5000/team/pg:15"),
            ("localhost:5000/team/pg", "15")
        );
        assert_eq!(
            split_image("localhost:5000/pg"),
            ("localhost:5000/pg", "latest")
        );
    }
}
