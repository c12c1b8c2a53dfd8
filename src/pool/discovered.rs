//! [`DiscoveredTopology`]: a [`TopologySource`] fed by any endpoint
//! [`Discovery`] (a static list, a mock, Consul or Kubernetes once their
//! providers exist): every discovered endpoint becomes a node, and an
//! endpoint that discovery marks [`Role::Primary`] (Patroni's `master` tag,
//! say) is named as the writer — which the pool still verifies by probing.

use crate::core::discovery::{Discovery, DiscoveryChange};
use crate::core::endpoint::{Endpoint, Role};
use crate::error::Result;
use crate::pool::node::NodeSpec;
use crate::pool::source::{TopologyFuture, TopologySource, TopologyView};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Makes a node's connection URL from a discovered endpoint.
type UrlFor = dyn Fn(&Endpoint) -> String + Send + Sync;

/// A [`TopologySource`] over a [`Discovery`].
///
/// ```
/// use failover_pool::core::{Endpoint, Role};
/// use failover_pool::discovery::MockDiscovery;
/// use failover_pool::pool::{DiscoveredTopology, TopologySource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> failover_pool::Result<()> {
/// let (discovery, _handle) = MockDiscovery::new(vec![
///     Endpoint::new("pg-0", "10.0.0.1", 5432).with_role(Role::Primary),
///     Endpoint::new("pg-1", "10.0.0.2", 5432).with_role(Role::Replica),
/// ]);
/// let source = DiscoveredTopology::new(discovery, |ep| {
///     format!("postgres://app@{}/app", ep.authority())
/// });
/// let view = source.next_view().await?;
/// assert_eq!(view.nodes.len(), 2);
/// assert_eq!(view.writer.as_deref(), Some("pg-0"));
/// # Ok(()) }
/// ```
pub struct DiscoveredTopology {
    discovery: Box<dyn Discovery>,
    url_for: Box<UrlFor>,
    /// The endpoints discovery reported so far, in the order they came.
    current: Mutex<Vec<Endpoint>>,
}

impl fmt::Debug for DiscoveredTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveredTopology")
            .field("discovery", &self.discovery)
            .finish_non_exhaustive()
    }
}

impl DiscoveredTopology {
    /// Nodes from `discovery`, each reached at `url_for(endpoint)`; node ids
    /// are the endpoint ids.
    pub fn new(
        discovery: impl Discovery,
        url_for: impl Fn(&Endpoint) -> String + Send + Sync + 'static,
    ) -> Self {
        DiscoveredTopology {
            discovery: Box::new(discovery),
            url_for: Box::new(url_for),
            current: Mutex::new(Vec::new()),
        }
    }

    fn apply(&self, change: DiscoveryChange) -> TopologyView {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match change {
            DiscoveryChange::Replace(list) => *current = list,
            DiscoveryChange::Upsert(ep) => match current.iter_mut().find(|e| e.id == ep.id) {
                Some(existing) => *existing = ep,
                None => current.push(ep),
            },
            DiscoveryChange::Remove(id) => current.retain(|e| e.id != id),
        }
        let nodes = current
            .iter()
            .map(|ep| NodeSpec::new(Arc::clone(&ep.id), (self.url_for)(ep)))
            .collect();
        let mut primaries = current.iter().filter(|e| e.role == Some(Role::Primary));
        // Two endpoints both marked primary name no writer: the probes decide.
        let writer = match (primaries.next(), primaries.next()) {
            (Some(one), None) => Some(Arc::clone(&one.id)),
            _ => None,
        };
        TopologyView { nodes, writer }
    }
}

impl TopologySource for DiscoveredTopology {
    fn name(&self) -> &str {
        self.discovery.name()
    }

    fn next_view(&self) -> TopologyFuture<'_> {
        Box::pin(async move {
            let change: Result<DiscoveryChange> = self.discovery.next_change().await;
            Ok(self.apply(change?))
        })
    }
}
