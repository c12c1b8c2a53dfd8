//! Endpoint sets and pick loops shared by the strategy unit tests.

use super::{PickContext, Strategy, StrategyKind};
use crate::core::breaker::BreakerConfig;
use crate::core::endpoint::Endpoint;
use crate::core::set::EndpointSet;
use std::sync::Arc;

/// A set of these endpoints.
pub(super) fn set_of(endpoints: Vec<Endpoint>) -> EndpointSet {
    EndpointSet::new(endpoints, Arc::new(BreakerConfig::default())).unwrap()
}

/// A set of `n` endpoints `e0`, `e1`, ... on 127.0.0.1.
pub(super) fn set(n: usize) -> EndpointSet {
    set_of(
        (0..n)
            .map(|i| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i as u16))
            .collect(),
    )
}

/// A fresh instance of every built-in.
pub(super) fn all() -> Vec<Arc<dyn Strategy>> {
    StrategyKind::ALL.iter().map(StrategyKind::build).collect()
}

/// `k` picks in a row.
pub(super) fn picks(s: &dyn Strategy, ctx: &PickContext<'_>, k: usize) -> Vec<Option<usize>> {
    (0..k).map(|_| s.pick(ctx)).collect()
}

/// How often each position is picked in `k` picks.
pub(super) fn counts(s: &dyn Strategy, ctx: &PickContext<'_>, k: usize) -> Vec<usize> {
    let mut c = vec![0; ctx.endpoints.len()];
    for _ in 0..k {
        c[s.pick(ctx).expect("an eligible endpoint")] += 1;
    }
    c
}

/// A set of endpoints `w0`, `w1`, ... with these weights.
pub(super) fn weighted(weights: &[u32]) -> EndpointSet {
    set_of(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Endpoint::new(format!("w{i}"), "127.0.0.1", 2000 + i as u16).with_weight(w)
            })
            .collect(),
    )
}
