//! The drill's scenario vocabulary: which [`Store`] is drilled, which
//! [`Fault`] is injected, who does the [`Promotion`], which client library
//! the workload goes through ([`DrillBackend`]) and where the readers read
//! ([`DrillReadPreference`]).
//!
//! These are the settings a drill is described by, on the command line,
//! in [`DrillOptions`](super::DrillOptions) and in the
//! [`DrillReport`](super::DrillReport); this module depends on nothing
//! else in [`drill`](super), so that the options, the workload, the report
//! and the chart can all use it.

use serde::{Deserialize, Serialize};

use crate::pool::ReadPreference;

/// The data store a drill runs on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    /// A PostgreSQL primary with a streaming standby
    /// ([`LocalPgCluster`](super::LocalPgCluster)).
    #[default]
    Postgres,
    /// A Redis master with replicas, optionally watched by three Sentinels
    /// ([`LocalRedisCluster`](super::LocalRedisCluster)).
    Redis,
}

impl Store {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Store::Postgres => "postgres",
            Store::Redis => "redis",
        }
    }

    /// What the store calls the node that takes writes.
    pub const fn primary_word(self) -> &'static str {
        match self {
            Store::Postgres => "primary",
            Store::Redis => "master",
        }
    }
}

/// Where a drill cluster's servers run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// Local processes started from the installed server binaries
    /// ([`LocalPgCluster`](super::LocalPgCluster),
    /// [`LocalRedisCluster`](super::LocalRedisCluster)).
    #[default]
    Local,
    /// Containers on a Docker engine, through testcontainers
    /// (`ContainerPgCluster`, `ContainerRedisCluster`; feature
    /// `testcontainers`).
    Containers,
}

impl ClusterKind {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Local => "local",
            ClusterKind::Containers => "containers",
        }
    }
}

/// How a container cluster's containers are networked (see
/// `drill::containers`, feature `testcontainers`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A user-defined bridge network per cluster, ports published on
    /// 127.0.0.1 (official images).
    #[default]
    Bridge,
    /// The host network, free ports of 127.0.0.1 (for engines without a
    /// bridge; locally built images).
    Host,
}

impl NetworkMode {
    /// The name used on the command line, in the environment and in
    /// reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
        }
    }
}

/// The fault injected into the primary.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// SIGKILL the primary (and its backends): connections reset, new ones refused.
    #[default]
    Crash,
    /// SIGSTOP the primary for the rest of the drill (a hang); thawed at the end.
    Freeze,
    /// Partition: the primary's proxy swallows all traffic; the server keeps running.
    Blackhole,
    /// Fast shutdown of the primary (SIGINT), as for planned maintenance.
    Graceful,
    /// Kill the primary and restart it after half the confirmation window: no promotion should happen.
    Flap,
    /// Kill the primary and restart it (as a primary: Postgres on its old
    /// timeline, Redis empty with a fresh replication id) about a second
    /// after another node was promoted, while the workload runs; a fresh
    /// pool started then must not write to it either.
    RestartOld,
}

impl Fault {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Freeze => "freeze",
            Fault::Blackhole => "blackhole",
            Fault::Graceful => "graceful",
            Fault::Flap => "flap",
            Fault::RestartOld => "restart-old",
        }
    }
}

/// Who promotes the standby.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    /// The pool itself (PromotionPolicy::Automatic with the confirmation window).
    #[default]
    Automatic,
    /// An orchestrator (played by the drill) promotes; the pool follows (PromotionPolicy::External).
    External,
    /// Redis only: three Sentinels promote; the pool follows them as its
    /// topology source (PromotionPolicy::External).
    Sentinel,
}

impl Promotion {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Promotion::Automatic => "automatic",
            Promotion::External => "external",
            Promotion::Sentinel => "sentinel",
        }
    }
}

/// Which client library the workload goes through.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum DrillBackend {
    /// sqlx: [`FailoverPgPool`](crate::postgres::sqlx::FailoverPgPool)
    /// used as a `sqlx::Executor`.
    #[default]
    Sqlx,
    /// deadpool-postgres: `FailoverPool<DeadpoolPostgres>`.
    Deadpool,
    /// The `redis` crate: [`FailoverRedis`](crate::redis::FailoverRedis)
    /// used as a `redis::aio::ConnectionLike`.
    Redis,
    /// deadpool-redis: `FailoverPool<DeadpoolRedis>`.
    DeadpoolRedis,
}

impl DrillBackend {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            DrillBackend::Sqlx => "sqlx",
            DrillBackend::Deadpool => "deadpool",
            DrillBackend::Redis => "redis",
            DrillBackend::DeadpoolRedis => "deadpool-redis",
        }
    }

    /// The store the client library talks to.
    pub const fn store(self) -> Store {
        match self {
            DrillBackend::Sqlx | DrillBackend::Deadpool => Store::Postgres,
            DrillBackend::Redis | DrillBackend::DeadpoolRedis => Store::Redis,
        }
    }
}

/// The readers' read preference (a [`ReadPreference`] usable on the
/// command line).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum DrillReadPreference {
    /// Always the writer.
    Primary,
    /// A replica within the lag bounds, else the writer.
    #[default]
    PreferReplica,
    /// Only replicas.
    Replica,
    /// The node with the lowest probe round trip.
    Nearest,
}

impl From<DrillReadPreference> for ReadPreference {
    fn from(p: DrillReadPreference) -> ReadPreference {
        match p {
            DrillReadPreference::Primary => ReadPreference::Primary,
            DrillReadPreference::PreferReplica => ReadPreference::PreferReplica,
            DrillReadPreference::Replica => ReadPreference::Replica,
            DrillReadPreference::Nearest => ReadPreference::Nearest,
        }
    }
}

impl DrillReadPreference {
    /// The name used in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            DrillReadPreference::Primary => "primary",
            DrillReadPreference::PreferReplica => "prefer_replica",
            DrillReadPreference::Replica => "replica",
            DrillReadPreference::Nearest => "nearest",
        }
    }
}
