//! Fault `restart-old`: a fresh pool started when the old primary came
//! back ([`fresh_pool_writes`]), as a service starting or restarting then
//! would be. It writes a few records (negative ids, so the workload's set
//! check does not see them), which must all reach the new primary.

use std::sync::Arc;
use std::time::Duration;

use super::cluster::DrillCluster;
use super::network::{Network, connect_pool};
use super::options::DrillOptions;
use super::state::DrillState;
use crate::drill::workload::{DrillDriver, WriteRecord, writer_id};

/// How many writes the fresh pool makes.
const FRESH_WRITES: i64 = 20;

/// What the fresh pool did.
#[derive(Debug, Clone)]
pub(super) struct FreshRun {
    /// When it was started, since the drill's start.
    pub(super) started: Duration,
    /// The writer it chose, by node name.
    pub(super) writer: Option<String>,
    /// Its writes (ids -1, -2, ...).
    pub(super) writes: Vec<WriteRecord>,
    /// Why it could not connect, if it could not.
    pub(super) error: Option<String>,
}

impl FreshRun {
    /// A fresh pool that did not get to write, started at `started`.
    pub(super) fn failed(started: Duration, error: String) -> FreshRun {
        FreshRun {
            started,
            writer: None,
            writes: Vec::new(),
            error: Some(error),
        }
    }
}

/// Waits for the old primary's restart, then connects a fresh pool like
/// the drill's own and writes [`FRESH_WRITES`] records through it, one at
/// a time (plain writes, each under the operation timeout).
pub(super) async fn fresh_pool_writes<B: DrillDriver, C: DrillCluster>(
    state: Arc<DrillState<C>>,
    opts: DrillOptions,
    network: Arc<Network>,
) -> FreshRun {
    state.restart_seen().await;
    let started = state.t0.elapsed();
    let pool = match connect_pool::<B, C>(&opts, &network, &state.cluster).await {
        Ok((pool, _events)) => pool,
        Err(e) => return FreshRun::failed(started, crate::error::chain(&e)),
    };
    let mut run = FreshRun {
        started,
        writer: None,
        writes: Vec::new(),
        error: None,
    };
    run.writer = writer_id(&pool).map(|id| network.names.name(&id));
    state.mark_node(
        "FreshPool",
        format!(
            "a fresh pool connected; it chose {} as the writer",
            run.writer.as_deref().unwrap_or("none")
        ),
        run.writer.as_deref().unwrap_or("none"),
    );
    for k in 1..=FRESH_WRITES {
        let start = state.t0.elapsed();
        let insert = B::insert(&pool, -k, 0, None);
        let error = match tokio::time::timeout(opts.op_timeout, insert).await {
            Ok(Ok(())) => None,
            Ok(Err(kind)) => Some(kind),
            Err(_) => Some("timeout".to_owned()),
        };
        run.writes.push(WriteRecord {
            id: -k,
            writer: 0,
            start,
            end: state.t0.elapsed(),
            error,
        });
    }
    pool.close().await;
    run
}
