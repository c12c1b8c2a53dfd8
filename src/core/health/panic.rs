//! Panic routing shared by active checks and outlier detection: when too
//! few endpoints are available, picks use all of them rather than none
//! (Envoy's `healthy_panic_threshold`).

use crate::core::events::{EventBus, EventKind, names};
use crate::core::set::EndpointSet;
use std::sync::Arc;

/// The default panic threshold (Envoy's `healthy_panic_threshold`, 50%).
pub const DEFAULT_PANIC_THRESHOLD: f64 = 0.5;

/// Recomputes panic mode and reports a flip.
pub(super) fn refresh_panic(set: &EndpointSet, events: &EventBus, threshold: f64, now: u64) {
    if let Some(on) = set.refresh_panic(threshold, now) {
        if on {
            tracing::warn!(source = %events.source(), "panic routing on: too few endpoints are available");
        } else {
            tracing::info!(source = %events.source(), "panic routing off");
        }
        metrics::gauge!(names::PANIC_MODE, "manager" => Arc::clone(events.source())).set(if on {
            1.0
        } else {
            0.0
        });
        events.emit(EventKind::PanicMode { on });
    }
}

/// A threshold clamped to 0.0..=1.0 (NaN counts as 0.0: panic routing off).
pub(super) fn clamp_unit(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}
