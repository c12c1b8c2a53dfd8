//! Watching Redis Sentinel during a drill with Sentinel promotion
//! ([`watch_sentinels`]): when the first sentinel, then a majority, name a
//! master other than the old one, so that the report can show the pool's
//! delay after Sentinel's switch.

use std::sync::Arc;
use std::time::Duration;

use super::cluster::DrillCluster;
use super::state::DrillState;

/// How often the sentinels are asked.
const POLL: Duration = Duration::from_millis(20);

/// From the fault on, asks every sentinel which master it names, every
/// 20 ms; records `SentinelSwitched` when the first one names another
/// master than node 0 and `SentinelMajority` when most do, then returns.
pub(super) async fn watch_sentinels<C: DrillCluster>(state: Arc<DrillState<C>>) {
    let old_port = state.cluster.port(0);
    while state.fault_at().is_none() {
        tokio::time::sleep(POLL).await;
    }
    let mut first_seen = false;
    loop {
        let ports = state.cluster.sentinel_master_ports().await;
        let switched: Vec<(usize, u16)> = ports
            .iter()
            .enumerate()
            .filter_map(|(k, p)| p.filter(|&p| p != old_port).map(|p| (k, p)))
            .collect();
        if let Some(&(k, port)) = switched.first()
            && !first_seen
        {
            first_seen = true;
            let name = node_name(&state.cluster, port);
            state.mark_seen(
                "sentinel",
                "SentinelSwitched",
                format!("sentinel{k} names {name} as the master"),
                &name,
            );
        }
        if switched.len() * 2 > ports.len() {
            let name = node_name(&state.cluster, switched[0].1);
            state.mark_seen(
                "sentinel",
                "SentinelMajority",
                format!(
                    "{} of {} sentinels name {name} as the master",
                    switched.len(),
                    ports.len()
                ),
                &name,
            );
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The name of the node on `port`, else `port <port>`.
fn node_name<C: DrillCluster>(cluster: &C, port: u16) -> String {
    cluster
        .index_of_port(port)
        .map_or_else(|| format!("port {port}"), |i| cluster.name(i))
}
