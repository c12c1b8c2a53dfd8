//! [`Cluster`]: what every drill cluster offers, whatever the store and
//! wherever its servers run: its nodes, and the faults a failover drill
//! injects into them. [`PgCluster`](super::PgCluster) and
//! [`RedisCluster`](super::RedisCluster) add each store's queries and
//! waits; the local clusters (processes) and the container clusters
//! (feature `testcontainers`) implement all of them, so a test written
//! against these traits runs unchanged on either.

use std::time::Duration;

use super::ClusterError;
use super::scenario::ClusterKind;

/// A throwaway cluster of one store's servers on 127.0.0.1, with the
/// faults a failover drill injects. Node 0 is the first primary (master).
///
/// ```no_run
/// use failover_pool::drill::{Cluster, ClusterError};
///
/// /// Any store, any kind: crash a node and bring it back.
/// async fn bounce(cluster: &impl Cluster, index: usize) -> Result<(), ClusterError> {
///     cluster.kill(index).await?;
///     assert!(!cluster.is_running(index));
///     cluster.restart(index).await
/// }
/// ```
///
/// On the local clusters `kill`, `freeze` and `thaw` also exist as
/// synchronous inherent methods (a signal); the trait's are `async`
/// because a container engine is asked over its API.
pub trait Cluster: Send + Sync + 'static {
    /// Where the servers run.
    fn kind(&self) -> ClusterKind;

    /// Number of data nodes (primary plus standbys, master plus replicas).
    fn len(&self) -> usize;

    /// Always false: a cluster has at least its primary.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Node `index`'s name (`pg0`, `redis1`, ...).
    ///
    /// # Panics
    ///
    /// When `index` is out of range, like slice indexing.
    fn name(&self, index: usize) -> String;

    /// The port node `index` is reached on at 127.0.0.1.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    fn port(&self, index: usize) -> u16;

    /// Whether node `index`'s server runs (possibly frozen).
    fn is_running(&self, index: usize) -> bool;

    /// Whether node `index` is frozen.
    fn is_frozen(&self, index: usize) -> bool;

    /// The time limit of each query and connection attempt.
    fn query_timeout(&self) -> Duration;

    /// Crashes node `index`: `SIGKILL` to its server and all its processes
    /// (a container: everything in it). Connections reset, new ones
    /// refused.
    fn kill(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Hangs node `index` (`SIGSTOP`; a container: `pause`, the cgroup
    /// freezer): open connections stall, nothing answers.
    fn freeze(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Undoes [`freeze`](Self::freeze).
    fn thaw(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Stops node `index` the graceful way (PostgreSQL: fast shutdown,
    /// `SIGINT`; Redis: `SIGTERM`, nothing saved) and waits for it to exit.
    fn stop_graceful(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Starts a stopped (killed or stopped) node `index` again. PostgreSQL
    /// keeps its data and configuration: a former primary comes back a
    /// primary on its old timeline (split brain, on purpose). Redis comes
    /// back an empty master with a fresh replication id (no persistence).
    fn restart(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Makes node `index` the primary, as an orchestrator would
    /// (PostgreSQL: `pg_promote`; Redis: `REPLICAOF NO ONE`).
    fn promote(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;
}
