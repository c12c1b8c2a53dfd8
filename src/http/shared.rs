//! What every clone of a [`FailoverClient`](super::FailoverClient) and
//! every request it builds share: the endpoint core, the reqwest client and
//! the HTTP settings.

use std::time::Duration;

use super::classify::StatusPolicy;
use super::fallback::Fallback;
use super::metrics::ResponseMetrics;
use crate::core::{Failover, HedgeDelay};

/// The client's shared state.
#[derive(Debug)]
pub(crate) struct ClientInner {
    pub(crate) failover: Failover,
    pub(crate) http: reqwest::Client,
    pub(crate) statuses: StatusPolicy,
    pub(crate) hedge: Option<HedgeDelay>,
    pub(crate) fallback: Option<Fallback>,
    pub(crate) responses: ResponseMetrics,
}

/// How long a `Retry-After` pauses an endpoint, as clock nanos from now.
pub(crate) fn pause_nanos(d: Duration) -> u64 {
    crate::core::clock::now_nanos().saturating_add(d.as_nanos() as u64)
}
