//! The drill's actions on the cluster: injecting the [`Fault`] into the
//! primary ([`inject`]), playing the orchestrator of external promotion
//! ([`orchestrate`]) and healing the fault after the workload ([`heal`]),
//! for any [`DrillCluster`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::cluster::DrillCluster;
use super::options::{DrillError, cluster_err};
use super::state::DrillState;
use crate::drill::proxy::{FaultProxy, ProxyMode};
use crate::drill::scenario::Fault;

/// How often the simulated orchestrator checks the primary.
const ORCHESTRATOR_EVERY: Duration = Duration::from_millis(100);
/// Time limit of one orchestrator check.
const ORCHESTRATOR_CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// `restart-old`: how long after another node reports itself primary the
/// old one is restarted.
const RESTART_AFTER_PROMOTION: Duration = Duration::from_secs(1);
/// `restart-old`: how often the cluster is asked whether a node was promoted.
const PROMOTION_POLL: Duration = Duration::from_millis(50);

/// What [`inject`] needs besides the state.
#[derive(Debug, Clone)]
pub(super) struct Injection {
    /// The fault.
    pub(super) fault: Fault,
    /// When to inject it, since the drill's start.
    pub(super) at: Duration,
    /// When the workload stops, since the drill's start.
    pub(super) until: Duration,
    /// The automatic-promotion confirmation window (a flap restarts after half of it).
    pub(super) confirmation: Duration,
    /// The old primary's proxy, for a blackhole.
    pub(super) proxy: Option<Arc<FaultProxy>>,
}

/// Injects the fault at `injection.at` (and, for a flap or `restart-old`,
/// restarts the node).
pub(super) async fn inject<C: DrillCluster>(
    state: Arc<DrillState<C>>,
    injection: Injection,
) -> Result<(), DrillError> {
    tokio::time::sleep_until(state.t0 + injection.at).await;
    let at = state.t0.elapsed();
    let cluster = &state.cluster;
    let old = state.old_primary();
    let tree = cluster.process_tree(0);
    let failed = |what: &str| cluster_err(format!("could not {what} {old}"));
    match injection.fault {
        Fault::Crash => {
            cluster.kill(0).await.map_err(failed("kill"))?;
            state.set_fault(at, "Fault", format!("crash: SIGKILL to {tree}"));
        }
        Fault::Freeze => {
            cluster.freeze(0).await.map_err(failed("freeze"))?;
            state.set_fault(
                at,
                "Fault",
                format!(
                    "freeze: {} of {tree}, until the end",
                    cluster.freeze_how().0
                ),
            );
        }
        Fault::Blackhole => {
            let Some(proxy) = injection.proxy else {
                return Err(DrillError::NoPrimary(format!("no proxy in front of {old}")));
            };
            proxy.set_mode(ProxyMode::Blackhole);
            state.set_fault(
                at,
                "Fault",
                format!("blackhole: {old}'s proxy swallows all traffic; the server keeps running"),
            );
        }
        Fault::Graceful => {
            state.set_fault(at, "Fault", format!("graceful: {} of {old}", C::GRACEFUL));
            cluster.stop_graceful(0).await.map_err(failed("stop"))?;
            state.set_fault_done();
            state.mark("Stopped", format!("{old} finished its shutdown"));
        }
        Fault::Flap => {
            cluster.kill(0).await.map_err(failed("kill"))?;
            let pause = injection.confirmation / 2;
            state.set_fault(
                at,
                "Fault",
                format!(
                    "flap: SIGKILL to {tree}; restart in {} ms",
                    pause.as_millis()
                ),
            );
            tokio::time::sleep(pause).await;
            restart_old(&state).await?;
        }
        Fault::RestartOld => {
            cluster.kill(0).await.map_err(failed("kill"))?;
            state.set_fault(
                at,
                "Fault",
                format!(
                    "restart-old: SIGKILL to {tree}; restarted {} ms after another node is promoted",
                    RESTART_AFTER_PROMOTION.as_millis()
                ),
            );
            restart_after_promotion(&state, state.t0 + injection.until).await?;
        }
    }
    Ok(())
}

/// Restarts the old primary (node 0) and records it.
async fn restart_old<C: DrillCluster>(state: &DrillState<C>) -> Result<(), DrillError> {
    let old = state.old_primary();
    state.mark(
        "Restarting",
        format!("{old} starting again ({})", C::RESTART),
    );
    state
        .cluster
        .restart(0)
        .await
        .map_err(cluster_err(format!("could not restart {old}")))?;
    state.mark("Restarted", format!("{old} accepts connections again"));
    Ok(())
}

/// `restart-old`: waits (until `deadline`) for another node to report
/// itself primary, then restarts the old one a second later and tells the
/// fresh pool ([`DrillState::set_restarted`]).
async fn restart_after_promotion<C: DrillCluster>(
    state: &DrillState<C>,
    deadline: Instant,
) -> Result<(), DrillError> {
    let Some(promoted) = wait_for_promotion(state, deadline).await else {
        state.mark(
            "NotRestarted",
            "no other node was promoted while the workload ran; the old primary stays down".into(),
        );
        return Ok(());
    };
    let name = state.cluster.name(promoted);
    state.mark_node(
        "PromotionSeen",
        format!("{name} reports itself {}", C::STORE.primary_word()),
        &name,
    );
    if Instant::now() + RESTART_AFTER_PROMOTION >= deadline {
        state.mark(
            "NotRestarted",
            "the workload ends within a second of the promotion".into(),
        );
        return Ok(());
    }
    tokio::time::sleep(RESTART_AFTER_PROMOTION).await;
    restart_old(state).await?;
    state.set_restarted();
    Ok(())
}

/// The first node other than node 0 that reports itself primary, polled
/// until `deadline`.
async fn wait_for_promotion<C: DrillCluster>(
    state: &DrillState<C>,
    deadline: Instant,
) -> Option<usize> {
    while Instant::now() < deadline {
        for i in 1..state.cluster.node_count() {
            if state.cluster.is_up(i) && matches!(state.cluster.primary_rank(i).await, Ok(Some(_)))
            {
                return Some(i);
            }
        }
        tokio::time::sleep(PROMOTION_POLL).await;
    }
    None
}

/// The simulated orchestrator of external promotion: checks the old
/// primary through the application's network path (`url`) every 100 ms
/// and promotes node 1 once the old primary has been unreachable for
/// `delay`.
pub(super) async fn orchestrate<C: DrillCluster>(
    state: Arc<DrillState<C>>,
    url: String,
    delay: Duration,
) {
    let (old, new) = (state.old_primary(), state.cluster.name(1));
    let mut down_since: Option<Instant> = None;
    loop {
        if C::answers(&url, ORCHESTRATOR_CHECK_TIMEOUT).await {
            down_since = None;
        } else {
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= delay {
                state.mark_node(
                    "OrchestratorPromote",
                    format!(
                        "orchestrator: {old} unreachable for {} ms; promoting {new}",
                        since.elapsed().as_millis()
                    ),
                    &new,
                );
                match state.cluster.promote(1).await {
                    Ok(()) => state.mark_node(
                        "OrchestratorPromoted",
                        format!("orchestrator: {new} promoted"),
                        &new,
                    ),
                    Err(e) => state.mark_node(
                        "OrchestratorFailed",
                        format!(
                            "orchestrator: promoting {new} failed: {}",
                            crate::error::chain(&e)
                        ),
                        &new,
                    ),
                }
                return;
            }
        }
        tokio::time::sleep(ORCHESTRATOR_EVERY).await;
    }
}

/// Heals the fault after the workload, so that the old primary can be
/// read: thaws it, reopens its proxy, restarts it when it is down (where a
/// restart shows what it holds). Returns notes on what could not be done.
pub(super) async fn heal<C: DrillCluster>(
    state: &DrillState<C>,
    fault: Fault,
    proxy: Option<&Arc<FaultProxy>>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let cluster = &state.cluster;
    let old = state.old_primary();
    match fault {
        Fault::Freeze => match cluster.thaw(0).await {
            Ok(()) => state.mark(
                "Healed",
                format!("{old} thawed ({})", cluster.freeze_how().1),
            ),
            Err(e) => notes.push(format!("could not thaw {old}: {}", crate::error::chain(&e))),
        },
        Fault::Blackhole => {
            if let Some(p) = proxy {
                p.set_mode(ProxyMode::Pass);
                state.mark(
                    "Healed",
                    format!(
                        "{old}'s proxy passes traffic again (blackholed connections are reset)"
                    ),
                );
            }
        }
        Fault::Crash | Fault::Graceful | Fault::Flap | Fault::RestartOld => {}
    }
    if cluster.is_running(0) {
        return notes;
    }
    if !C::RESTART_TO_READ {
        notes.push(format!(
            "{old} was left down after the workload, as there is nothing to read on it: a restart would bring it back {}",
            C::RESTART
        ));
        return notes;
    }
    match cluster.restart(0).await {
        Ok(()) => state.mark(
            "Restarted",
            format!("{old} restarted after the workload, to count the writes it got"),
        ),
        Err(e) => notes.push(format!(
            "could not restart {old} to read its rows: {}",
            crate::error::chain(&e)
        )),
    }
    notes
}
