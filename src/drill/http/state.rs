//! [`BackendState`]: what one backend keeps across kills and restarts (its
//! name, mode and counters) and shares with its connections.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::ledger::RequestLedger;
use super::mode::{BackendMode, ModeCell};
use super::stats::Tally;

/// The state of one backend shared by its handle and every connection it
/// serves. The mode is swapped atomically, so reading it takes no lock.
#[derive(Debug)]
pub(super) struct BackendState {
    id: String,
    mode: ArcSwap<ModeCell>,
    pub(super) tally: Tally,
    pub(super) ledger: Arc<RequestLedger>,
}

impl BackendState {
    pub(super) fn new(id: String, ledger: Arc<RequestLedger>) -> Self {
        BackendState {
            id,
            mode: ArcSwap::from_pointee(ModeCell::new(BackendMode::Ok)),
            tally: Tally::default(),
            ledger,
        }
    }

    /// The backend's name (`b0`, `b1`, ...).
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Replaces the mode; an `EveryNth` starts counting afresh.
    pub(super) fn set_mode(&self, mode: BackendMode) {
        self.mode.store(Arc::new(ModeCell::new(mode)));
    }

    /// The mode as set.
    pub(super) fn mode(&self) -> BackendMode {
        self.mode.load().mode().clone()
    }

    /// The mode that applies to the next (non-health) request, counting
    /// it.
    pub(super) fn next_request_mode(&self) -> BackendMode {
        self.mode.load().next_request().clone()
    }

    /// The mode that applies to a health check: a slow, hung or failing
    /// backend shows it; the other modes answer health checks normally.
    pub(super) fn health_mode(&self) -> BackendMode {
        match self.mode.load().mode() {
            mode @ (BackendMode::Slow(_) | BackendMode::Hang | BackendMode::Status { .. }) => {
                mode.clone()
            }
            BackendMode::Ok
            | BackendMode::ResetMidBody
            | BackendMode::DropAfterWork
            | BackendMode::EveryNth { .. } => BackendMode::Ok,
        }
    }
}
