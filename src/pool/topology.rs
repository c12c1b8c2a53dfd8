//! The pool's view of the cluster: a [`Topology`] snapshot of every
//! [`NodeStatus`], which node is the writer and which replicas serve reads.
//! It is published lock-free ([`FailoverPool::topology`](crate::pool::FailoverPool::topology))
//! and derived from probes by the pool's reconciler.

use crate::core::endpoint::Role;
use std::sync::Arc;
use std::time::Duration;

/// A node's replication history: the id of the history it is on, and the
/// one it continued from when it was promoted (Redis `master_replid` and
/// `master_replid2`). A primary whose `id` is another node's `previous` was
/// superseded by that promotion, and is fenced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lineage {
    /// The current replication history id.
    pub id: Arc<str>,
    /// The history it continued from at its last promotion, if any.
    pub previous: Option<Arc<str>>,
}

/// What the pool knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id.
    pub id: Arc<str>,
    /// Whether the last probe succeeded.
    pub up: bool,
    /// Role from the last successful probe.
    pub role: Option<Role>,
    /// Fenced: claims to be primary but must not get writes (stale timeline
    /// or lost a split brain). Cleared only when it reports itself a replica.
    pub fenced: bool,
    /// Fencing epoch (Postgres timeline) from the last successful probe.
    pub epoch: u64,
    /// Write position (primary) or replay position (replica).
    pub position: u64,
    /// Received position (replicas): everything received is replayed on
    /// promotion, so this ranks promotion candidates.
    pub received: Option<u64>,
    /// Bytes behind the writer (replicas; `None` when unknown).
    pub lag_bytes: Option<u64>,
    /// Replay delay reported by the replica.
    pub lag: Option<Duration>,
    /// Round-trip of the last probe.
    pub rtt: Option<Duration>,
    /// Why the last probe failed (credentials masked).
    pub last_error: Option<String>,
    /// Replication history from the last successful probe (Redis).
    pub lineage: Option<Lineage>,
    /// On a replica, the node it replicates from.
    pub upstream: Option<Arc<str>>,
}

impl NodeStatus {
    /// A node that has not been probed yet (down, role unknown).
    pub(crate) fn unprobed(id: Arc<str>) -> Self {
        NodeStatus {
            id,
            up: false,
            role: None,
            fenced: false,
            epoch: 0,
            position: 0,
            received: None,
            lag_bytes: None,
            lag: None,
            rtt: None,
            last_error: Some("not probed yet".into()),
            lineage: None,
            upstream: None,
        }
    }

    /// Up, reporting itself primary, and not fenced.
    pub(crate) fn is_writable(&self) -> bool {
        self.up && self.role == Some(Role::Primary) && !self.fenced
    }

    /// Up, reporting itself a replica, and not fenced.
    pub(crate) fn is_replica(&self) -> bool {
        self.up && self.role == Some(Role::Replica) && !self.fenced
    }
}

/// A consistent snapshot of the cluster as the pool routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Grows with every change of writer, fencing, reachability or node set.
    pub epoch: u64,
    /// Position of the writer in `nodes`, if one is known.
    pub writer: Option<usize>,
    /// Replicas that may serve reads (up, not fenced, within the lag bounds).
    pub readers: Vec<usize>,
    /// Every node: the configured ones in order, then the ones a topology
    /// source added, in the order they were added.
    pub nodes: Vec<NodeStatus>,
    /// The highest fencing epoch seen on any node.
    pub highest_epoch: u64,
    /// The writer an orchestrator names through the topology source, if it
    /// names one. The pool still routes writes there only once that node
    /// reports itself primary.
    pub claimed_writer: Option<Arc<str>>,
}

impl Topology {
    /// The writer's status.
    pub fn writer_status(&self) -> Option<&NodeStatus> {
        self.writer.map(|i| &self.nodes[i])
    }

    /// Index of a node by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| &*n.id == id)
    }

    /// A node's status by id.
    pub fn node(&self, id: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| &*n.id == id)
    }
}
