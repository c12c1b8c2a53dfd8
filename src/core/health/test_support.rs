//! Helpers shared by the unit tests of the health modules.

use crate::core::breaker::BreakerConfig;
use crate::core::endpoint::Endpoint;
use crate::core::events::{Event, EventKind};
use crate::core::set::EndpointSet;
use std::sync::Arc;
use tokio::sync::broadcast;

/// A set of `n` endpoints `e0`, `e1`, ... on 127.0.0.1.
pub(super) fn set_of(n: usize) -> Arc<EndpointSet> {
    let eps = (0..n)
        .map(|i| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i as u16))
        .collect();
    Arc::new(EndpointSet::new(eps, Arc::new(BreakerConfig::default())).unwrap())
}

/// Every event received so far, in order.
pub(super) fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<EventKind> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e.kind);
    }
    out
}
