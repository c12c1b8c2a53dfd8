//! The HTTP layer's metric: responses per endpoint and status class, on
//! top of the core's per-endpoint attempts, latency, breaker and ejection
//! metrics. The counters are registered once per endpoint and kept in an
//! `arc-swap` map, so counting a response is a lock-free lookup and an
//! atomic add, not a labelled registry lookup.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::StatusCode;

/// `failover_http_responses_total{manager, endpoint, class}`: responses
/// received, by status class (`1xx` .. `5xx`).
pub const RESPONSES_TOTAL: &str = "failover_http_responses_total";

/// The status classes, in counter order.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index in [`CLASSES`] of `status`'s class.
fn class_index(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// One endpoint's counters, one per class.
type Counters = Arc<[metrics::Counter; 5]>;

/// The response counters of one client or layer.
pub(crate) struct ResponseMetrics {
    manager: Arc<str>,
    by_endpoint: ArcSwap<HashMap<Arc<str>, Counters>>,
}

impl fmt::Debug for ResponseMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseMetrics")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl ResponseMetrics {
    pub(crate) fn new(manager: Arc<str>) -> Self {
        ResponseMetrics {
            manager,
            by_endpoint: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Counts one response of `endpoint`.
    pub(crate) fn record(&self, endpoint: &Arc<str>, status: StatusCode) {
        let i = class_index(status);
        if let Some(c) = self.by_endpoint.load().get(endpoint) {
            c[i].increment(1);
            return;
        }
        let counters = self.register(endpoint);
        counters[i].increment(1);
    }

    /// Registers `endpoint`'s counters (once; a racing registration of the
    /// same endpoint yields the same counters from the registry).
    fn register(&self, endpoint: &Arc<str>) -> Counters {
        let m = metrics::SharedString::from(Arc::clone(&self.manager));
        let e = metrics::SharedString::from(Arc::clone(endpoint));
        let counters: Counters = Arc::new(CLASSES.map(|class| {
            metrics::counter!(RESPONSES_TOTAL, "manager" => m.clone(), "endpoint" => e.clone(), "class" => class)
        }));
        self.by_endpoint.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.entry(Arc::clone(endpoint))
                .or_insert_with(|| Arc::clone(&counters));
            map
        });
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_class() {
        let c = |code| CLASSES[class_index(StatusCode::from_u16(code).unwrap())];
        assert_eq!(
            [c(101), c(204), c(302), c(429), c(503)],
            ["1xx", "2xx", "3xx", "4xx", "5xx"]
        );
        let m = ResponseMetrics::new("m".into());
        let ep: Arc<str> = "a".into();
        m.record(&ep, StatusCode::OK);
        m.record(&ep, StatusCode::NOT_FOUND);
        assert_eq!(m.by_endpoint.load().len(), 1);
    }
}
