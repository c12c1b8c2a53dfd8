//! Failover drills: throwaway local PostgreSQL and Redis clusters and fault
//! injection.
//!
//! This module (behind the `drill` Cargo feature) starts real PostgreSQL and
//! Redis servers from the binaries installed on the machine, so that tests
//! and the `failover-drill` binary can exercise the failover pools against
//! genuine crashes, hangs, promotions and split-brain situations instead of
//! mocks.
//!
//! * [`LocalPgCluster`] runs a primary and any number of streaming standbys
//!   (asynchronous or synchronous) on free loopback ports inside a temporary
//!   directory, and injects faults per node: [`kill`](LocalPgCluster::kill)
//!   (crash), [`freeze`](LocalPgCluster::freeze) /
//!   [`thaw`](LocalPgCluster::thaw) (hang), graceful stop,
//!   [`restart`](LocalPgCluster::restart),
//!   [`promote`](LocalPgCluster::promote) and
//!   [`rejoin_as_standby`](LocalPgCluster::rejoin_as_standby) (`pg_rewind`).
//! * [`LocalRedisCluster`] ([`redis`]) is its Redis twin: a master with
//!   replicas and optionally three Sentinels, with the same per-node faults
//!   plus [`restart`](LocalRedisCluster::restart) of an old master as a
//!   master, [`replicaof`](LocalRedisCluster::replicaof),
//!   [`pause_replication`](LocalRedisCluster::pause_replication) (a lagging
//!   replica) and sentinel faults, and it waits for a
//!   [sentinel failover](LocalRedisCluster::wait_sentinel_failover).
//! * [`Cluster`] (nodes and faults) with [`PgCluster`] and
//!   [`RedisCluster`] on top (each store's queries) are the cluster API
//!   both are written against, so that a drill or a test runs unchanged on local
//!   processes and on containers: `containers` (feature
//!   `testcontainers`) has `ContainerPgCluster` and
//!   `ContainerRedisCluster`, the same clusters on a Docker engine.
//! * [`process`] holds the lower-level helpers: locating the server binaries,
//!   picking free ports, running commands as the server user and signalling
//!   a server together with all of its children.
//! * [`FaultProxy`] ([`proxy`]) cuts, slows or resets the network path to
//!   one node.
//! * [`run_drill`] ([`run`]) runs a whole drill on either cluster, written
//!   once over both (a private trait in `run/cluster/` stands for the
//!   cluster, [`DrillDriver`](workload::DrillDriver) for the client
//!   library): a [`workload`] through a failover pool, a [`Fault`]
//!   injected into the primary, the data checked afterwards; the outcome
//!   is a [`DrillReport`] ([`report`]), shown as text, JSON or an SVG chart
//!   ([`svg`]). The settings a drill is described by ([`Store`],
//!   [`Fault`], [`Promotion`], [`DrillBackend`], ...) are in [`scenario`].
//! * [`cache`] runs the [`FailoverCache`](crate::cache::FailoverCache)
//!   drill: two independent Redis servers, one side crashed (and restarted
//!   empty), frozen or cut off under a set/delete/get load, the repair
//!   checked key by key by reading both servers directly.
//! * [`http`]: local HTTP/1.1 backends with switchable faults.
//!
//! Inside this module dependencies point one way: `containers` uses
//! [`pg`], [`redis`], [`process`] and [`scenario`]; [`cache`] uses [`redis`],
//! [`proxy`], [`svg`]'s axis helpers, [`report`]'s `Goal` and [`run`]'s
//! error; [`run`] uses everything else but [`cache`]; [`svg`] uses [`report`], which uses [`workload`] and
//! [`scenario`]; [`workload`] uses [`scenario`]; [`pg`] and [`redis`] use
//! [`process`] (and not each other); [`scenario`] and [`proxy`] use
//! nothing else here ([`ClusterError`], defined here, is the error of
//! [`pg`], [`redis`] and [`process`]). [`redis`] talks to its servers
//! through the `redis` crate only, never through this crate's Redis
//! backends, so a drill cannot share a bug with the code it exercises.
//!
//! Every cluster is torn down when its [`LocalPgCluster`] or
//! [`LocalRedisCluster`] is dropped, even when a test panics. If the owning
//! process dies without running destructors (killed, or a cluster kept in a
//! `static`), a tiny watchdog process per server kills it, and a janitor per
//! cluster deletes its directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), failover_pool::drill::ClusterError> {
//! use failover_pool::drill::{LocalPgCluster, PgClusterOptions};
//!
//! let cluster = LocalPgCluster::start(PgClusterOptions::new().standbys(1)).await?;
//! cluster.exec(0, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)").await?;
//! cluster.wait_caught_up().await?;
//! assert_eq!(cluster.count(1, "SELECT count(*) FROM t").await?, 1);
//! cluster.kill(0)?; // the primary crashes
//! cluster.promote(1).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), failover_pool::drill::ClusterError> {
//! use std::time::Duration;
//! use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions};
//!
//! let opts = RedisClusterOptions::new().replicas(2).sentinels(true);
//! let cluster = LocalRedisCluster::start(opts).await?;
//! cluster.exec(0, &["SET", "k", "v"]).await?;
//! cluster.wait_caught_up().await?;
//! let old_master = cluster.port(0);
//! cluster.kill(0)?; // the master crashes; the sentinels promote a replica
//! let new_master = cluster
//!     .wait_sentinel_failover(old_master, Duration::from_secs(30))
//!     .await?;
//! assert!(cluster.role(new_master).await?.is_master());
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

pub mod cache;
mod cluster;
#[cfg(feature = "testcontainers")]
pub mod containers;
pub mod event_log;
mod figures;
pub mod http;
pub mod pg;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod report;
pub mod run;
pub mod scenario;
pub mod svg;
pub mod workload;

pub use cluster::Cluster;
pub use pg::{LocalPgCluster, PgCluster, PgClusterOptions, PgLsn, PgNode, PgRole};
pub use process::{ProcessGroup, ServerUser};
pub use proxy::{FaultProxy, ProxyMode};
pub use redis::{LocalRedisCluster, RedisCluster, RedisClusterOptions, RedisNodeInfo, RedisRole};
pub use report::DrillReport;
pub use run::{DrillError, DrillOptions, Progress, run_drill};
pub use scenario::{ClusterKind, DrillBackend, Fault, Promotion, Store};
pub use svg::render_svg;

/// Errors from starting, controlling or querying a local drill cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The server binaries were not found: PostgreSQL's (`initdb`,
    /// `postgres`, ...) or Redis's (`redis-server`).
    #[error(
        "no {server} server binaries found (looked in {looked_in}); install the `{package}` package"
    )]
    NoServerBinaries {
        /// Which server: `PostgreSQL` or `Redis`.
        server: String,
        /// Where the binaries were looked for.
        looked_in: String,
        /// The (Debian/Ubuntu) package that provides them.
        package: String,
    },

    /// The process runs as root, and PostgreSQL refuses to run as root, but
    /// no unprivileged user to run it as exists.
    #[error(
        "no non-root user to run PostgreSQL as: running as root and {reason}; create a `postgres` user (installing the `postgresql` package does) or run as a non-root user"
    )]
    NoServerUser {
        /// Why the `postgres` user could not be used.
        reason: String,
    },

    /// A command could not be started at all.
    #[error("could not start `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A command ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}); its output ends with:\n{output_tail}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// The exit status, as text.
        status: String,
        /// The last lines of its standard error and output.
        output_tail: String,
    },

    /// A command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout {
        /// The command line.
        command: String,
        /// How long it was given.
        timeout: Duration,
    },

    /// A file system or other I/O operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, including the path concerned.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A signal could not be delivered to a server.
    #[error("could not send {signal} to {node} (pid {pid})")]
    Signal {
        /// The node name (`pg0`, ...).
        node: String,
        /// The signal name.
        signal: String,
        /// The process id signalled.
        pid: i32,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },

    /// A server process exited while it was expected to start or run.
    #[error("{node} exited during startup ({status}); {log_tail}")]
    ServerExited {
        /// The node name.
        node: String,
        /// The exit status, as text.
        status: String,
        /// The last lines of the server log, headed by the log's path.
        log_tail: String,
    },

    /// A server did not become ready in time.
    #[error(
        "{node} was not ready within {waited:?} (waiting for {what}; last error: {last_error}); {log_tail}"
    )]
    NotReady {
        /// The node name.
        node: String,
        /// What readiness condition was awaited.
        what: String,
        /// How long it was awaited.
        waited: Duration,
        /// The last error seen while waiting, or `none`.
        last_error: String,
        /// The last lines of the server log, headed by the log's path.
        log_tail: String,
    },

    /// Connecting to a node or running SQL on it failed.
    #[error("SQL on {node} failed: {sql}")]
    Query {
        /// The node name.
        node: String,
        /// The statement (or `connect`).
        sql: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Connecting to a node or running SQL on it did not finish in time.
    #[error("SQL on {node} did not finish within {timeout:?}: {sql}")]
    QueryTimeout {
        /// The node name.
        node: String,
        /// The statement (or `connect`).
        sql: String,
        /// The client-side time limit.
        timeout: Duration,
    },

    /// Connecting to a Redis node (or sentinel) or running a command on it
    /// failed, including an error reply from the server.
    #[error("Redis command on {node} failed: {command}")]
    Redis {
        /// The node name (`redis0`, `sentinel1`, ...).
        node: String,
        /// The command (or `connect`), shortened when long.
        command: String,
        /// The underlying error.
        #[source]
        source: ::redis::RedisError,
    },

    /// Connecting to a Redis node (or sentinel) or running a command on it
    /// did not finish in time (a frozen node, typically).
    #[error("Redis command on {node} did not finish within {timeout:?}: {command}")]
    RedisTimeout {
        /// The node name.
        node: String,
        /// The command (or `connect`), shortened when long.
        command: String,
        /// The client-side time limit.
        timeout: Duration,
    },

    /// A node index out of range.
    #[error("no node {index}: the cluster has {count} nodes")]
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// How many nodes there are.
        count: usize,
    },

    /// A sentinel index out of range (or a cluster without sentinels).
    #[error("no sentinel {index}: the cluster has {count} sentinels")]
    NoSuchSentinel {
        /// The index asked for.
        index: usize,
        /// How many sentinels there are.
        count: usize,
    },

    /// The container engine refused or failed an operation on a node (or
    /// could not be reached at all).
    #[error("container engine: could not {operation} {node}")]
    Engine {
        /// The node name (`pg0`, `redis1`, `sentinel0`) or `the engine`.
        node: String,
        /// The operation (`start`, `kill`, `pause`, ...).
        operation: String,
        /// The engine client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The operation does not fit the node's current state (for example
    /// restarting a node that is running).
    #[error("cannot {operation} {node}: {reason}")]
    InvalidState {
        /// The node name.
        node: String,
        /// The operation attempted.
        operation: String,
        /// Why it is not possible now.
        reason: String,
    },
}

impl ClusterError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}
