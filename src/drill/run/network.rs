//! How the pool reaches the cluster ([`Network`]: directly, or for a
//! blackhole each node through its own [`FaultProxy`]) and connecting a
//! pool over it ([`connect_pool`]: the node URLs, or the Sentinels as the
//! pool's topology source).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::cluster::DrillCluster;
use super::events::Names;
use super::options::{DrillError, DrillOptions};
use crate::core::events::Event;
use crate::drill::proxy::FaultProxy;
use crate::drill::scenario::{Fault, Promotion};
use crate::drill::workload::{DrillDriver, writer_id};
use crate::pool::FailoverPool;
use crate::redis::SentinelTopology;

/// How long the pool may take to find the writer after connecting.
const WRITER_WAIT: Duration = Duration::from_secs(10);
/// How often a Sentinel-sourced pool asks the sentinels again besides
/// listening to their events.
const SENTINEL_REFRESH: Duration = Duration::from_millis(500);

/// How the pool reaches the nodes: directly, or (for
/// [`Fault::Blackhole`]) each through its own [`FaultProxy`].
#[derive(Debug)]
pub(super) struct Network {
    /// Node names by server and proxy address.
    pub(super) names: Names,
    /// The proxies, by node index (empty without a proxy).
    pub(super) proxies: Vec<Arc<FaultProxy>>,
    /// The URLs the pool connects to, by node index.
    pub(super) urls: Vec<String>,
    /// Node port → the port the pool reaches it on (its proxy's), for the
    /// nodes behind a proxy.
    via: HashMap<u16, u16>,
}

impl Network {
    /// Starts the proxies `fault` needs in front of `cluster`'s nodes.
    pub(super) async fn open<C: DrillCluster>(
        cluster: &C,
        fault: Fault,
    ) -> Result<Network, DrillError> {
        let mut names = Names::default();
        let mut proxies = Vec::new();
        let mut via = HashMap::new();
        for i in 0..cluster.node_count() {
            let (name, port) = (cluster.name(i), cluster.port(i));
            names.add(port, &name);
            if fault == Fault::Blackhole {
                let target = SocketAddr::from(([127, 0, 0, 1], port));
                let proxy =
                    FaultProxy::start(target)
                        .await
                        .map_err(|source| DrillError::Proxy {
                            node: name.clone(),
                            source,
                        })?;
                names.add(proxy.port(), &name);
                via.insert(port, proxy.port());
                proxies.push(Arc::new(proxy));
            }
        }
        let urls = (0..cluster.node_count())
            .map(|i| {
                let port = cluster.port(i);
                C::url_at(via.get(&port).copied().unwrap_or(port))
            })
            .collect();
        Ok(Network {
            names,
            proxies,
            urls,
            via,
        })
    }

    /// The cluster index of the pool's node `id` (`127.0.0.1:<port>`, a
    /// server's or its proxy's).
    pub(super) fn index_of<C: DrillCluster>(&self, cluster: &C, id: &str) -> Option<usize> {
        let port: u16 = id.rsplit_once(':')?.1.parse().ok()?;
        let server = self
            .via
            .iter()
            .find(|(_, proxy)| **proxy == port)
            .map_or(port, |(server, _)| *server);
        cluster.index_of_port(server)
    }
}

/// Connects a failover pool to the cluster (through the Sentinels with
/// [`Promotion::Sentinel`], else to the node URLs), subscribes to its
/// events and waits until it has found the writer.
pub(super) async fn connect_pool<B: DrillDriver, C: DrillCluster>(
    opts: &DrillOptions,
    network: &Network,
    cluster: &C,
) -> Result<(FailoverPool<B>, broadcast::Receiver<Event>), DrillError> {
    let pool = match (opts.promotion, cluster.sentinels()) {
        (Promotion::Sentinel, Some((master, sentinels))) => {
            let sentinels: Vec<&str> = sentinels.iter().map(String::as_str).collect();
            let via = network.via.clone();
            let source = SentinelTopology::new(master, &sentinels, move |host, port| {
                format!(
                    "redis://{host}:{}/",
                    via.get(&port).copied().unwrap_or(port)
                )
            })
            .map_err(DrillError::Pool)?
            .refresh(SENTINEL_REFRESH);
            FailoverPool::<B>::builder()
                .source(source)
                .config(opts.pool_config())
                .connect()
                .await
        }
        _ => FailoverPool::<B>::connect_with(&network.urls, opts.pool_config()).await,
    }
    .map_err(DrillError::Pool)?;
    let rx = pool.subscribe();
    let writer_deadline = Instant::now() + WRITER_WAIT;
    while writer_id(&pool).is_none() {
        if Instant::now() >= writer_deadline {
            pool.close().await;
            return Err(DrillError::NoPrimary(
                "the pool found no writer within 10s of connecting".into(),
            ));
        }
        pool.refresh().await;
    }
    Ok((pool, rx))
}
