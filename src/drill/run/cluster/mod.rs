//! [`DrillCluster`]: what the drill needs from the cluster it runs on,
//! implemented once per store over the public cluster traits: [`PgNodes`]
//! for any [`PgCluster`](crate::drill::PgCluster) (`pg.rs`) and
//! [`RedisNodes`] for any [`RedisCluster`](crate::drill::RedisCluster)
//! (`redis.rs`), so local processes and containers run the same drill.
//! Everything else in [`run`](super) (the sequence, the faults, the
//! simulated orchestrator, the final set check) is written once against
//! this trait.
//!
//! Node 0 is always the first primary, the node the fault hits; node 1 is
//! the one the simulated orchestrator promotes.

mod pg;
mod redis;

pub(crate) use self::pg::PgNodes;
pub(crate) use self::redis::RedisNodes;

use std::collections::BTreeSet;
use std::time::Duration;

use super::options::{DrillError, DrillOptions};
use crate::drill::ClusterError;
use crate::drill::scenario::{ClusterKind, Store};

/// A local cluster a drill runs on: its nodes, the faults the drill
/// injects into them, the orchestrator's actions and the final reads.
pub(crate) trait DrillCluster: Send + Sync + Sized + 'static {
    /// The store it runs.
    const STORE: Store;
    /// What a graceful stop is (`fast shutdown (SIGINT)`, ...).
    const GRACEFUL: &'static str;
    /// How a node restarted after a crash comes back (`crash recovery`, ...).
    const RESTART: &'static str;
    /// Whether restarting a stopped old primary after the workload shows
    /// what it holds (Postgres: its data survives a crash; Redis without
    /// persistence comes back empty).
    const RESTART_TO_READ: bool;
    /// What [`primary_rank`](Self::primary_rank) ranks by.
    const RANK: &'static str;

    /// Starts the cluster `opts` describes, with the drill's table (if
    /// any) created and every replica caught up.
    fn start(opts: &DrillOptions) -> impl Future<Output = Result<Self, DrillError>> + Send;

    /// Where the servers run.
    fn kind(&self) -> ClusterKind;

    /// How a freeze is done, and undone (`SIGSTOP`/`SIGCONT`, ...).
    fn freeze_how(&self) -> (&'static str, &'static str) {
        match self.kind() {
            ClusterKind::Local => ("SIGSTOP", "SIGCONT"),
            ClusterKind::Containers => ("pause (cgroup freezer)", "unpause"),
        }
    }

    /// Number of data nodes.
    fn node_count(&self) -> usize;

    /// Node `i`'s name (`pg0`, `redis1`, ...).
    fn name(&self, i: usize) -> String;

    /// Node `i`'s port on 127.0.0.1.
    fn port(&self, i: usize) -> u16;

    /// Whether node `i`'s server runs (possibly frozen).
    fn is_running(&self, i: usize) -> bool;

    /// Whether node `i` is frozen.
    fn is_frozen(&self, i: usize) -> bool;

    /// What a signal to node `i` reaches (`pg0 and its backends`, ...).
    fn process_tree(&self, i: usize) -> String;

    /// The URL the pool uses for a node reached on `port` (a server or
    /// its proxy).
    fn url_at(port: u16) -> String;

    /// Crashes node `i` (`SIGKILL`).
    fn kill(&self, i: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Hangs node `i` (`SIGSTOP`, or pauses its container).
    fn freeze(&self, i: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Undoes [`freeze`](Self::freeze).
    fn thaw(&self, i: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Stops node `i` gracefully and waits for it to exit.
    fn stop_graceful(&self, i: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Starts a stopped node `i` again, as a primary where it was one.
    fn restart(&self, i: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Makes node `i` the primary, as an orchestrator would (Redis: the
    /// other replicas are re-pointed at it too).
    fn promote(&self, i: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Whether the server at `url` answers within `timeout` (the simulated
    /// orchestrator's check, through the application's network path).
    fn answers(url: &str, timeout: Duration) -> impl Future<Output = bool> + Send;

    /// `Some(rank)` when node `i` reports itself primary (the highest rank
    /// is the likeliest survivor), `None` when it is a replica.
    fn primary_rank(
        &self,
        i: usize,
    ) -> impl Future<Output = Result<Option<i64>, ClusterError>> + Send;

    /// Every record id on node `i`.
    fn ids_on(&self, i: usize) -> impl Future<Output = Result<BTreeSet<i64>, DrillError>> + Send;

    /// The sentinels' master name and URLs, when the cluster runs
    /// sentinels.
    fn sentinels(&self) -> Option<(String, Vec<String>)> {
        None
    }

    /// The master port each sentinel names now (`None`: no answer).
    fn sentinel_master_ports(&self) -> impl Future<Output = Vec<Option<u16>>> + Send {
        async { Vec::new() }
    }

    /// The node listening on `port`, if any.
    fn index_of_port(&self, port: u16) -> Option<usize> {
        (0..self.node_count()).find(|&i| self.port(i) == port)
    }

    /// Whether node `i` runs and is not frozen: it can be asked.
    fn is_up(&self, i: usize) -> bool {
        self.is_running(i) && !self.is_frozen(i)
    }
}
