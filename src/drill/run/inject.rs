//! The drill's actions on the cluster: injecting the [`Fault`] into the
//! primary ([`inject`]), playing the orchestrator of external promotion
//! ([`orchestrate`]) and healing the fault after the workload ([`heal`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::options::{DrillError, cluster_err};
use super::state::DrillState;
use crate::drill::proxy::{FaultProxy, ProxyMode};
use crate::drill::scenario::Fault;

/// How often the simulated orchestrator checks the primary.
const ORCHESTRATOR_EVERY: Duration = Duration::from_millis(100);
/// Time limit of one orchestrator check.
const ORCHESTRATOR_CHECK_TIMEOUT: Duration = Duration::from_millis(300);

/// Injects the fault at `fault_at` (and, for a flap, restarts the node).
pub(super) async fn inject(
    state: Arc<DrillState>,
    proxy: Option<Arc<FaultProxy>>,
    fault: Fault,
    fault_at: Duration,
    confirmation: Duration,
) -> Result<(), DrillError> {
    tokio::time::sleep_until(state.t0 + fault_at).await;
    let at = state.t0.elapsed();
    let cluster = &state.cluster;
    let failed = |what: &str| cluster_err(format!("could not {what} pg0"));
    match fault {
        Fault::Crash => {
            cluster.kill(0).map_err(failed("kill"))?;
            state.set_fault(at, "Fault", "crash: SIGKILL to pg0 and its backends".into());
        }
        Fault::Freeze => {
            cluster.freeze(0).map_err(failed("freeze"))?;
            state.set_fault(
                at,
                "Fault",
                "freeze: SIGSTOP to pg0 and its backends, until the end".into(),
            );
        }
        Fault::Blackhole => {
            let Some(proxy) = proxy else {
                return Err(DrillError::NoPrimary("no proxy in front of pg0".into()));
            };
            proxy.set_mode(ProxyMode::Blackhole);
            state.set_fault(
                at,
                "Fault",
                "blackhole: pg0's proxy swallows all traffic; the server keeps running".into(),
            );
        }
        Fault::Graceful => {
            state.set_fault(
                at,
                "Fault",
                "graceful: fast shutdown (SIGINT) of pg0".into(),
            );
            cluster.stop_graceful(0).await.map_err(failed("stop"))?;
            state.mark("Stopped", "pg0 finished its shutdown".into());
        }
        Fault::Flap => {
            cluster.kill(0).map_err(failed("kill"))?;
            state.set_fault(
                at,
                "Fault",
                format!(
                    "flap: SIGKILL to pg0; restart in {} ms",
                    confirmation.as_millis() / 2
                ),
            );
            tokio::time::sleep(confirmation / 2).await;
            state.mark("Restarting", "pg0 starting again (crash recovery)".into());
            cluster.restart(0).await.map_err(failed("restart"))?;
            state.mark("Restarted", "pg0 accepts connections again".into());
        }
    }
    Ok(())
}

/// The simulated orchestrator of external promotion: checks pg0 through
/// the application's network path every 100 ms and promotes pg1 once pg0
/// has been unreachable for `delay`.
pub(super) async fn orchestrate(state: Arc<DrillState>, url: String, delay: Duration) {
    let mut down_since: Option<Instant> = None;
    loop {
        let healthy = check_primary(&url).await;
        if healthy {
            down_since = None;
        } else {
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= delay {
                state.mark_node(
                    "OrchestratorPromote",
                    format!(
                        "orchestrator: pg0 unreachable for {} ms; promoting pg1",
                        since.elapsed().as_millis()
                    ),
                    "pg1",
                );
                match state.cluster.promote(1).await {
                    Ok(()) => state.mark_node(
                        "OrchestratorPromoted",
                        "orchestrator: pg1 promoted".into(),
                        "pg1",
                    ),
                    Err(e) => state.mark_node(
                        "OrchestratorFailed",
                        format!(
                            "orchestrator: promoting pg1 failed: {}",
                            crate::error::chain(&e)
                        ),
                        "pg1",
                    ),
                }
                return;
            }
        }
        tokio::time::sleep(ORCHESTRATOR_EVERY).await;
    }
}

/// Whether the node at `url` answers `SELECT 1` within the check timeout.
async fn check_primary(url: &str) -> bool {
    let Ok(mut config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    config.connect_timeout(ORCHESTRATOR_CHECK_TIMEOUT);
    let check = async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
        let conn = tokio::spawn(connection);
        let ok = client.simple_query("SELECT 1").await.is_ok();
        drop(client);
        conn.abort();
        Some(ok)
    };
    matches!(
        tokio::time::timeout(ORCHESTRATOR_CHECK_TIMEOUT, check).await,
        Ok(Some(true))
    )
}

/// Heals the fault after the workload, so that the old primary can be
/// read: thaws a frozen `pg0`, reopens its proxy, restarts it when it is
/// down. Returns notes on what could not be done.
pub(super) async fn heal(
    state: &DrillState,
    fault: Fault,
    proxy: Option<&Arc<FaultProxy>>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let cluster = &state.cluster;
    match fault {
        Fault::Freeze => match cluster.thaw(0) {
            Ok(()) => state.mark("Healed", "pg0 thawed (SIGCONT)".into()),
            Err(e) => notes.push(format!("could not thaw pg0: {}", crate::error::chain(&e))),
        },
        Fault::Blackhole => {
            if let Some(p) = proxy {
                p.set_mode(ProxyMode::Pass);
                state.mark(
                    "Healed",
                    "pg0's proxy passes traffic again (blackholed connections are reset)".into(),
                );
            }
        }
        Fault::Crash | Fault::Graceful | Fault::Flap => {}
    }
    if !cluster.node(0).running {
        match cluster.restart(0).await {
            Ok(()) => state.mark(
                "Restarted",
                "pg0 restarted after the workload, to count the writes it got".into(),
            ),
            Err(e) => notes.push(format!(
                "could not restart pg0 to read its rows: {}",
                crate::error::chain(&e)
            )),
        }
    }
    notes
}
