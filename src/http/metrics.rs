//! The HTTP layer's metric: responses per endpoint and status class, on
//! top of the core's per-endpoint attempts, latency, breaker and ejection
//! metrics.

use std::sync::Arc;

use http::StatusCode;

/// `failover_http_responses_total{manager, endpoint, class}`: responses
/// received, by status class (`1xx` .. `5xx`).
pub const RESPONSES_TOTAL: &str = "failover_http_responses_total";

/// The status class label of `status`.
pub(crate) fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts one response.
pub(crate) fn record_response(manager: &Arc<str>, endpoint: &str, status: StatusCode) {
    metrics::counter!(
        RESPONSES_TOTAL,
        "manager" => metrics::SharedString::from(Arc::clone(manager)),
        "endpoint" => endpoint.to_owned(),
        "class" => status_class(status)
    )
    .increment(1);
}
